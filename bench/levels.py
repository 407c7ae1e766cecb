"""One measured load level against a running server: throughput, latency, and the server's CPU per image."""

from __future__ import annotations

import os
from typing import Any

from bench.load import Upload, run_load
from bench.servers import batch_histogram, cpu_seconds


def measure_level(
    url: str, pid: int, uploads: list[Upload], concurrency: int, requests: int, warmup: int
) -> dict[str, Any]:
    if warmup:
        run_load(url, uploads, concurrency, warmup, 0)
    batches_before = batch_histogram(url)
    server_before, client_before = cpu_seconds(pid), _own_cpu_seconds()
    load = run_load(url, uploads, concurrency, requests, 0)
    server_cpu = cpu_seconds(pid) - server_before
    client_cpu = _own_cpu_seconds() - client_before
    batches_after = batch_histogram(url)
    result = load.as_dict()
    result["server_cpu_cores"] = server_cpu / load.seconds
    result["client_cpu_cores"] = client_cpu / load.seconds
    result["server_cpu_ms_per_image"] = 1000 * server_cpu / load.ok if load.ok else float("nan")
    # Requests per forward pass (one image per /predict request); 1 for a server without batching.
    calls, batches = (after - before for after, before in zip(batches_after, batches_before, strict=True))
    result["mean_batch_size"] = calls / batches if batches else 1.0
    return result


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system
