"""The ``capacity`` object of results.json and gpu_check.json: what one instance like the measured one
serves. The planner (``python -m infra.plan``) reads exactly these keys; keep them stable."""

from __future__ import annotations

import datetime
import math
import os
from typing import Any


def capacity(
    device: str,
    gpu_name: str | None,
    runtime: str,
    precision: str,
    level: dict[str, Any],
    model_ceiling_images_per_s: float,
) -> dict[str, Any]:
    """``level``: the service's measured level (bench.levels.measure_level plus the model's CPU share)."""
    return {
        "device": device,
        "gpu_name": gpu_name,
        "runtime": runtime,
        "precision": precision,
        "cpu_ms_per_image_outside_model": _finite(level["cpu_ms_per_image_outside_model"]),
        "cpu_ms_per_image": _finite(level["server_cpu_ms_per_image"]),
        "model_ceiling_images_per_s": _finite(model_ceiling_images_per_s),
        "cpus": os.cpu_count() or 1,
        "measured": datetime.date.today().isoformat(),
    }


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"capacity figure is not finite: {value}")
    return float(value)
