"""The ``capacity`` objects of results.json and gpu_check.json: what one instance like the measured one
serves, one object per served runtime and precision (``capacities``; ``capacity`` is the machine's default
configuration). The planner (``python -m infra.plan --benchmark``) reads exactly these keys; keep them
stable. ``bench/measured/`` keeps the objects of runs the docs quote."""

from __future__ import annotations

import datetime
import math
import os
from pathlib import Path
from typing import Any

# /proc/cpuinfo flags -> the names infra/instance_types.py gives a type's inference extensions
CPU_FEATURES = {"avx512_vnni": "avx512_vnni", "avx512_bf16": "avx512_bf16", "amx_tile": "amx"}


def cpu_description(cpuinfo: str | None = None) -> dict[str, Any]:
    """The CPU the figures were measured on: how they transfer to another instance type (infra/plan)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor's
    flags = set(fields.get("flags", "").split())
    siblings, cores = int(fields.get("siblings", "0") or 0), int(fields.get("cpu cores", "0") or 0)
    return {
        "cpu_model": fields.get("model name") or None,
        # vCPUs per physical core: 1 where each vCPU is a core (c7a), 2 with hyperthreads (c7i)
        "threads_per_core": siblings // cores if siblings and cores else None,
        "cpu_features": sorted(name for flag, name in CPU_FEATURES.items() if flag in flags),
    }


def capacity(
    device: str,
    gpu_name: str | None,
    runtime: str,
    precision: str,
    level: dict[str, Any],
    model_ceiling_images_per_s: float,
    idle_level: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``level``: the service's measured level at the target concurrency (bench.levels.measure_level plus
    the model's CPU share); ``idle_level``: one client, whose median is the latency of a lone request."""
    return {
        "device": device,
        "gpu_name": gpu_name,
        "runtime": runtime,
        "precision": precision,
        "cpu_ms_per_image_outside_model": _finite(level["cpu_ms_per_image_outside_model"]),
        "cpu_ms_per_image": _finite(level["server_cpu_ms_per_image"]),
        "model_ceiling_images_per_s": _finite(model_ceiling_images_per_s),
        "base_latency_ms": _finite(idle_level["p50_ms"]) if idle_level else None,
        "cpus": os.cpu_count() or 1,
        **cpu_description(),
        "measured": datetime.date.today().isoformat(),
    }


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"capacity figure is not finite: {value}")
    return float(value)
