"""The reliability scenarios (docs/reliability.md), each against a fresh `bentoml serve` it is given.

Each returns a JSON-able dict of figures; bench/reliability.py prints them as one table.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import math
import os
import select
import signal
import socket
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from rich.progress import Progress

from bench.load import Upload
from bench.reliability_load import (
    Post,
    Sample,
    closed_loop,
    httpx_posts,
    latency_summary,
    outcomes,
    percentile,
    pooled_client,
    probe_every,
    probe_on_ticks,
    raw_posts,
    send,
)
from bench.reliability_server import Served, gone, tree_rss_mb, workers
from bench.sample_images import encode, jpeg, photo

NORMAL_CLIENTS = 16


async def _ticker(progress: Progress, description: str, seconds: float) -> None:
    """A time-based progress bar for a phase of ``seconds``."""
    task = progress.add_task(description, total=seconds)
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        progress.update(task, completed=elapsed)
        await asyncio.sleep(0.5)
    progress.update(task, completed=seconds)


def _since(samples: Sequence[Sample], t0: float) -> list[dict[str, Any]]:
    return [{"t_s": round(s.sent - t0, 2), "outcome": s.outcome, "ms": round(1000 * s.latency_s, 1)} for s in samples]


def _normal_load(
    client: httpx.AsyncClient, served: Served, uploads: Sequence[Upload], until: Any, out: list[Sample]
) -> asyncio.Task[None]:
    """:data:`NORMAL_CLIENTS` closed-loop clients on /predict through ``client``, until ``until()``."""
    return asyncio.create_task(
        closed_loop(httpx_posts(client, f"{served.base}/predict"), uploads, NORMAL_CLIENTS, until, out)
    )


# a. SIGTERM under load ------------------------------------------------------------------------------


async def stop_under_load(
    served: Served, uploads: Sequence[Upload], progress: Progress, timeout_s: float, exit_wait_s: float = 90
) -> dict[str, Any]:
    """16 clients, SIGTERM to `bentoml serve` (as `docker stop` sends it) after a few seconds of load."""
    samples: list[Sample] = []
    probes: list[Sample] = []
    finished = False
    async with pooled_client(NORMAL_CLIENTS, timeout_s) as client:
        load = _normal_load(client, served, uploads, lambda: finished, samples)
        await _ticker(progress, "stop: load before the signal", 5)
        signalled = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        probe = asyncio.create_task(probe_on_ticks(f"{served.base}/readyz", 0.1, lambda: finished, probes))
        task = progress.add_task("stop: waiting for exit", total=exit_wait_s)
        while served.process.poll() is None and time.monotonic() - signalled < exit_wait_s:
            progress.update(task, completed=time.monotonic() - signalled)
            await asyncio.sleep(0.05)
        exit_code = served.process.poll()
        exited_at = time.monotonic() if exit_code is not None else math.nan
        if exit_code is None:  # not within the wait: kill it, and say so
            with contextlib.suppress(ProcessLookupError):
                os.killpg(served.pid, signal.SIGKILL)
            served.process.wait()
        progress.update(task, completed=exit_wait_s)
        await asyncio.sleep(1)  # a few requests against the stopped server (refused)
        finished = True
        await asyncio.gather(load, probe)

    in_flight = [s for s in samples if s.sent < signalled <= s.done]
    after = [s for s in samples if s.sent >= signalled and (exit_code is None or s.sent < exited_at)]
    after_exit = [s for s in samples if exit_code is not None and s.sent >= exited_at]
    first_503 = next((p.done - signalled for p in sorted(probes, key=lambda p: p.done) if p.outcome == "503"), None)
    return {
        "in_flight_at_signal": outcomes(in_flight),
        "sent_after_signal": outcomes(after),
        "sent_after_signal_latency": latency_summary(after),
        "sent_after_exit": outcomes(after_exit),
        "readyz_after_signal": outcomes(probes),
        "readyz_latency": latency_summary(probes),
        "readyz_first_503_s": first_503,
        "exited": exit_code is not None,
        "exit_code": exit_code,
        "signal_to_exit_s": exited_at - signalled if exit_code is not None else None,
        "exit_wait_s": exit_wait_s,
        "readyz_probes": _since(probes, signalled),
    }


# b + c. overload, with health probes during it ---------------------------------------------------------


def _phase(samples: Sequence[Sample], start: float, end: float) -> dict[str, Any]:
    ok = [s for s in samples if s.ok]
    answered_in_window = sum(1 for s in ok if start <= s.done <= end)
    return {
        "seconds": end - start,
        "goodput_per_s": answered_in_window / (end - start),
        "statuses": outcomes(samples),
        **latency_summary(ok),
        "windows": _windows(samples, start, end),
    }


def _windows(samples: Sequence[Sample], start: float, end: float, width_s: float = 5) -> list[dict[str, Any]]:
    """Per ``width_s`` window by send time: statuses and the p99 of the 200s (a transient at the start of
    a phase, while the admission adapts, and the steady state after it are told apart)."""
    out = []
    at = start
    while at < end - 0.5:
        inside = [s for s in samples if at <= s.sent < at + width_s]
        out.append(
            {
                "from_s": round(at - start, 1),
                "statuses": outcomes(inside),
                **latency_summary([s for s in inside if s.ok]),
            }
        )
        at += width_s
    return out


async def overload(
    served: Served,
    uploads: Sequence[Upload],
    progress: Progress,
    clients: int,
    phase_s: float,
    recovery_s: float,
    timeout_s: float,
    client_kind: str = "raw",
    honor: bool = True,
) -> dict[str, Any]:
    """Normal load, then ``clients`` (8x), then normal again at once; /livez and /readyz probed during 8x.
    ``client_kind`` "raw" (default) sends through one :class:`RawConnection` per client, "httpx" through an
    httpx pool (the client of the other scenarios; costlier per request). With ``honor``, a client told
    503 + Retry-After waits that long before its next request; else 0.1 s (a retry storm)."""
    predict = f"{served.base}/predict"
    normal: list[Sample] = []
    heavy: list[Sample] = []
    recovery: list[Sample] = []
    livez: list[Sample] = []
    readyz: list[Sample] = []

    def deadline(at: float) -> Any:
        return lambda: time.monotonic() >= at

    def posts(count: int) -> tuple[Post, Any]:
        """``count`` clients' way to post, and how to close their connections."""
        if client_kind == "httpx":
            pool = pooled_client(count, timeout_s)
            return httpx_posts(pool, predict), pool.aclose
        return raw_posts(predict, count, timeout_s)

    post, close = posts(NORMAL_CLIENTS)
    warm_end = time.monotonic() + 3
    await asyncio.gather(
        closed_loop(post, uploads, NORMAL_CLIENTS, deadline(warm_end), [], honor_retry_after=honor),
        _ticker(progress, "overload: warm-up", 3),
    )
    normal_start = time.monotonic()
    await asyncio.gather(
        closed_loop(post, uploads, NORMAL_CLIENTS, deadline(normal_start + phase_s), normal, honor_retry_after=honor),
        _ticker(progress, f"overload: {NORMAL_CLIENTS} clients", phase_s),
    )
    normal_end = time.monotonic()
    await close()
    heavy_post, heavy_close = posts(clients)
    post, close = posts(NORMAL_CLIENTS)
    heavy_start = time.monotonic()
    heavy_end = heavy_start + phase_s
    heavy_load = asyncio.create_task(
        closed_loop(heavy_post, uploads, clients, deadline(heavy_end), heavy, honor_retry_after=honor)
    )
    await asyncio.gather(
        probe_every(f"{served.base}/livez", 0.2, deadline(heavy_end), livez),
        probe_every(f"{served.base}/readyz", 0.2, deadline(heavy_end), readyz),
        _ticker(progress, f"overload: {clients} clients", phase_s),
    )
    # Load drops back at once: the recovery clients start while the 8x requests still in flight finish.
    recovery_start = time.monotonic()
    await asyncio.gather(
        heavy_load,
        closed_loop(
            post, uploads, NORMAL_CLIENTS, deadline(recovery_start + recovery_s), recovery, honor_retry_after=honor
        ),
        _ticker(progress, "overload: recovery", recovery_s),
    )
    recovery_end = time.monotonic()
    await heavy_close()
    await close()

    base, loaded = _phase(normal, normal_start, normal_end), _phase(heavy, heavy_start, heavy_end)
    first = [s for s in recovery if s.sent < recovery_start + 2]
    return {
        "normal_clients": NORMAL_CLIENTS,
        "overload_clients": clients,
        "client": client_kind,
        "honor_retry_after": honor,
        "normal": base,
        "overload": loaded,
        "goodput_ratio": loaded["goodput_per_s"] / base["goodput_per_s"] if base["goodput_per_s"] else math.nan,
        "recovery": _phase(recovery, recovery_start, recovery_end),
        "recovery_first_2s": {"statuses": outcomes(first), **latency_summary([s for s in first if s.ok])},
        "health_during_overload": {
            "livez": {"statuses": outcomes(livez), **latency_summary(livez)},
            "readyz": {"statuses": outcomes(readyz), **latency_summary(readyz)},
        },
    }


