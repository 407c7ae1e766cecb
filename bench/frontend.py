"""The front end's ceiling per API process: the service with a no-op model, one process and then more.

    python -m bench.frontend [--workers 1 2] [--concurrency 8 32 64] [--requests 768] [--out bench/results]

Serves ``bench.frontend_service`` (the real service, its forward pass replaced by a no-op) under
`bentoml serve` with RESNET18_API_WORKERS processes and loads it with the benchmark's images and
closed-loop clients (bench.levels). Per level: images/s, latency, the server's CPU per image, and the CPU
per image of the workers' main threads (the event loop: HTTP, multipart, batching, JSON), which holds
the GIL and so bounds what one process can serve whatever the core count: ``1000 / loop ms`` images/s.
Decoding runs on a thread pool with one thread per core and releases the GIL. On a GPU instance the
forward pass costs the CPU little, so these figures are what decides how many API processes a GPU
needs (service/workers.py, docs/performance.md "Workers per GPU").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from bench.levels import measure_level
from bench.load import Upload
from bench.sample_images import make_images
from bench.servers import free_port, managed_process

TARGET = "bench.frontend_service:ImageClassifier"


@contextlib.contextmanager
def frontend_server(workers: int, log: Path, switch_interval_s: float | None = None) -> Iterator[tuple[str, int]]:
    """The no-op service with ``workers`` API processes; yields its /predict URL and `bentoml serve`'s pid."""
    port = free_port()
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    scratch = tempfile.mkdtemp(prefix="frontend-bentoml-")
    env = {
        "BENTOML_HOME": scratch,  # an empty store: the no-op model reads nothing
        "BENTOML_DO_NOT_TRACK": "true",
        "RESNET18_WEIGHTS": "/nonexistent-never-read.pth",  # declares no store model
        "RESNET18_DEVICE": "cpu",
        "RESNET18_API_WORKERS": str(workers),
        **({"BENCH_SWITCH_INTERVAL_S": str(switch_interval_s)} if switch_interval_s else {}),
    }
    command = [bentoml, "serve", TARGET, "--host", "127.0.0.1", "--port", str(port)]
    with managed_process(command, env, log, f"http://127.0.0.1:{port}/readyz", timeout_s=180) as process:
        yield f"http://127.0.0.1:{port}/predict", process.pid


def main_thread_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of each worker's main thread (its event loop), by worker pid."""
    seconds: dict[int, float] = {}
    for worker in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if "_bentoml_impl.worker.service" not in " ".join(worker.cmdline()):
                continue  # not an API worker
            main = next((t for t in worker.threads() if t.id == worker.pid), None)
            if main is not None:
                seconds[worker.pid] = main.user_time + main.system_time
    return seconds


def measure(url: str, pid: int, uploads: list[Upload], concurrency: int, requests: int, warmup: int) -> dict[str, Any]:
    """One level (bench.levels.measure_level) plus the workers' event-loop CPU per image."""
    if warmup:
        measure_level(url, pid, uploads, concurrency, warmup, 0)
    before, busy_before = main_thread_seconds(pid), _busy_seconds()
    level = measure_level(url, pid, uploads, concurrency, requests, 0)
    after, busy = main_thread_seconds(pid), _busy_seconds() - busy_before
    loops = sum(after[p] - before.get(p, after[p]) for p in after)
    # What the rest of the machine ran meanwhile (a shared machine: other people's jobs take cores too).
    level["other_cpu_cores"] = max(0.0, busy / level["seconds"] - level["server_cpu_cores"] - level["client_cpu_cores"])
    level["workers_seen"] = len(after)
    level["event_loop_ms_per_image"] = 1000 * loops / level["ok"] if level["ok"] else float("nan")
    return level


def requests_per_worker(log: Path) -> dict[str, int]:
    """Requests each worker answered, from BentoML's access log ("[:N]" is the worker's index): closed-loop
    clients keep their connections, and which process accepts a connection decides where its load goes."""
    counts: dict[str, int] = {}
    for match in re.finditer(
        r"\[:(\d+)\] \S+ \(scheme=http,method=POST,path=/predict", log.read_text(errors="replace")
    ):
        counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return dict(sorted(counts.items()))


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system + getattr(times, "irq", 0) + getattr(times, "softirq", 0))


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'workers':>7} {'conc':>5} {'images/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
        f"{'srv cores':>9} {'client':>7} {'others':>6} {'CPU ms/img':>10} {'loop ms/img':>11} {'batch':>6}"
    ]
    for row in rows:
        lines.append(
            f"{row['workers']:>7} {row['concurrency']:>5} {row['images_per_s']:>9.1f} {row['p50_ms']:>7.0f} "
            f"{row['p99_ms']:>7.0f} {row['errors']:>6} {row['server_cpu_cores']:>9.2f} {row['client_cpu_cores']:>7.2f} "
            f"{row.get('other_cpu_cores', float('nan')):>6.2f} "
            f"{row['server_cpu_ms_per_image']:>10.2f} {row['event_loop_ms_per_image']:>11.2f} "
            f"{row['mean_batch_size']:>6.1f}"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "")
    return {"cpus": os.cpu_count(), "cpu_model": model, "load_average_before": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--requests", type=int, default=768)
    parser.add_argument("--warmup", type=int, default=64)
    parser.add_argument("--switch-interval", type=float, default=None, help="the workers' GIL switch interval, s")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    uploads = [Upload.of("image", data) for data in make_images(64, 2)]
    results: dict[str, Any] = {"machine": machine(), "switch_interval_s": args.switch_interval, "levels": []}
    for workers in args.workers:
        log = args.out / f"frontend-{workers}.log"
        with frontend_server(workers, log, args.switch_interval) as (url, pid):
            for concurrency in args.concurrency:
                level = measure(url, pid, uploads, concurrency, args.requests, args.warmup)
                level["workers"] = workers
                results["levels"].append(level)
                print(table([level]).splitlines()[-1], flush=True)
        results.setdefault("requests_per_worker", {})[str(workers)] = requests_per_worker(log)
    results["machine"]["load_average_after"] = os.getloadavg()
    print(f"\nFront end only (no-op model), POST /predict, {len(uploads)} JPEGs (62 x 500x375, 2 x 4032x3024)")
    print(f"machine: {results['machine']}")
    print(table(results["levels"]))
    print(f"requests answered per worker (all levels, warm-up included): {results['requests_per_worker']}")
    (args.out / "frontend.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out / 'frontend.json'}")


if __name__ == "__main__":
    main()
