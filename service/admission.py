"""ASGI middleware in front of the API: what a request may cost before any handler runs.

BentoML 1.4 has no request-body limit and answers over-concurrency with a 429 without Retry-After,
so this middleware enforces both, answering with the service's JSON error shape:
- bodies over ``max_body_bytes`` get 413, from the Content-Length header when there is one, else as
  soon as the streamed body passes the limit (nothing past it is read);
- more than ``max_in_flight`` concurrent API requests get 503 with Retry-After, so memory stays bounded
  and a load balancer can retry elsewhere;
- :class:`service.errors.Rejected` raised while the request is parsed becomes its 4xx.
Health, readiness and metrics endpoints are never limited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .errors import Rejected, error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNLIMITED_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/schema.json", "/"})


class AdmissionControl:
    def __init__(self, app: ASGIApp, max_body_bytes: int, max_in_flight: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._reject(scope, receive, send, 413, self._too_large(declared))
            return
        if self.in_flight >= self.max_in_flight:
            await self._reject(
                scope, receive, send, 503, f"server busy: {self.in_flight} requests in flight; retry shortly"
            )
            return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise Rejected(413, self._too_large(None))
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        self.in_flight += 1
        try:
            await self.app(scope, limited_receive, tracking_send)
        except Rejected as rejected:
            if response_started:
                raise
            await error_response(rejected.status, rejected.message)(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _too_large(self, declared: int | None) -> str:
        size = f"{declared} bytes" if declared is not None else "more"
        return f"request body is {size}; the limit is {self.max_body_bytes} bytes (RESNET18_MAX_REQUEST_BYTES)"

    @staticmethod
    async def _reject(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
        # The unread body is dropped: the response carries "connection: close" semantics via uvicorn.
        await error_response(status, message)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
