"""Benchmark: raw model ceiling, the plain Flask baseline and this service, same images, same load.

    python -m bench [--out bench/results] [--concurrency 1 8 32 64] [--requests 384] [--weights PATH]

Prints one table and writes results.json and throughput.png to --out. See docs/performance.md.
Per level it reports the server's CPU per image served and the part of it spent outside the model's
forward pass (that CPU minus the forward pass's own CPU per image at the mean batch size the server
actually ran, measured in the raw section). results.json's ``capacities`` (one per served configuration)
are what the planner reads; capacity.json holds just them.
"""

from __future__ import annotations

# isort: off
# Before torch loads: the service's OpenMP setting (service/__init__.py), so that the raw forward pass
# is measured as the service runs it.
import service  # noqa: F401
# isort: on

import argparse
import functools
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch
from rich.progress import Progress

from bench import goals, raw_model, report
from bench.agreement import classifiers
from bench.capacity import capacity
from bench.levels import measure_level
from bench.load import Upload
from bench.sample_images import make_images, varied_photo
from bench.servers import baseline_server, service_server
from container import stand_in_weights
from service.model.openvino_runtime import OpenVINOClassifier, read
from service.model.quantize import agreement as top1_agreement
from service.model.runtime import choose
from service.model.weights import build_resnet18, load_state_dict
from service.preprocessing import preprocess

RAW_BATCH_SIZES = (1, 8, 16, 32)
BASELINE = "baseline (Flask, fp32)"
AGREEMENT_PHOTOS = 200


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
    parser.add_argument("--weights", default=None, help="a .pth state dict; default: seeded confident stand-in")
    parser.add_argument("--calibration-photos", type=int, default=300, help="photos the INT8 model is made from")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precisions = raw_model.precisions_for(device)
    openvino_precisions = raw_model.openvino_precisions() if device == "cpu" else []

    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(args.weights) if args.weights else _seeded_weights(Path(scratch))
        state, _ = load_state_dict(str(weights), progress=False)
        model = build_resnet18(state)
        # Every server serves the same model store, made by the real import command (INT8 included).
        home = Path(scratch) / "bentoml"
        int8_model = _model_store(home, weights, Path(scratch) / "photos", args.calibration_photos, device)
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
            "servers": [],
        }

        with Progress() as progress:
            raw_runs = [(p, b, raw_model.SERVICE) for p in precisions for b in RAW_BATCH_SIZES]
            raw_runs += [("fp32", b, raw_model.EAGER) for b in RAW_BATCH_SIZES]
            raw_runs += [(p, b, raw_model.OPENVINO) for p in openvino_precisions for b in RAW_BATCH_SIZES]
            task = progress.add_task("raw model", total=len(raw_runs))
            raw: list[raw_model.RawResult] = []
            for precision, batch_size, variant in raw_runs:
                served = int8_model if precision == "int8" else None
                raw.append(raw_model.measure(device, precision, batch_size, args.raw_seconds, model, variant, served))
                progress.advance(task)
            results["raw"] = [r.as_dict() for r in raw]

            # (name in the table, log file stem, start, precision, model variant it runs)
            runs: list[tuple[str, str, Any, str, str]] = []
            if not args.skip_baseline:
                start = functools.partial(baseline_server, weights)
                runs.append((BASELINE, "baseline", start, "fp32", raw_model.EAGER))
            if device == "cuda":
                served_runs = [("torch", p) for p in precisions]
            else:  # torch's fp32 (the old default), OpenVINO fp32 (the default without native bf16), the
                # CPU default here and INT8: every configuration a CPU instance type may run (infra/plan)
                served_runs = list(
                    dict.fromkeys(
                        [("torch", "fp32"), ("openvino", "fp32"), default_runtime(device), ("openvino", "int8")]
                    )
                )
            for runtime, precision in served_runs:
                env = {"BENTOML_HOME": str(home), "RESNET18_RUNTIME": runtime}
                start = functools.partial(service_server, None, precision, extra_env=env)
                variant = raw_model.OPENVINO if runtime == "openvino" else raw_model.SERVICE
                runs.append(
                    (server_name(runtime, precision), f"service-{runtime}-{precision}", start, precision, variant)
                )
            for name, stem, start, precision, variant in runs:
                task = progress.add_task(name, total=len(args.concurrency))
                levels = []
                with start(args.out / f"{stem}.log") as (url, pid):
                    for concurrency in args.concurrency:
                        level = measure_level(url, pid, uploads, concurrency, args.requests, args.warmup)
                        model_ms = raw_model.cpu_ms_per_image_at(raw, precision, level["mean_batch_size"], variant)
                        level["model_cpu_ms_per_image"] = model_ms
                        level["cpu_ms_per_image_outside_model"] = level["server_cpu_ms_per_image"] - model_ms
                        levels.append(level)
                        progress.advance(task)
                results["servers"].append({"name": name, "precision": precision, "levels": levels})
                time.sleep(1)

        # On generated photos that neither the stand-in weights nor the INT8 calibration saw (the
        # benchmark's own images are near-copies of one another: too alike to say much about agreement).
        photos = [varied_photo(40_000 + seed) for seed in range(AGREEMENT_PHOTOS)]
        crops = np.stack([preprocess(data, 50_000_000) for data in photos])
        results["agreement"] = []
        fast = [p for p in (precisions if device == "cuda" else openvino_precisions) if p != "fp32"]
        for precision in fast:
            reference, candidate = classifiers(model, device, "fp32" if precision == "int8" else precision)
            if precision == "int8" and int8_model is not None:
                candidate = OpenVINOClassifier(int8_model, "int8", cache_dir=None)
            agreement = top1_agreement(reference, candidate, crops)
            results["agreement"].append({"precision": precision, **agreement.as_dict()})

    results["raw_best"] = [
        max((r for r in results["raw"] if r["precision"] == p and r["model"] == v), key=lambda r: r["images_per_s"])
        for v, p in {(r["model"], r["precision"]) for r in results["raw"] if r["model"] != raw_model.EAGER}
    ]
    results["raw_eager_best"] = max(
        (r for r in results["raw"] if r["model"] == raw_model.EAGER and r["batch_size"] in goals.EAGER_BATCH_SIZES),
        key=lambda r: r["images_per_s"],
    )
    results["goals"] = goals.evaluate(results, BASELINE)
    results["capacities"] = [_capacity(results, device, runtime, precision) for runtime, precision in served_runs]
    results["capacity"] = _capacity(results, device, *default_runtime(device))
    print(report.table(results))
    report.write_json(results, args.out / "results.json")
    # What the planner reads, small enough to keep with the docs that quote it (bench/measured/).
    report.write_json({key: results[key] for key in ("machine", "capacity", "capacities")}, args.out / "capacity.json")
    report.plot(results, args.out / "throughput.png")
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'throughput.png'}")


