"""What one instance can do, how long it takes to come up, and what it costs.

Per-instance capacity is images/s within the latency target with one image per request. Without a
benchmark result these are ASSUMED figures (no GPU has measured them for this project yet): the API
process costs ~10 ms of CPU per request in BentoML's stack (docs/performance.md), so a 4-vCPU
instance tops out near 300-400 requests/s whatever its GPU, and the numbers below keep a margin under
that. Pass the JSON written by `bench/gpu_check.sh` (``--benchmark``) or ``--capacity`` to use your own.
Boot times: a cold start is boot + pulling the ~6 GB image + model load and warm-up; a warm start is
starting a stopped warm-pool instance whose image is on disk (docs/deploy.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from ..instance_types import GPU_INSTANCE_TYPES

EBS_USD_PER_GB_MONTH = 0.08  # gp3, us-east-1, 2025 list price
HOURS_PER_MONTH = 730.0

ASSUMED_CAPACITY = {  # images/s per instance within the latency target, ASSUMED (see above)
    "g4dn.xlarge": 150.0,
    "g4dn.2xlarge": 250.0,
    "g5.xlarge": 250.0,
    "g5.2xlarge": 400.0,
    "g6.xlarge": 220.0,
    "g6e.xlarge": 300.0,
    "p4d.24xlarge": 2500.0,
    "p5.48xlarge": 4000.0,
}


@dataclass(frozen=True)
class InstanceModel:
    instance_type: str
    capacity_rps: float
    usd_per_hour: float
    root_volume_gb: int = 100
    cold_start_s: float = 420.0  # boot ~90 s + image pull ~4 min + model load and warm-up ~1 min
    warm_start_s: float = 75.0  # start a stopped instance, container restart, model load, /readyz
    base_latency_s: float = 0.05  # one request at no load: HTTP, decode, one small batch
    source: str = "assumed"

    @property
    def ebs_usd_per_hour(self) -> float:
        return self.root_volume_gb * EBS_USD_PER_GB_MONTH / HOURS_PER_MONTH


def instance_model(instance_type: str, root_volume_gb: int = 100, capacity_rps: float | None = None) -> InstanceModel:
    if instance_type not in GPU_INSTANCE_TYPES:
        raise ValueError(f"unknown instance type {instance_type}")
    return InstanceModel(
        instance_type=instance_type,
        capacity_rps=capacity_rps if capacity_rps is not None else ASSUMED_CAPACITY[instance_type],
        usd_per_hour=GPU_INSTANCE_TYPES[instance_type].usd_per_hour,
        root_volume_gb=root_volume_gb,
        source="given" if capacity_rps is not None else "assumed",
    )


def instance_for(
    instance_type: str, root_volume_gb: int, measured_on: str, capacity_rps: float | None, benchmark: Path | None
) -> InstanceModel:
    """The model of ``instance_type``; a given capacity or benchmark applies only to the type it was
    measured on (``measured_on``, the stack's instance type), never to the other tiers."""
    if instance_type != measured_on:
        return instance_model(instance_type, root_volume_gb)
    model = instance_model(instance_type, root_volume_gb, capacity_rps)
    return capacity_from_benchmark(model, benchmark) if benchmark else model


def capacity_from_benchmark(model: InstanceModel, path: Path) -> InstanceModel:
    """Use the best error-free service throughput from a benchmark JSON (bench or gpu_check)."""
    results = json.loads(path.read_text())
    levels = list(results.get("service", []))
    for server in results.get("servers", []):
        if server["name"].startswith("service"):
            levels += server["levels"]
    rates = [level["images_per_s"] for level in levels if level.get("errors", 0) == 0]
    if not rates:
        raise ValueError(f"{path} has no error-free service measurement")
    return replace(model, capacity_rps=max(rates), source=f"measured ({path.name})")
