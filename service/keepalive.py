"""Idle keep-alive connections stay open for :data:`service.timeouts.KEEPALIVE_S`, in the service itself.

BentoML 1.4.40 sets uvicorn's keep-alive only from ``bentoml serve --timeout-keep-alive`` (default 5 s);
its service configuration has no such key. A load balancer that keeps idle connections longer than the
server (ALB: 60 s) then reuses connections the server has already closed, and answers its client 502.
So that ``bentoml serve`` and the container's entrypoint both get it without a flag anyone can forget,
this raises the keep-alive of every uvicorn server started in a process that imported the service
(the service module loads in each worker before BentoML builds its ``uvicorn.Config``). A longer value
given on the command line is kept.
"""

from __future__ import annotations

import functools
from typing import Any

import uvicorn

from .timeouts import KEEPALIVE_S


def install() -> None:
    original = uvicorn.Config.__init__
    if getattr(original, "_keepalive_floor", None) == KEEPALIVE_S:
        return  # already installed

    @functools.wraps(original)
    def init(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.timeout_keep_alive = max(self.timeout_keep_alive or 0, KEEPALIVE_S)

    init._keepalive_floor = KEEPALIVE_S  # type: ignore[attr-defined]
    uvicorn.Config.__init__ = init  # type: ignore[method-assign]