# d. idle keep-alive --------------------------------------------------------------------------------------


def _closed_by_peer(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def idle_keepalive(served: Served, progress: Progress, idle_s: float = 65) -> dict[str, Any]:
    """A request, ``idle_s`` idle (longer than the ALB's 60 s), a second request on the same connection."""
    parsed = urllib.parse.urlsplit(served.base)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=30)
    conn.request("GET", "/livez")
    first = conn.getresponse()
    first.read()
    assert conn.sock is not None
    sock = conn.sock
    local_port = sock.getsockname()[1]
    closed_after: float | None = None
    started = time.monotonic()
    task = progress.add_task(f"keep-alive: idle {idle_s:.0f} s", total=idle_s)
    while (elapsed := time.monotonic() - started) < idle_s:
        if closed_after is None and _closed_by_peer(sock):
            closed_after = elapsed  # noticed within ~1 s of the server's close
        progress.update(task, completed=elapsed)
        time.sleep(1)
    progress.update(task, completed=idle_s)
    same_socket = conn.sock is sock  # http.client reconnects silently only when it dropped the socket
    try:
        conn.request("GET", "/livez")
        response = conn.getresponse()
        response.read()
        second = str(response.status)
    except (OSError, http.client.HTTPException) as exc:
        second = type(exc).__name__
    second_port = conn.sock.getsockname()[1] if conn.sock is not None else None
    conn.close()
    return {
        "idle_s": idle_s,
        "first": str(first.status),
        "second": second,
        "same_connection": same_socket and second_port == local_port,
        "local_port": local_port,
        "server_closed_after_s": closed_after,
        "ok": second == "200" and same_socket and second_port == local_port,
    }


