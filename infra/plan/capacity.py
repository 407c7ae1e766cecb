"""What one instance can do, how long it takes to come up, and what it costs.

Per-instance capacity is images/s within the latency target with one image per request. Without a
benchmark result these are ASSUMED figures (no GPU has measured them for this project yet): the API
process costs ~10 ms of CPU per request in BentoML's stack (docs/performance.md), so a 4-vCPU
instance tops out near 300-400 requests/s whatever its GPU, and the numbers below keep a margin under
that. With ``--benchmark`` (bench/results/results.json, or gpu_check.json from a GPU) each type's
capacity is derived from measurements instead (:func:`derived_capacity`); ``--capacity`` gives one figure
for the stack's own type.
Boot times: a cold start is boot + pulling the image (2.95 GB compressed, 5.0 GB unpacked: docs/container.md)
+ model load and warm-up; a warm start is starting a stopped warm-pool instance whose image is on disk
(docs/deploy.md). Both are estimates until measured on AWS.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ..instance_types import INSTANCE_TYPES

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
    # boot ~90 s + image pull and unpack ~4 min (kept from the 3.64 GB image: unmeasured, so not
    # shortened) + model load and warm-up ~1 min
    cold_start_s: float = 420.0
    warm_start_s: float = 75.0  # start a stopped instance, container restart, model load, /readyz
    base_latency_s: float = 0.05  # one request at no load: HTTP, decode, one small batch
    source: str = "assumed"

    @property
    def ebs_usd_per_hour(self) -> float:
        return self.root_volume_gb * EBS_USD_PER_GB_MONTH / HOURS_PER_MONTH


def instance_model(instance_type: str, root_volume_gb: int = 100, capacity_rps: float | None = None) -> InstanceModel:
    if instance_type not in INSTANCE_TYPES:
        raise ValueError(f"unknown instance type {instance_type}")
    return InstanceModel(
        instance_type=instance_type,
        capacity_rps=capacity_rps if capacity_rps is not None else ASSUMED_CAPACITY[instance_type],
        usd_per_hour=INSTANCE_TYPES[instance_type].usd_per_hour,
        root_volume_gb=root_volume_gb,
        source="given" if capacity_rps is not None else "assumed",
    )


@dataclass(frozen=True)
class MeasuredCapacity:
    """The benchmark's ``capacity`` object (bench/results/results.json, or gpu_check.json on a GPU)."""

    device: str
    gpu_name: str | None
    precision: str
    cpu_ms_per_image_outside_model: float  # server CPU per image minus the forward pass's
    cpu_ms_per_image: float
    model_ceiling_images_per_s: float  # the raw batched forward pass, best batch size
    cpus: int
    measured: str
    runtime: str = "torch"  # what ran the model (benchmarks before issue 18 ran torch only)

    def gpu_measured(self, gpu: str) -> bool:
        """Whether the ceiling was measured on this GPU model (``T4`` in "Tesla T4", not ``L4`` in "L40S")."""
        return (
            self.device == "cuda" and self.gpu_name is not None and re.search(rf"\b{gpu}\b", self.gpu_name) is not None
        )


def read_capacity(path: Path) -> MeasuredCapacity | None:
    """The ``capacity`` object of a benchmark JSON, or None when it has none (an older result)."""
    data = json.loads(path.read_text()).get("capacity")
    if data is None:
        return None
    if not float(data["cpu_ms_per_image_outside_model"]) > 0 or not float(data["model_ceiling_images_per_s"]) > 0:
        raise ValueError(f"{path}: the capacity figures must be positive: {data}")
    return MeasuredCapacity(
        device=str(data["device"]),
        gpu_name=data.get("gpu_name"),
        precision=str(data["precision"]),
        cpu_ms_per_image_outside_model=float(data["cpu_ms_per_image_outside_model"]),
        cpu_ms_per_image=float(data["cpu_ms_per_image"]),
        model_ceiling_images_per_s=float(data["model_ceiling_images_per_s"]),
        cpus=int(data["cpus"]),
        measured=str(data["measured"]),
        runtime=str(data.get("runtime", "torch")),
    )


def derived_capacity(instance_type: str, measured: MeasuredCapacity) -> tuple[float, str]:
    """(images/s, what binds) for an instance type: the CPU bound (its vCPUs over the measured CPU time
    per image outside the forward pass), capped by the GPU's measured ceiling when the benchmark ran on
    that GPU model (times its GPUs); a type whose GPU was not measured is bounded by its CPU only."""
    spec = INSTANCE_TYPES[instance_type]
    cpu_bound = spec.vcpus * 1000.0 / measured.cpu_ms_per_image_outside_model
    if not measured.gpu_measured(spec.gpu):
        return cpu_bound, f"CPU binds ({spec.vcpus} vCPUs); no GPU ceiling measured on {spec.gpu}"
    gpu_bound = measured.model_ceiling_images_per_s * spec.gpus
    if gpu_bound < cpu_bound:
        return gpu_bound, f"GPU binds ({spec.gpus}x {spec.gpu} measured {measured.measured})"
    return cpu_bound, f"CPU binds ({spec.vcpus} vCPUs; {spec.gpu} ceiling {gpu_bound:.0f}/s)"


def instance_for(
    instance_type: str, root_volume_gb: int, measured_on: str, capacity_rps: float | None, benchmark: Path | None
) -> InstanceModel:
    """The model of ``instance_type``. A benchmark with a ``capacity`` object applies to every type
    (derived_capacity); a given capacity, or an older benchmark's throughput, applies only to the type it
    was measured on (``measured_on``, the stack's instance type), never to the other tiers."""
    measured = read_capacity(benchmark) if benchmark else None
    if measured is not None and capacity_rps is None:
        capacity, binds = derived_capacity(instance_type, measured)
        return replace(instance_model(instance_type, root_volume_gb, capacity), source=f"measured: {binds}")
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
