"""Benchmark: raw model ceiling, the plain Flask baseline and this service, same images, same load.

    python -m bench [--out bench/results] [--concurrency 1 8 32 64] [--requests 384] [--weights PATH]

Prints one table and writes results.json and throughput.png to --out. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from bench import raw_model, report
from bench.agreement import top1_agreement
from bench.load import Upload, run_load
from bench.sample_images import jpeg
from bench.servers import baseline_server, cpu_seconds, service_server
from service.model import build_resnet18, load_state_dict
from service.preprocessing import preprocess

RAW_BATCH_SIZES = (1, 8, 16, 32)
TARGET_CONCURRENCY = 32


def make_images(count: int, large: int) -> list[bytes]:
    """``count`` 500x375 photos and ``large`` 12-megapixel ones (4032x3024), mixed in evenly."""
    small = [jpeg(500, 375, seed=seed, quality=90) for seed in range(count - large)]
    big = [jpeg(4032, 3024, seed=1000 + seed, quality=85) for seed in range(large)]
    step = max(1, len(small) // max(1, large))
    images: list[bytes] = []
    for index, data in enumerate(small):
        images.append(data)
        if big and index % step == step - 1:
            images.append(big.pop())
    return images + big


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{os.cpu_count()} CPU cores ({cpu}){gpu}, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--requests", type=int, default=384, help="measured requests per concurrency level")
    parser.add_argument("--warmup", type=int, default=64)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--large-images", type=int, default=2, help="of --images, how many are 12 MP photos")
    parser.add_argument("--raw-seconds", type=float, default=3.0)
    parser.add_argument("--weights", default=None, help="a .pth state dict; default: seeded random weights")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precisions = raw_model.precisions_for(device)

    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(args.weights) if args.weights else _seeded_weights(Path(scratch))
        state, _ = load_state_dict(str(weights), progress=False)
        model = build_resnet18(state)
        images = make_images(args.images, args.large_images)
        uploads = [Upload.of("image", data) for data in images]
        results: dict[str, Any] = {
            "machine": machine(),
            "device": device,
            "load": {
                "images": len(images),
                "image_sizes": f"{len(images) - args.large_images} x 500x375, {args.large_images} x 4032x3024",
                "requests": args.requests,
                "warmup": args.warmup,
            },
            "raw": [],
            "servers": [],
        }

        with Progress() as progress:
            task = progress.add_task("raw model", total=len(precisions) * len(RAW_BATCH_SIZES))
            for precision in precisions:
                for batch_size in RAW_BATCH_SIZES:
                    results["raw"].append(
                        raw_model.measure(device, precision, batch_size, args.raw_seconds, model).as_dict()
                    )
                    progress.advance(task)

            runs: list[tuple[str, str, Any]] = []  # (name in the table, log file stem, start)
            if not args.skip_baseline:
                runs.append(("baseline (Flask, fp32)", "baseline", lambda log: baseline_server(weights, log)))
            for precision in precisions:
                start = functools.partial(service_server, weights, precision)
                runs.append((f"service ({precision})", f"service-{precision}", start))
            for name, stem, start in runs:
                task = progress.add_task(name, total=len(args.concurrency))
                levels = []
                with start(args.out / f"{stem}.log") as (url, pid):
                    for concurrency in args.concurrency:
                        levels.append(_measure_level(url, pid, uploads, concurrency, args))
                        progress.advance(task)
                results["servers"].append({"name": name, "levels": levels})
                time.sleep(1)

        crops = torch.stack([preprocess(data, 50_000_000) for data in images])
        names = [str(index) for index in range(len(images))]
        results["agreement"] = []
        for precision in precisions[1:]:
            agreement = top1_agreement(crops, names, model, device, precision)
            results["agreement"].append(
                {"precision": precision, "images": agreement.images, "same_top1": agreement.same_top1,
                 "rate": agreement.rate, "max_score_difference": agreement.max_score_difference}
            )  # fmt: skip

    results["raw_best"] = [
        max((r for r in results["raw"] if r["precision"] == p), key=lambda r: r["images_per_s"]) for p in precisions
    ]
    results["ratios"] = _ratios(results, precisions)
    print(report.table(results))
    report.write_json(results, args.out / "results.json")
    report.plot(results, args.out / "throughput.png")
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'throughput.png'}")


def _measure_level(url: str, pid: int, uploads: list[Upload], concurrency: int, args: Any) -> dict[str, Any]:
    if args.warmup:
        run_load(url, uploads, concurrency, args.warmup, 0)
    server_before, client_before = cpu_seconds(pid), _own_cpu_seconds()
    load = run_load(url, uploads, concurrency, args.requests, 0)
    result = load.as_dict()
    result["server_cpu_cores"] = (cpu_seconds(pid) - server_before) / load.seconds
    result["client_cpu_cores"] = (_own_cpu_seconds() - client_before) / load.seconds
    return result


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _at(server: dict[str, Any], concurrency: int) -> float:
    for level in server["levels"]:
        if level["concurrency"] == concurrency:
            return float(level["images_per_s"])
    return float("nan")


def _ratios(results: dict[str, Any], precisions: list[str]) -> list[dict[str, Any]]:
    servers = {server["name"]: server for server in results["servers"]}
    raw_best = {r["precision"]: r["images_per_s"] for r in results["raw_best"]}
    ratios = []
    baseline = servers.get("baseline (Flask, fp32)")
    for precision in precisions:
        service = servers[f"service ({precision})"]
        c = TARGET_CONCURRENCY
        if baseline:
            ratios.append({"label": f"service ({precision}) / baseline at concurrency {c}",
                           "value": _at(service, c) / _at(baseline, c), "target": ">= 5"})  # fmt: skip
        ratios.append({"label": f"service ({precision}) / raw {precision} ceiling at concurrency {c}",
                       "value": _at(service, c) / raw_best[precision], "target": ">= 0.6"})  # fmt: skip
    return ratios


def _seeded_weights(folder: Path) -> Path:
    """Random but fixed weights: the same model for every server (real weights: --weights)."""
    torch.manual_seed(0)
    path = folder / "resnet18-bench.pth"
    torch.save(build_resnet18(None).state_dict(), path)
    return path


if __name__ == "__main__":
    main()
