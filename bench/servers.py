"""Start the two HTTP servers under test as subprocesses, wait until they serve, stop them cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def managed_process(
    command: list[str],
    env: dict[str, str],
    log: Path,
    ready_url: str | None = None,
    timeout_s: float = 180,
    unset: tuple[str, ...] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` in its own process group (so stopping it stops its workers too), logging to
    ``log``, with this process's environment plus ``env`` minus ``unset``; with ``ready_url``, yield
    only once that URL answers 200."""
    full_env = {name: value for name, value in {**os.environ, **env}.items() if name not in unset}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout_s
        while ready_url is not None:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{ready_url} not ready after {timeout_s} s:\n{log.read_text(errors='replace')[-4000:]}"
                )
            time.sleep(0.5)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def baseline_server(weights: Path, log: Path) -> Iterator[tuple[str, int]]:
    """The classic Flask example, with torch's default OpenMP behaviour (not the service's setting);
    yields its /predict URL and process id."""
    port = free_port()
    command = [sys.executable, "-m", "bench.baseline_server", "--port", str(port), "--weights", str(weights)]
    ready = f"http://127.0.0.1:{port}/health"
    with managed_process(command, {}, log, ready, timeout_s=120, unset=("OMP_WAIT_POLICY",)) as process:
        yield f"http://127.0.0.1:{port}/predict", process.pid


@contextlib.contextmanager
def service_server(
    weights: Path | None, precision: str, log: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """This service via `bentoml serve` (``weights`` None: the model store of ``extra_env``'s
    BENTOML_HOME); yields its /predict URL and the process id of `bentoml serve`."""
    port = free_port()
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    env = {
        **({"RESNET18_WEIGHTS": str(weights)} if weights is not None else {}),
        "RESNET18_PRECISION": precision,
        "BENTOML_DO_NOT_TRACK": "true",
        **(extra_env or {}),
    }
    command = [bentoml, "serve", "--host", "127.0.0.1", "--port", str(port)]
    with managed_process(command, env, log, f"http://127.0.0.1:{port}/readyz", timeout_s=300) as process:
        yield f"http://127.0.0.1:{port}/predict", process.pid


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by a process and all its descendants (the workers of `bentoml serve`)."""
    parent = psutil.Process(pid)
    total = 0.0
    for process in [parent, *parent.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def batch_histogram(url: str) -> tuple[float, float]:
    """(calls, batches) so far in BentoML's adaptive batch size histogram of the server behind ``url``
    (any URL of it); (0, 0) for a server without one (the Flask baseline: no batching)."""
    base = url.split("/", 3)
    calls = batches = 0.0
    try:
        text = httpx.get("/".join(base[:3]) + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return 0.0, 0.0
    for line in text.splitlines():
        if line.startswith("bentoml_service_adaptive_batch_size_sum"):
            calls += float(line.rsplit(" ", 1)[1])
        elif line.startswith("bentoml_service_adaptive_batch_size_count"):
            batches += float(line.rsplit(" ", 1)[1])
    return calls, batches