def server_name(runtime: str, precision: str) -> str:
    return f"service ({runtime} {precision})"


def default_runtime(device: str) -> tuple[str, str]:
    """What the service runs with no settings on this machine (service.model.runtime.choose)."""
    choice = choose("auto", "auto", "auto", cuda_available=device == "cuda")
    return choice.runtime, choice.precision


def _capacity(results: dict[str, Any], device: str, runtime: str, precision: str) -> dict[str, Any]:
    name = server_name(runtime, precision)
    level = goals.level(results, name, goals.TARGET_CONCURRENCY)
    measured = {entry["concurrency"] for entry in next(s for s in results["servers"] if s["name"] == name)["levels"]}
    idle = goals.level(results, name, 1) if 1 in measured else None
    variant = raw_model.OPENVINO if runtime == "openvino" else raw_model.SERVICE
    ceiling = next(
        r["images_per_s"] for r in results["raw_best"] if r["precision"] == precision and r["model"] == variant
    )
    gpu_name = torch.cuda.get_device_name(0) if device == "cuda" else None
    return capacity(device, gpu_name, runtime, precision, level, ceiling, idle)


def _seeded_weights(folder: Path) -> Path:
    """Fixed weights whose answers look trained (container/stand_in_weights.py; real weights: --weights)."""
    path = folder / "resnet18-bench.pth"
    stand_in_weights.confident(str(path))
    return path


def _model_store(home: Path, weights: Path, photos: Path, count: int, device: str) -> ov.Model | None:
    """Import ``weights`` into a fresh model store with the real command, and on a CPU its INT8 version
    from ``count`` generated photos (none of them a benchmark image); returns the INT8 model."""
    env = {**os.environ, "BENTOML_HOME": str(home)}
    command = [sys.executable, "-m", "service.import_model", "--weights", str(weights)]
    if device == "cpu":
        photos.mkdir()
        for seed in range(count):
            (photos / f"{seed:04d}.jpg").write_bytes(varied_photo(20_000 + seed))
        # 0.9: the stand-in weights are more sensitive to rounding than trained ones (stand_in_weights.py);
        # the agreement the benchmark reports is measured on its own images below.
        command += ["--quantize", "int8", "--calibration", str(photos), "--min-agreement", "0.9"]
    imported = subprocess.run(command, env=env, capture_output=True, text=True)
    if imported.returncode != 0:
        raise SystemExit(f"the model import failed:\n{imported.stderr[-3000:]}")
    if device != "cpu":
        return None
    int8 = next((home / "models" / "resnet18-int8").glob("*/openvino"))
    return read(int8)


if __name__ == "__main__":
    main()
