"""Graceful stop: on SIGTERM (or SIGINT) a worker drains before it stops accepting, within a bound.

What BentoML 1.4.40 + uvicorn 0.54 do without this: the worker's uvicorn stops accepting at once and
waits, with no bound, for every open connection; but the listening socket is shared with the circus
arbiter, which keeps it open until every worker has exited, so the kernel keeps queueing new
connections that nobody accepts: clients and health checks hang instead of being refused. And circus
gives a stopping worker 86400 s (``bentoml.serving.create_watcher``'s graceful_timeout).

With :func:`install`, the first SIGTERM/SIGINT starts a drain instead:
1. :data:`DRAIN` says "draining": the admission middleware answers ``/readyz`` and every new API request
   503 (with Retry-After and ``Connection: close``) at once, and closes keep-alive connections after
   each answer, while the requests already admitted run to their normal answer;
2. when none is left, or after :data:`service.timeouts.DRAIN_TIMEOUT_S`, the listening socket is shut
   down for every process that holds it, the arbiter included (the kernel refuses new connections at
   once), then uvicorn's own shutdown runs, bounded by :data:`service.timeouts.CLOSE_TIMEOUT_S` (then it
   cancels what remains), and the process exits. A second signal skips the wait (uvicorn's usual
   behaviour: a second Ctrl-C forces the exit).

With several workers on one socket (a GPU instance), a worker cannot shut it down while the others
still accept on it (uvloop 0.23 polls a shut-down listener in a busy loop): worker 1 closes the door.
The others exit when their own requests are answered; worker 1, after its own, keeps answering 503
until its siblings have exited (or the bound), then shuts the socket down. If worker 1 is gone, the
last connections of the stop can queue and be reset when the arbiter exits; behind the load balancer
none arrive by then (it deregisters the instance first: docs/deploy.md, "Scale-in").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

import psutil
import uvicorn
from bentoml._internal.context import server_context

from .errors import RETRY_AFTER_S
from .load import LOAD
from .timeouts import CLOSE_TIMEOUT_S, DRAIN_TIMEOUT_S

logger = logging.getLogger(f"bentoml.{__name__}")  # BentoML only shows its own loggers

DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DRAINING_MESSAGE = "shutting down: retry (another instance)"
_BODY = json.dumps({"error": DRAINING_MESSAGE}).encode()
# service.errors.error_response's shape, for connections answered outside uvicorn.
DRAINING_RESPONSE = (
    f"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {RETRY_AFTER_S}\r\n"
    f"connection: close\r\ncontent-length: {len(_BODY)}\r\n\r\n"
).encode() + _BODY
POLL_S = 0.05
HEAR_OUT_S = 1.0  # for a connection accepted just before the worker stopped accepting to send its request


@dataclass
class DrainState:
    """Whether this worker process is draining, and since when (one per process)."""

    started: float | None = None  # time.monotonic() of the stop signal

    @property
    def draining(self) -> bool:
        return self.started is not None

    def begin(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def remaining_s(self) -> float:
        return 0.0 if self.started is None else max(0.0, DRAIN_TIMEOUT_S - (time.monotonic() - self.started))


DRAIN = DrainState()


async def _drain_then_exit(server: uvicorn.Server, exit_: Any, sig: int, frame: FrameType | None, workers: int) -> None:
    logger.info("signal %d: draining %d request(s) in flight (at most %d s)", sig, LOAD.in_flight, DRAIN_TIMEOUT_S)
    while LOAD.in_flight and DRAIN.remaining_s() > 0 and not server.should_exit:
        await asyncio.sleep(POLL_S)
    if LOAD.in_flight:
        logger.warning("drain bound of %d s reached with %d request(s) in flight", DRAIN_TIMEOUT_S, LOAD.in_flight)
    else:
        logger.info("drained in %.1f s", DRAIN_TIMEOUT_S - DRAIN.remaining_s())
    if workers == 1 or server_context.worker_index == 1:  # this worker closes the door (see above)
        while workers > 1 and _siblings_alive() and DRAIN.remaining_s() > 0 and not server.should_exit:
            await asyncio.sleep(POLL_S)
        await _refuse_new_connections(server)
    else:
        for srv in server.servers:
            srv.close()  # stop accepting: the shared socket's other workers take new connections
    await _hear_out_new_connections(server)
    # uvicorn now closes idle and finished connections; whatever still runs after this is cancelled.
    server.config.timeout_graceful_shutdown = CLOSE_TIMEOUT_S
    exit_(server, sig, frame)


async def _refuse_new_connections(server: uvicorn.Server) -> None:
    """Shut the listening sockets down (not just close this process's descriptor): the arbiter holds
    them too, and until it exits the kernel would queue connections that nobody accepts. Connections
    the kernel has already queued would be reset by the shutdown: they are taken first and answered
    503 like any other request during the drain."""
    listeners = [socket.socket(fileno=os.dup(sock.fileno())) for srv in server.servers for sock in srv.sockets]
    for srv in server.servers:
        srv.close()  # stop polling them first
    queued: list[socket.socket] = []
    for listener in listeners:
        with listener:
            listener.setblocking(False)
            with contextlib.suppress(BlockingIOError, OSError):
                while True:
                    queued.append(listener.accept()[0])
            try:
                listener.shutdown(socket.SHUT_RD)
            except OSError as exc:  # already shut down: nothing to refuse
                logger.debug("listening socket shutdown: %s", exc)
    logger.info("listening socket shut down: new connections are refused (%d queued ones answered 503)", len(queued))
    await asyncio.gather(*(_answer_draining(conn) for conn in queued))


async def _answer_draining(conn: socket.socket) -> None:
    """The drain's 503 on a raw connection, then a lingering close (the unread request must not turn
    the close into a reset that loses the answer)."""
    loop = asyncio.get_running_loop()
    with conn:
        conn.setblocking(False)
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(loop.sock_sendall(conn, DRAINING_RESPONSE), CLOSE_TIMEOUT_S)
            conn.shutdown(socket.SHUT_WR)
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                while await loop.sock_recv(conn, 65536):
                    pass


async def _hear_out_new_connections(server: uvicorn.Server) -> None:
    """Once this worker accepts no more, give the connections it accepted just before a moment to send
    their request (answered 503 at once). uvicorn 0.54's shutdown closes a connection on which no request
    has been read yet (``cycle is None``), and the client whose request was already on its way then sees
    the connection closed without an answer: one request in ~1000 of the two-worker SIGTERM test did.
    Idle keep-alive connections (which have had a request) are not waited for; nor anything past the
    drain's bound (it is part of the drain, so the stop bound in service/timeouts.py holds)."""
    deadline = time.monotonic() + min(HEAR_OUT_S, DRAIN.remaining_s())
    while time.monotonic() < deadline and any(
        getattr(connection, "cycle", None) is None for connection in server.server_state.connections
    ):
        await asyncio.sleep(POLL_S / 5)


