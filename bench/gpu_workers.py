"""The parts of bench/gpu_check.sh that issue 20 added, each bounded in time:

- :func:`workers_sweep`: 1, 2 and 4 API processes on one GPU through `bentoml serve`: images/s and p99 at
  two concurrencies, and each worker's GPU memory after warm-up (its own log line: allocated, reserved
  before and after ``empty_cache``) and as NVML sees each process idle: after warm-up, just after the load,
  and after the idle release (RESNET18_GPU_IDLE_RELEASE_S, 4 s here);
- :func:`decode_race`: ``RESNET18_DECODE=device``'s decoding (service.device_decode) while the model
  thread's forward passes are queued on the default stream: decoded crops and model answers must not
  change (pytorch/vision#9606); and the unprotected call (torchvision's decode_jpeg on the shared stream)
  as the control that shows the hazard on this GPU;
- :func:`container_flags`: the hardened `docker run` flags (infra/container.py), read-only root included,
  and the documented fallback without it, on this GPU through the NVIDIA container toolkit, where an
  engine and a local image exist ("no container engine" otherwise).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

MEMORY_LINE = re.compile(
    r"GPU memory of this worker on (?P<device>\S+) after warm-up: allocated (?P<allocated>\d+) MiB, "
    r"reserved (?P<reserved>\d+) MiB \((?P<before>\d+) before empty_cache\), process total (?P<process>\S+) MiB"
)
T4_MIB = 15360  # what nvidia-smi reports as a T4's total: the smallest GPU of infra/instance_types.py
IDLE_RELEASE_S = 4  # RESNET18_GPU_IDLE_RELEASE_S for the sweep (60 by default)
SCALE_IN_BOUND_PERCENT = 30 * 60 / 70  # infra/config.py: all normalised signals under 30; GPU memory's mark 60


def allocator_lines(log: Path) -> list[dict[str, Any]]:
    """Each worker's 'GPU memory ... after warm-up' line (service.model.torch_runtime), parsed."""
    found = []
    for match in MEMORY_LINE.finditer(log.read_text(errors="replace")):
        figures = match.groupdict()
        found.append(
            {
                "device": figures["device"],
                "allocated_mib": float(figures["allocated"]),
                "reserved_mib": float(figures["reserved"]),
                "reserved_before_release_mib": float(figures["before"]),
                "process_mib": None if figures["process"] == "unknown" else float(figures["process"]),
            }
        )
    return found


def process_memory(pids: set[int] | None = None) -> dict[int, float]:
    """MiB used per compute process on the GPUs (nvidia-smi), only ``pids`` when given."""
    out = subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    ).stdout
    used: dict[int, float] = {}
    for line in out.splitlines():
        pid, _, mib = line.partition(",")
        if pid.strip().isdigit() and mib.strip().replace(".", "").isdigit():
            used[int(pid)] = float(mib)
    return {pid: mib for pid, mib in used.items() if pids is None or pid in pids} or used


def gpu_used_mib() -> tuple[float, float]:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used,memory.total", "--format=csv,noheader,nounits", "-i", "0"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    ).stdout
    used, _, total = out.strip().partition(",")
    return float(used), float(total)


def workers_sweep(
    weights: Path, precision: str, out: Path, uploads: list[Any], counts: tuple[int, ...], requests: int
) -> list[dict[str, Any]]:
    import psutil

    from bench.levels import measure_level
    from bench.servers import service_server

    rows = []
    for workers in counts:
        log = out / f"gpu-workers-{workers}.log"
        env = {
            "RESNET18_DEVICE": "cuda",
            "RESNET18_MAX_BATCH_SIZE": "64",
            "RESNET18_API_WORKERS": str(workers),
            "RESNET18_GPU_IDLE_RELEASE_S": str(IDLE_RELEASE_S),  # seen within the check's time
        }
        with service_server(weights, precision, log, env) as (url, pid):
            time.sleep(2)
            pids = {p.pid for p in psutil.Process(pid).children(recursive=True)}
            row: dict[str, Any] = {
                "workers": workers,
                "allocator_after_warm_up": allocator_lines(log),
                "process_mib_idle_after_warm_up": sorted(process_memory(pids).values()),
                "gpu_used_mib_idle_after_warm_up": gpu_used_mib()[0],
                "levels": [],
            }
            for concurrency in (64, 256):
                level = measure_level(url, pid, uploads, concurrency, requests, 128)
                row["levels"].append(level)
                print(
                    f"workers {workers} c={concurrency:>3}: {level['images_per_s']:8.1f} images/s, "
                    f"p99 {level['p99_ms']:.0f} ms, errors {level['errors']}, batch {level['mean_batch_size']:.1f}, "
                    f"CPU {level['server_cpu_ms_per_image']:.2f} ms/image",
                    flush=True,
                )
            time.sleep(2)
            row["process_mib_idle_after_load"] = sorted(process_memory(pids).values())
            time.sleep(2 * IDLE_RELEASE_S)  # the idle release (service.http_service) has run in every worker
            row["process_mib_idle_after_release"] = sorted(process_memory(pids).values())
            used, total = gpu_used_mib()
            row["gpu_used_mib_idle_after_load"], row["gpu_total_mib"] = used, total
        idle, released = row["process_mib_idle_after_load"], row["process_mib_idle_after_release"]
        row["percent_of_a_t4_idle_after_load"] = 100 * sum(idle) / T4_MIB
        row["percent_of_a_t4_idle_after_release"] = 100 * sum(released) / T4_MIB
        print(
            f"workers {workers}: GPU memory per process (MiB) idle after warm-up "
            f"{row['process_mib_idle_after_warm_up']}, just after load {idle} "
            f"({row['percent_of_a_t4_idle_after_load']:.1f}% of a T4's {T4_MIB} MiB), after the idle release "
            f"{released} ({row['percent_of_a_t4_idle_after_release']:.1f}%); scale-in bound "
            f"{SCALE_IN_BOUND_PERCENT:.1f}%; allocator after warm-up {row['allocator_after_warm_up']}",
            flush=True,
        )
        rows.append(row)
    return rows


