"""Closed-loop HTTP load: N concurrent clients, each sending its next request when the last is answered.

Request bodies are encoded once up front, so the client spends its CPU on HTTP, not on multipart
encoding: on a 2-core machine the load generator shares the CPU with the server it measures.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
import uuid
from dataclasses import asdict, dataclass, field

import httpx


@dataclass(frozen=True)
class Upload:
    """A pre-encoded multipart body with one image."""

    body: bytes
    content_type: str

    @classmethod
    def of(cls, field_name: str, data: bytes, filename: str = "image.jpg") -> Upload:
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{filename}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        return cls(head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}")


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    ok: int
    errors: int
    seconds: float
    images_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    error_statuses: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))  # nearest rank
    return sorted_values[index]


async def _run(url: str, uploads: list[Upload], concurrency: int, requests: int, warmup: int) -> LoadResult:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:

        async def send(index: int) -> tuple[float, int]:
            upload = uploads[index % len(uploads)]
            started = time.perf_counter()
            try:
                response = await client.post(url, content=upload.body, headers={"content-type": upload.content_type})
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            return time.perf_counter() - started, status

        async def worker(counter: list[int], out: list[tuple[float, int]], total: int) -> None:
            while counter[0] < total:
                index = counter[0]
                counter[0] += 1
                out.append(await send(index))

        if warmup:
            warm_counter: list[int] = [0]
            await asyncio.gather(*(worker(warm_counter, [], warmup) for _ in range(concurrency)))
        samples: list[tuple[float, int]] = []
        counter = [0]
        started = time.perf_counter()
        await asyncio.gather(*(worker(counter, samples, requests) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started

    latencies = sorted(1000 * seconds for seconds, status in samples if status == 200)
    errors: dict[str, int] = {}
    for _, status in samples:
        if status != 200:
            errors[str(status)] = errors.get(str(status), 0) + 1
    ok = len(latencies)
    return LoadResult(
        concurrency=concurrency,
        requests=len(samples),
        ok=ok,
        errors=len(samples) - ok,
        seconds=elapsed,
        images_per_s=ok / elapsed,
        p50_ms=statistics.median(latencies) if latencies else float("nan"),
        p95_ms=_percentile(latencies, 95),
        p99_ms=_percentile(latencies, 99),
        error_statuses=errors,
    )


def run_load(url: str, uploads: list[Upload], concurrency: int, requests: int, warmup: int) -> LoadResult:
    return asyncio.run(_run(url, uploads, concurrency, requests, warmup))