def _siblings_alive() -> bool:
    """Whether another worker of this server (same parent, same command) is still running."""
    me = psutil.Process()
    command = me.cmdline()[:4]  # interpreter, -m, the worker module, the bento: not the worker id
    parent = me.parent()
    if parent is None:
        return False
    for process in parent.children():
        with contextlib.suppress(psutil.Error):
            if process.pid != me.pid and process.status() != psutil.STATUS_ZOMBIE and process.cmdline()[:4] == command:
                return True
    return False


def install(workers: int) -> None:
    """Make every uvicorn server in this process drain on its first stop signal (idempotent).
    ``workers``: how many worker processes accept on the server's socket."""
    original = uvicorn.Server.handle_exit
    if getattr(original, "_drains", False):
        return

    @functools.wraps(original)
    def handle_exit(self: uvicorn.Server, sig: int, frame: FrameType | None) -> None:
        if DRAIN.draining or sig not in DRAIN_SIGNALS:
            original(self, sig, frame)  # a second signal: stop now
            return
        DRAIN.begin()
        try:
            loop = asyncio.get_running_loop()  # signal handlers run on the loop's (main) thread
        except RuntimeError:
            original(self, sig, frame)  # not serving yet: nothing to drain
            return
        loop.call_soon_threadsafe(lambda: loop.create_task(_drain_then_exit(self, original, sig, frame, workers)))

    handle_exit._drains = True  # type: ignore[attr-defined]
    uvicorn.Server.handle_exit = handle_exit  # type: ignore[method-assign]
