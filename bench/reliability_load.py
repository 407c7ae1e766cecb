"""Closed-loop clients and probes for the reliability scenarios, recording every request's outcome.

Unlike bench/load.py (throughput at a fixed request count), these run until told to stop, keep each
request's send and answer times, and classify outcomes by HTTP status or exception name, so a scenario
can tell the requests in flight at an event from those sent after it.
"""

from __future__ import annotations

import asyncio
import math
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import httpx

from bench.load import Upload


@dataclass(frozen=True)
class Sample:
    """One request: when it was sent and answered (time.monotonic()), and its outcome."""

    sent: float
    done: float
    outcome: str  # "200", "503", ... or an exception name ("ReadTimeout", "ConnectError")
    kind: str = ""
    retry_after_s: float | None = None  # the answer's Retry-After (seconds), if it had one

    @property
    def latency_s(self) -> float:
        return self.done - self.sent

    @property
    def ok(self) -> bool:
        return self.outcome == "200"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def outcomes(samples: Sequence[Sample]) -> dict[str, int]:
    return dict(sorted(Counter(s.outcome for s in samples).items()))


def latency_summary(samples: Sequence[Sample]) -> dict[str, float]:
    """p50/p99/max latency in ms."""
    ms = [1000 * s.latency_s for s in samples]
    return {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "max_ms": max(ms, default=math.nan)}


async def send(client: httpx.AsyncClient, url: str, upload: Upload, kind: str = "") -> Sample:
    sent = time.monotonic()
    try:
        response = await client.post(url, content=upload.body, headers={"content-type": upload.content_type})
    except httpx.HTTPError as exc:
        return Sample(sent, time.monotonic(), type(exc).__name__, kind)
    return Sample(
        sent, time.monotonic(), str(response.status_code), kind, _seconds(response.headers.get("retry-after"))
    )


def _seconds(retry_after: str | None) -> float | None:
    """A Retry-After given in seconds (the service's form; an HTTP date is not followed here)."""
    try:
        return float(retry_after) if retry_after is not None else None
    except ValueError:
        return None


def pooled_client(connections: int, timeout_s: float) -> httpx.AsyncClient:
    """A keep-alive pool of ``connections``, like a load balancer's connections to one target."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(limits=limits, timeout=timeout_s)


@dataclass
class RawConnection:
    """One client's keep-alive HTTP/1.1 connection on bare asyncio streams, for the overload scenario.

    httpx costs a few milliseconds of CPU per request; at 8x overload on a 2-core machine, where most
    answers are quick 503s, the load generator then competes with the server for the same cores. This
    sends a pre-encoded request and reads only the status line, headers and a ``Content-Length`` body.
    Outcomes are named as httpx names them: ``ConnectError`` (refused), ``ReadError`` (reset),
    ``RemoteProtocolError`` (closed before an answer), ``ReadTimeout``.
    """

    url: str
    timeout_s: float
    _streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = field(default=None, repr=False)

    def _request(self, upload: Upload) -> bytes:
        parts = urllib.parse.urlsplit(self.url)
        head = (
            f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: {upload.content_type}\r\nContent-Length: {len(upload.body)}\r\n\r\n"
        )
        return head.encode() + upload.body

    async def _exchange(self, request: bytes) -> tuple[str, float | None]:
        if self._streams is None:
            parts = urllib.parse.urlsplit(self.url)
            try:
                self._streams = await asyncio.open_connection(parts.hostname, parts.port)
            except OSError:
                return "ConnectError", None
        reader, writer = self._streams
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)[1]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, _seconds(headers.get("retry-after"))

    async def post(self, upload: Upload, kind: str = "") -> Sample:
        sent = time.monotonic()
        retry_after: float | None = None
        try:
            outcome, retry_after = await asyncio.wait_for(self._exchange(self._request(upload)), self.timeout_s)
        except TimeoutError:
            outcome = "ReadTimeout"
        except asyncio.IncompleteReadError:
            outcome = "RemoteProtocolError"
        except OSError:
            outcome = "ReadError"
        if not outcome.isdigit():
            self.close()
        return Sample(sent, time.monotonic(), outcome, kind, retry_after)

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


Post = Callable[[int, Upload], Awaitable[Sample]]  # (client index, upload) -> its outcome


def httpx_posts(client: httpx.AsyncClient, url: str) -> Post:
    """Every client through one shared httpx pool."""
    return lambda _index, upload: send(client, url, upload)


def raw_posts(url: str, clients: int, timeout_s: float) -> tuple[Post, Callable[[], Awaitable[None]]]:
    """A :class:`RawConnection` per client, and a coroutine function closing them all (as httpx's
    ``aclose``)."""
    connections = [RawConnection(url, timeout_s) for _ in range(clients)]

    async def close() -> None:
        for connection in connections:
            connection.close()

    return (lambda index, upload: connections[index].post(upload)), close


async def closed_loop(
    post: Post,
    uploads: Sequence[Upload],
    clients: int,
    until: Callable[[], bool],
    out: list[Sample],
    backoff_s: float = 0.1,
    honor_retry_after: bool = False,
) -> None:
    """``clients`` clients, each sending its next request when the last is answered, until ``until()``.
    After a failure a client waits ``backoff_s`` (as a retrying client would), so a server that fails
    fast is not flooded with thousands of requests per second by the load generator itself; with
    ``honor_retry_after``, as long as the answer's Retry-After says if it is longer (as a well-behaved
    client, or an SDK's retry policy, does)."""

    async def one(index: int) -> None:
        n = index
        while not until():
            sample = await post(index, uploads[n % len(uploads)])
            out.append(sample)
            n += clients
            if not sample.ok:
                wait = max(backoff_s, sample.retry_after_s or 0) if honor_retry_after else backoff_s
                await asyncio.sleep(wait)

    await asyncio.gather(*(one(index) for index in range(clients)))


async def probe_every(
    url: str, interval_s: float, until: Callable[[], bool], out: list[Sample], timeout_s: float = 10
) -> None:
    """GET ``url`` every ``interval_s`` on one connection of its own (a health checker's), each probe
    after the last is answered: a probe that hangs shows as a long latency, not as many lost probes."""
    async with pooled_client(1, timeout_s) as client:
        while not until():
            started = time.monotonic()
            try:
                outcome = str((await client.get(url)).status_code)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            out.append(Sample(started, time.monotonic(), outcome))
            await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))


async def probe_on_ticks(
    url: str, interval_s: float, until: Callable[[], bool], out: list[Sample], timeout_s: float = 5
) -> None:
    """GET ``url`` every ``interval_s`` whether or not the last probe was answered, each on a fresh
    connection: shows when readiness changes even while probes hang."""

    async def one() -> None:
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=timeout_s) as client:
                outcome = str((await client.get(url)).status_code)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        out.append(Sample(started, time.monotonic(), outcome))

    pending: list[asyncio.Task[None]] = []
    while not until():
        pending.append(asyncio.create_task(one()))
        await asyncio.sleep(interval_s)
    await asyncio.gather(*pending)
