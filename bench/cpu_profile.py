"""Where the service's CPU goes under load: CPU-ms per image served, per thread of each worker process.

    python -m bench.cpu_profile [--concurrency 32] [--requests 768] [--precision fp32] [--weights PATH]

Starts `bentoml serve` as the benchmark does, loads it with the benchmark's images and reads each
thread's CPU time from the kernel before and after. The event loop is the worker's main thread; the
model's threads are the busiest pair (the model thread and its OpenMP team); the decoding threads
follow. For Python-level detail inside the event loop, attach `py-spy record -p PID` meanwhile.
"""

from __future__ import annotations

# isort: off
import service  # noqa: F401  (the service's OpenMP setting, before torch loads)
# isort: on

import argparse
import tempfile
from pathlib import Path

import psutil
import torch

from bench.load import Upload, run_load
from bench.sample_images import make_images
from bench.servers import service_server
from service.model.weights import build_resnet18


def thread_cpu(process: psutil.Process) -> dict[int, float]:
    return {thread.id: thread.user_time + thread.system_time for thread in process.threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=768)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    uploads = [Upload.of("image", data) for data in make_images(64, 2)]
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(args.weights) if args.weights else Path(scratch) / "resnet18.pth"
        if not args.weights:
            torch.manual_seed(0)
            torch.save(build_resnet18(None).state_dict(), weights)
        with service_server(weights, args.precision, Path(scratch) / "serve.log") as (url, pid):
            run_load(url, uploads, args.concurrency, 64, 0)
            workers = psutil.Process(pid).children(recursive=True)
            before = {worker.pid: thread_cpu(worker) for worker in workers}
            load = run_load(url, uploads, args.concurrency, args.requests, 0)
            after = {worker.pid: thread_cpu(worker) for worker in workers}
    print(f"{load.images_per_s:.1f} images/s at concurrency {args.concurrency}, {load.ok} images")
    for worker in workers:
        spent = {tid: cpu - before[worker.pid].get(tid, 0.0) for tid, cpu in after[worker.pid].items()}
        total = sum(spent.values())
        print(f"worker {worker.pid}: {1000 * total / load.ok:.2f} CPU-ms per image")
        for tid, cpu in sorted(spent.items(), key=lambda item: -item[1]):
            if cpu * 1000 / load.ok >= 0.05:
                role = "main thread (event loop: HTTP, parsing, batching, JSON)" if tid == worker.pid else ""
                print(f"  thread {tid:>7}: {1000 * cpu / load.ok:6.2f} ms  {role}")


if __name__ == "__main__":
    main()
