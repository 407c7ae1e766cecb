"""A fresh `bentoml serve` of any checkout for each reliability scenario, and its process tree."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.servers import free_port, managed_process

# The module BentoML's arbiter runs each worker of a new-style service with (_bentoml_impl/server/serving.py).
WORKER_MODULE = "_bentoml_impl.worker.service"


@dataclass
class Served:
    base: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[bytes]  # `bentoml serve`: the circus arbiter, holding the listening socket

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.contextmanager
def serve(repo: Path, weights: Path, log: Path, extra_env: dict[str, str] | None = None) -> Iterator[Served]:
    """`bentoml serve` of the checkout at ``repo`` (this venv's BentoML, the checkout's service code),
    on CPU in fp32 with ``weights``; yields once /readyz answers 200, stops it (if still running) after."""
    port = free_port()
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    # The bento argument is the checkout: BentoML makes it the working directory and puts it first on
    # sys.path of the arbiter and the workers, so its `service` package is the one served.
    command = [bentoml, "serve", str(repo.resolve()), "--host", "127.0.0.1", "--port", str(port)]
    env = {
        "RESNET18_WEIGHTS": str(weights),
        "RESNET18_PRECISION": "fp32",
        "RESNET18_DEVICE": "cpu",
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONPATH": str(repo.resolve()),
        **(extra_env or {}),
    }
    base = f"http://127.0.0.1:{port}"
    with managed_process(command, env, log, f"{base}/readyz", timeout_s=300) as process:
        yield Served(base, process)


def workers(pid: int) -> list[psutil.Process]:
    """The service's worker processes under the arbiter ``pid`` (one on CPU)."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if WORKER_MODULE in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
    return found


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    root = psutil.Process(pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total / 1e6


async def gone(process: psutil.Process) -> float:
    """time.monotonic() once a killed ``process`` is dead: a zombie until its parent (the arbiter) reaps
    it, which circus does only on its next check, up to 10 s later. Its sockets close at death."""
    while True:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        await asyncio.sleep(0.005)
    return time.monotonic()
