"""ASGI middleware in front of the API: which requests are taken, and what one may cost, before any handler runs.

BentoML 1.4 has no request-body limit, no latency-based admission, and answers over-concurrency with a
429 without Retry-After, so this middleware decides, answering with the service's JSON error shape:
- while the worker drains (:mod:`service.drain`), ``/readyz`` and every new API request get 503 at once,
  and each answer closes its keep-alive connection;
- a request that would not be answered within ``max_latency_s`` (:mod:`service.load`'s estimate from
  the requests in flight and the measured rate) gets 503 with Retry-After before its body is read:
  the admitted ones keep their latency, and a load balancer can retry elsewhere. At least
  ``min_in_flight`` (one full batch) are always admitted, at most ``max_in_flight`` (memory);
- bodies over ``max_body_bytes`` get 413, from the Content-Length header when there is one, else as
  soon as the streamed body passes the limit (nothing past it is read);
- :class:`service.errors.Rejected` raised while the request is parsed becomes its 4xx
  (:class:`service.errors.AnswerRejected`, further in).
Health and metrics endpoints are never limited nor counted: they never wait behind inference.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .drain import DRAIN, DRAINING_MESSAGE
from .errors import Rejected, error_response
from .load import LOAD, TailFactor
from .tally import Tally

logger = logging.getLogger(f"bentoml.{__name__}")  # BentoML only shows its own loggers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNLIMITED_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/schema.json", "/"})
READINESS_PATH = "/readyz"
CLOSE = (b"connection", b"close")
# Refusals run in front of BentoML's access log (service/middleware_order.py): counted here instead.
REFUSED = Tally(logger, "refused")


class AdmissionControl:
    in_front_of_bentoml = True  # service/middleware_order.py

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, max_latency_s: float, min_in_flight: int, max_in_flight: int
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_latency_s = max_latency_s
        self.min_in_flight = min_in_flight
        self.max_in_flight = max_in_flight
        # The estimate is the mean time in flight; admission keeps it this factor under the target.
        self.tail = TailFactor()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if DRAIN.draining and (scope["path"] == READINESS_PATH or scope["path"] not in UNLIMITED_PATHS):
            await _discard_body(receive, self.max_body_bytes)  # so that closing cannot reset the answer
            REFUSED.add("503 draining")
            await _reject(scope, receive, send, 503, DRAINING_MESSAGE, close=True)
            return
        if scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            REFUSED.add("413 too large")
            await _reject(scope, receive, send, 413, self._too_large(declared))
            return
        # Past the floor, the estimate decides; the requests it admits teach the tail factor how far off it is.
        expected = LOAD.expected_s() if LOAD.in_flight >= self.min_in_flight else None
        busy = self._busy(expected)
        if busy is not None:
            REFUSED.add(
                "503 over the in-flight cap" if LOAD.in_flight >= self.max_in_flight else "503 over the latency target"
            )
            await _reject(scope, receive, send, 503, f"overloaded: {busy}; retry shortly")
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise Rejected(413, self._too_large(None))
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and DRAIN.draining:
                # the client reconnects, to an instance that is not stopping
                message["headers"] = [*message.get("headers", []), CLOSE]
            await send(message)

        started = time.monotonic()
        LOAD.admitted()
        try:
            await self.app(scope, limited_receive, closing_send)  # a Rejected: service.errors.AnswerRejected
        finally:
            LOAD.answered()
            if expected:
                self.tail.observe(expected, time.monotonic() - started)

    def _busy(self, expected: float | None) -> str | None:
        """Why a request arriving now is shed, or None to admit it; ``expected``: the estimate past the floor."""
        if LOAD.in_flight < self.min_in_flight:
            return None
        if LOAD.in_flight >= self.max_in_flight:
            return f"{LOAD.in_flight} requests in flight"
        if expected is not None and expected * self.tail.factor > self.max_latency_s:
            return f"{LOAD.in_flight} in flight take ~{expected:.1f} s, over the {self.max_latency_s:g} s target"
        return None

    def _too_large(self, declared: int | None) -> str:
        size = f"{declared} bytes" if declared is not None else "more"
        return f"request body is {size}; the limit is {self.max_body_bytes} bytes (RESNET18_MAX_REQUEST_BYTES)"


async def _reject(scope: Scope, receive: Receive, send: Send, status: int, message: str, close: bool = False) -> None:
    """Answer at once. An unread body is discarded by uvicorn as it arrives, and the connection stays
    usable; ``close`` closes it after the answer (read the body first: closing a socket with unread
    input resets the connection, and the client may lose the answer)."""
    response = error_response(status, message)
    if close:
        response.headers["connection"] = "close"
    await response(scope, receive, send)


async def _discard_body(receive: Receive, limit: int) -> None:
    received = 0
    while received <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