def decode_race(model: torch.nn.Module, images: list[bytes], seconds: float = 10.0) -> dict[str, Any]:
    """Device decoding next to queued forward passes: the service's path, then the unprotected call."""
    from torchvision.io import ImageReadMode, decode_jpeg

    from service import device_decode
    from service.model.runtime import RuntimeChoice
    from service.model.torch_runtime import TorchClassifier

    device = torch.device("cuda:0")
    classifier = TorchClassifier(model, RuntimeChoice("torch", "cuda", "fp16"), "cuda:0")
    classifier.warm_up(64)
    batch = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (64, 3, 224, 224), dtype=np.uint8))
    expected_answers = classifier.forward(batch)
    sample = images[:16]
    expected_crops = device_decode.decode_batch(sample, device)  # quiet GPU: the reference
    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in sample]
    quiet_raw = [image.cpu() for image in decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)]

    def run(decode_once: Any) -> dict[str, int]:
        stop = threading.Event()
        wrong = {"answers": 0, "forward_passes": 0, "decodes": 0, "crops": 0}

        def model_thread() -> None:
            while not stop.is_set():
                answers = classifier.forward(batch)
                wrong["forward_passes"] += 1
                if not torch.allclose(answers, expected_answers, atol=1e-2) or not torch.isfinite(answers).all():
                    wrong["answers"] += 1

        thread = threading.Thread(target=model_thread)
        thread.start()
        deadline = time.monotonic() + seconds / 2
        try:
            while time.monotonic() < deadline:
                wrong["decodes"] += 1
                wrong["crops"] += int(not decode_once())
        finally:
            stop.set()
            thread.join()
        return wrong

    def service_path() -> bool:
        return bool(torch.equal(device_decode.decode_batch(sample, device), expected_crops))

    def unprotected() -> bool:
        decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        return all(torch.equal(image.cpu(), quiet) for image, quiet in zip(decoded, quiet_raw, strict=True))

    result = {"service_path": run(service_path), "unprotected_control": run(unprotected)}
    print(f"device decoding next to queued forward passes (wrong counts): {result}", flush=True)
    return result


def container_engine() -> str | None:
    return next((name for name in ("docker", "podman") if shutil.which(name)), None)


def container_flags(timeout_s: int = 45) -> dict[str, Any]:
    """The hardened flags on this GPU, and the fallback without --read-only, with any local image."""
    engine = container_engine()
    if engine is None:
        print("container flags: no container engine", flush=True)
        return {"engine": None, "result": "no container engine"}
    listed = subprocess.run(
        [engine, "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    images = [name for name in listed.stdout.split() if "<none>" not in name]
    if listed.returncode != 0 or not images:
        reason = listed.stderr.strip()[-300:] or "no local image (and no registry to pull from)"
        print(f"container flags: {engine} cannot run a container here: {reason}", flush=True)
        return {"engine": engine, "result": f"not run: {reason}"}
    from infra.container import hardened_run_flags

    gpu_flags = ["--gpus", "all"] if engine == "docker" else ["--device", "nvidia.com/gpu=all"]
    outcome: dict[str, Any] = {"engine": engine, "image": images[0]}
    for name, read_only in (("hardened", True), ("writable_root_fallback", False)):
        command = [
            engine,
            "run",
            "--rm",
            *gpu_flags,
            *hardened_run_flags(engine, read_only),  # type: ignore[arg-type]
            "--entrypoint",
            "nvidia-smi",
            images[0],
            "-L",
        ]
        try:
            ran = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout_s)
            outcome[name] = {"rc": ran.returncode, "output": (ran.stdout + ran.stderr).strip()[-600:]}
        except subprocess.TimeoutExpired:
            outcome[name] = {"rc": None, "output": f"timed out after {timeout_s} s"}
        print(f"container flags ({name}, {engine}): {outcome[name]}", flush=True)
    return outcome
