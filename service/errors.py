"""The JSON error answers of the API: one shape, ``{"error": "<what was wrong>"}``, for every 4xx/503."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

# How long a client (or the load balancer's retry) should wait after an overload answer. Batches
# take tens to hundreds of milliseconds, so capacity frees up within a second.
RETRY_AFTER_S = 1

# Every error status the image endpoints answer, for the OpenAPI document (service.openapi) and the
# README's error table. A new status a handler or middleware returns belongs here.
ERROR_STATUSES = {
    400: "no file, empty file, wrong field name, a URL or text instead of a file, a body that is not multipart",
    401: "API keys are configured (RESNET18_API_KEYS_FILE) and the request has no valid `Authorization: Bearer` key",
    413: "body, image (pixels, read from its header) or image count over the configured limits",
    422: "not an image, or a truncated/corrupt one (with several images, `image` names the index)",
    503: "overloaded (could not be answered within the latency target), shutting down, or the model is not ready",
    504: "not answered within the service's 60 s request timeout (BentoML's traffic timeout)",
}


def error_response(status: int, message: str, **extra: object) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status in (429, 503) else None
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


class Rejected(BaseException):
    """Ends a request from deep inside BentoML's request parsing with a clean 4xx.

    A BaseException on purpose: BentoML turns every ``Exception`` raised while it parses a request
    into a generic 500. :class:`AnswerRejected` catches this one and answers it.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AnswerRejected:
    """ASGI middleware: a :class:`Rejected` raised inside (while BentoML parses the request, or reads
    its body through admission's size limit) becomes its 4xx, unless the answer has already begun.

    Added after the service's other middlewares and left inside BentoML's own
    (service/middleware_order.py): caught in front of them, such a request was never answered (its
    client timed out; BentoML 1.4.40), so the exception must not cross them.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Rejected as rejected:
            if started or scope["type"] != "http":
                raise
            await error_response(rejected.status, rejected.message)(scope, receive, tracking_send)