# e. worker killed ------------------------------------------------------------------------------------------


async def worker_killed(
    served: Served, uploads: Sequence[Upload], progress: Progress, timeout_s: float, give_up_s: float = 120
) -> dict[str, Any]:
    """16 clients; SIGKILL the worker process; how many requests fail and how soon 200s come back."""
    samples: list[Sample] = []
    finished = False
    async with pooled_client(NORMAL_CLIENTS, timeout_s) as client:
        load = _normal_load(client, served, uploads, lambda: finished, samples)
        await _ticker(progress, "worker kill: load before", 5)
        victim = workers(served.pid)[0]  # the only one on CPU; on a GPU, one of one per vCPU
        victim.kill()
        killed = await gone(victim)  # requests sent before this were in flight at the kill

        def first_ok_after() -> Sample | None:
            return min((s for s in samples if s.ok and s.sent >= killed), key=lambda s: s.done, default=None)

        arbiter_exited = math.nan
        task = progress.add_task("worker kill: waiting for 200s", total=give_up_s)
        while (recovered := first_ok_after()) is None and time.monotonic() - killed < give_up_s:
            if served.process.poll() is not None:
                arbiter_exited = time.monotonic()  # the arbiter gave up (no respawn: BENTOML_CONTAINERIZED)
                break
            progress.update(task, completed=time.monotonic() - killed)
            await asyncio.sleep(0.1)
        progress.update(task, completed=give_up_s)
        if recovered is not None:
            await asyncio.sleep(5)  # serving normally again afterwards?
        finished = True
        await load

    arbiter_exit = served.process.poll()
    new_workers = workers(served.pid) if arbiter_exit is None else []
    readyz = "not running"
    if arbiter_exit is None:
        try:
            readyz = str(httpx.get(f"{served.base}/readyz", timeout=10).status_code)
        except httpx.HTTPError as exc:
            readyz = type(exc).__name__
    in_flight = [s for s in samples if s.sent < killed <= s.done]
    after = [s for s in samples if s.sent >= killed]
    after_recovery = [s for s in after if recovered is not None and s.sent >= recovered.done]
    until_recovery = [s for s in after if s not in after_recovery]
    return {
        "in_flight_at_kill": outcomes(in_flight),
        "sent_after_kill_until_first_200": outcomes(until_recovery),
        "sent_after_kill_until_first_200_latency": latency_summary(until_recovery),
        "sent_after_first_200": outcomes(after_recovery),
        "failed_total": sum(1 for s in samples if not s.ok and s.sent < killed + give_up_s),
        "kill_to_first_200_s": recovered.done - killed if recovered else None,
        "old_worker_pid": victim.pid,
        "new_worker_pids": [w.pid for w in new_workers],
        "arbiter_exit_code": arbiter_exit,
        "kill_to_arbiter_exit_s": None if math.isnan(arbiter_exited) else arbiter_exited - killed,
        "readyz_after": readyz,
    }


# f. soak ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakInput:
    kind: str
    upload: Upload | None  # None: a raw request declaring a body over the limit


