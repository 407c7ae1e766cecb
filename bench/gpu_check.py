"""One-shot GPU check: raw fp16/fp32 ceiling per batch size, fp16 vs fp32 top-1 agreement, and
end-to-end images/s through the service (`bentoml serve`), or through the same batched model path
in-process when BentoML is not installed. Then issue 20's questions (bench/gpu_workers.py): 1, 2 and 4
API processes on one GPU and the GPU memory each keeps, device decoding next to queued forward passes,
the hardened container flags on this GPU, and the front end's ceiling per process on this machine's
cores (bench/frontend.py). Writes gpu_check.json after every part (with the planner's ``capacity``
object when the service ran); run by bench/gpu_check.sh. ``--budget-s`` bounds the whole run: a part
whose estimate no longer fits is skipped and says so.

Imports only torch, torchvision and the service's light modules at the top: the HTTP client and the
server tools come with BentoML's wheels and are imported only on the path that uses them."""

from __future__ import annotations

# isort: off
import service  # noqa: F401  (the service's OpenMP setting, before torch loads)
# isort: on

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import gpu_workers, raw_model
from bench.agreement import classifiers
from bench.sample_images import jpeg
from service.model.quantize import agreement as top1_agreement
from service.model.runtime import RuntimeChoice
from service.model.torch_runtime import TorchClassifier
from service.model.weights import build_resnet18
from service.preprocessing import preprocess

BATCH_SIZES = (1, 8, 32, 64, 128)
CONCURRENCY = (32, 64, 128)
WORKER_COUNTS = (1, 2, 4)
# Seconds each later part takes at most on an H200-class machine (16 cores), from its server starts
# (~30-60 s each: BentoML, then warm-up of batch sizes 1-64 with cuDNN autotuning) and its load levels.
ESTIMATES_S = {"workers": 270, "container": 100, "decode_race": 45, "frontend": 100}


def in_process_pipeline(images: list[bytes], model: torch.nn.Module, device: str, seconds: float) -> float:
    """Decode on a thread pool, classify in batches of 64 on the GPU: the service's path without HTTP."""
    classifier = TorchClassifier(model, RuntimeChoice("torch", device, "fp16"))
    classifier.warm_up(64)
    done, started = 0, time.perf_counter()
    with ThreadPoolExecutor() as pool:
        while time.perf_counter() - started < seconds:
            crops = list(pool.map(lambda data: preprocess(data, 50_000_000), images[:64]))
            classifier.forward(torch.from_numpy(np.stack(crops)))
            done += len(crops)
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--requests", type=int, default=1024)
    parser.add_argument("--budget-s", type=float, default=420, help="skip later parts that would not fit")
    args = parser.parse_args()
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"no usable CUDA device (torch {torch.__version__}, CUDA {torch.version.cuda})")
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__} (CUDA {torch.version.cuda})", flush=True)
    torch.manual_seed(0)
    model = build_resnet18(None)
    results: dict[str, Any] = {"device": name, "torch": torch.__version__, "raw": []}

    precisions = ["fp32", "fp16"] if args.device == "cuda" else ["fp32"]
    for precision in precisions:
        for batch_size in BATCH_SIZES:
            raw = raw_model.measure(args.device, precision, batch_size, args.seconds, model)
            results["raw"].append(raw.as_dict())
            print(f"raw {precision:>4} batch {batch_size:>3}: {raw.images_per_s:8.1f} images/s", flush=True)

    images = [jpeg(500, 375, seed=seed) for seed in range(128)]
    crops = torch.from_numpy(np.stack([preprocess(data, 50_000_000) for data in images]))
    if args.device == "cuda":
        agreement = top1_agreement(*classifiers(model, args.device, "fp16"), crops.numpy())
        results["agreement_fp16_vs_fp32"] = {
            "rate": agreement.rate,
            "max_score_difference": agreement.max_score_difference,
        }
        print(f"top-1 agreement fp16 vs fp32: {100 * agreement.rate:.1f}% of {agreement.images}", flush=True)

    def fits(part: str) -> bool:
        elapsed = time.monotonic() - started
        estimate = 5 if part == "container" and gpu_workers.container_engine() is None else ESTIMATES_S[part]
        if elapsed + estimate <= args.budget_s:
            return True
        results.setdefault("skipped", []).append(part)
        print(f"skipped {part}: {elapsed:.0f} s elapsed + ~{estimate} s > budget {args.budget_s:.0f} s")
        return False

    def save() -> None:
        results["elapsed_s"] = time.monotonic() - started
        (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2))

    served = importlib.util.find_spec("bentoml") is not None and shutil.which(
        "bentoml", path=str(Path(sys.executable).parent)
    )
    if served:
        from bench.capacity import capacity
        from bench.levels import measure_level
        from bench.load import Upload
        from bench.servers import service_server

        uploads = [Upload.of("image", data) for data in images]
        with tempfile.TemporaryDirectory() as scratch:
            weights = Path(scratch) / "resnet18.pth"
            torch.save(model.state_dict(), weights)
            precision = "fp16" if args.device == "cuda" else "fp32"
            env = {"RESNET18_DEVICE": args.device, "RESNET18_MAX_BATCH_SIZE": "64"}
            measured = [raw_model.RawResult(**r) for r in results["raw"]]
            with service_server(weights, precision, args.out / "gpu-service.log", env) as (url, pid):
                results["service"] = []
                for concurrency in CONCURRENCY:
                    level = measure_level(url, pid, uploads, concurrency, args.requests, 128)
                    model_ms = raw_model.cpu_ms_per_image_at(measured, precision, level["mean_batch_size"])
                    level["model_cpu_ms_per_image"] = model_ms
                    level["cpu_ms_per_image_outside_model"] = level["server_cpu_ms_per_image"] - model_ms
                    results["service"].append(level)
                    print(
                        f"service c={concurrency:>3}: {level['images_per_s']:8.1f} images/s, "
                        f"p99 {level['p99_ms']:.0f} ms, errors {level['errors']}, "
                        f"CPU {level['server_cpu_ms_per_image']:.2f} ms/image "
                        f"({level['cpu_ms_per_image_outside_model']:.2f} outside the model), "
                        f"batch {level['mean_batch_size']:.1f}",
                        flush=True,
                    )
            at_32 = next(level for level in results["service"] if level["concurrency"] == 32)
            ceiling = max(r.images_per_s for r in measured if r.precision == precision)
            gpu_name = torch.cuda.get_device_name(0) if args.device == "cuda" else None
            idle = next((level for level in results["service"] if level["concurrency"] == 1), None)
            results["capacity"] = capacity(args.device, gpu_name, "torch", precision, at_32, ceiling, idle)
            results["capacities"] = [results["capacity"]]
            save()
            if args.device == "cuda" and fits("workers"):
                results["workers_per_gpu"] = guarded(
                    "workers",
                    gpu_workers.workers_sweep,
                    weights,
                    precision,
                    args.out,
                    uploads,
                    WORKER_COUNTS,
                    args.requests,
                )
                save()
    else:
        rate = in_process_pipeline(images, model, args.device, args.seconds * 3)
        results["in_process_pipeline_images_per_s"] = rate
        print(f"BentoML not installed: in-process decode + batched fp16 path: {rate:.1f} images/s", flush=True)

    save()
    if fits("container"):
        results["container_flags"] = guarded("container", gpu_workers.container_flags)
        save()
    if args.device == "cuda" and fits("decode_race"):
        results["decode_race"] = guarded("decode_race", gpu_workers.decode_race, model, images)
        save()
    if served and fits("frontend"):
        results["frontend"] = guarded("frontend", frontend_ceiling, args.out)
        save()
    save()
    print(f"wrote {args.out / 'gpu_check.json'} after {time.monotonic() - started:.0f} s")


def guarded(part: str, run: Any, *args: Any) -> Any:
    """A later part's result, or what stopped it: one failing part must not cost the others' figures."""
    try:
        return run(*args)
    except Exception as exc:
        print(f"{part} failed: {exc!r}", flush=True)
        return {"error": repr(exc)[-2000:]}


def frontend_ceiling(out: Path) -> list[dict[str, Any]]:
    """bench.frontend on this machine's cores: the no-op service with 1, 2 and 4 API processes."""
    from bench.frontend import frontend_server, measure, requests_per_worker, table
    from bench.load import Upload
    from bench.sample_images import make_images

    uploads = [Upload.of("image", data) for data in make_images(64, 2)]
    rows = []
    for workers in (1, 2, 4):
        log = out / f"frontend-{workers}.log"
        with frontend_server(workers, log) as (url, pid):
            for concurrency in (64, 256):
                level = measure(url, pid, uploads, concurrency, 2048, 256)
                level["workers"] = workers
                rows.append(level)
                print(table([level]).splitlines()[-1], flush=True)
        rows[-1]["requests_per_worker"] = requests_per_worker(log)
        print(f"front end, {workers} worker(s): requests per worker {rows[-1]['requests_per_worker']}", flush=True)
    return rows


if __name__ == "__main__":
    main()