def soak_inputs() -> list[SoakInput]:
    """One cycle of the mix: good images of several sizes and formats, and every kind of bad input."""
    good = [
        SoakInput("jpeg 500x375", Upload.of("image", jpeg(500, 375, seed=1))),
        SoakInput("jpeg 224x224", Upload.of("image", jpeg(224, 224, seed=2))),
        SoakInput("jpeg 1024x768", Upload.of("image", jpeg(1024, 768, seed=3))),
        SoakInput("jpeg 64x48", Upload.of("image", jpeg(64, 48, seed=4))),
        SoakInput("png 320x240", Upload.of("image", encode(photo(320, 240, seed=5), "PNG"), "image.png")),
    ]
    truncated = jpeg(500, 375, seed=6)
    bad = [
        SoakInput("not an image", Upload.of("image", b"this is not an image " * 50, "notes.jpg")),
        SoakInput("truncated jpeg", Upload.of("image", truncated[: len(truncated) // 2])),
        SoakInput("empty file", Upload.of("image", b"")),
        SoakInput("wrong field", Upload.of("file", jpeg(500, 375, seed=7))),
        SoakInput("oversized declared", None),
    ]
    return good * 3 + bad  # 15 good, 5 bad per cycle of 20


async def _oversized(base: str, timeout_s: float) -> str:
    """A request declaring a 1 GiB body (over any limit), of which only a few bytes are sent: the server
    should answer from the header at once, not wait for the rest."""
    parsed = urllib.parse.urlsplit(base)
    sent_head = (
        f"POST /predict HTTP/1.1\r\nHost: {parsed.netloc}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {1 << 30}\r\nConnection: close\r\n\r\n--b\r\n"
    ).encode()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(parsed.hostname, parsed.port), timeout_s)
    except (OSError, TimeoutError) as exc:
        return type(exc).__name__
    try:
        writer.write(sent_head)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout_s)
        parts = line.split()
        return parts[1].decode() if len(parts) >= 2 else "NoStatusLine"
    except (OSError, TimeoutError) as exc:
        return type(exc).__name__
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def soak(
    served: Served, progress: Progress, requests: int, concurrency: int, timeout_s: float, warmup: int = 100
) -> dict[str, Any]:
    """``requests`` requests of the mix at ``concurrency``; RSS of the server's process tree every ~1 s."""
    inputs = soak_inputs()
    predict = f"{served.base}/predict"
    samples: list[Sample] = []
    rss: list[tuple[int, float]] = []  # (requests answered, MB)
    counter = [0]
    done = [False]

    async with pooled_client(concurrency, timeout_s) as client:

        async def one(item: SoakInput) -> Sample:
            if item.upload is None:
                sent = time.monotonic()
                outcome = await _oversized(served.base, timeout_s)
                return Sample(sent, time.monotonic(), outcome, item.kind)
            return await send(client, predict, item.upload, item.kind)

        async def worker(total: int, out: list[Sample], task: Any) -> None:
            while counter[0] < total:
                index = counter[0]
                counter[0] += 1
                out.append(await one(inputs[index % len(inputs)]))
                progress.advance(task)

        warm = progress.add_task("soak: warm-up", total=warmup)
        await asyncio.gather(*(worker(warmup, [], warm) for _ in range(concurrency)))

        async def sampler() -> None:
            while not done[0]:
                rss.append((len(samples), tree_rss_mb(served.pid)))
                await asyncio.sleep(1)

        counter[0] = 0
        task = progress.add_task(f"soak: {requests} requests", total=requests)
        sampling = asyncio.create_task(sampler())
        await asyncio.gather(*(worker(requests, samples, task) for _ in range(concurrency)))
        done[0] = True
        await sampling
        rss.append((len(samples), tree_rss_mb(served.pid)))

    half = [(n, mb) for n, mb in rss if n >= requests / 2]
    by_kind: dict[str, dict[str, int]] = {}
    for s in samples:
        by_kind.setdefault(s.kind, {})
        by_kind[s.kind][s.outcome] = by_kind[s.kind].get(s.outcome, 0) + 1
    return {
        "requests": len(samples),
        "concurrency": concurrency,
        "statuses": outcomes(samples),
        "by_input": by_kind,
        "server_errors": sum(1 for s in samples if not s.outcome.isdigit() or s.outcome.startswith("5")),
        "rss_start_mb": rss[0][1],
        "rss_max_mb": max(mb for _, mb in rss),
        "rss_end_mb": rss[-1][1],
        "rss_slope_last_half_mb_per_1000": 1000 * _slope(half),
        "rss_samples": rss,
        "ok_latency": latency_summary([s for s in samples if s.ok]),
    }


def _slope(points: Sequence[tuple[int, float]]) -> float:
    """Least-squares slope of MB over requests answered."""
    if len(points) < 2:
        return math.nan
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else math.nan


__all__ = ["idle_keepalive", "overload", "percentile", "soak", "stop_under_load", "worker_killed"]
