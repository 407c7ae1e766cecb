"""What one instance can do, how long it takes to come up, and what it costs.

Per-instance capacity is images/s with one image per request. It comes from measurements where there
are some (``--benchmark``: bench/results/capacity.json or results.json from `make bench` on a CPU,
gpu_check.json from a GPU; several may be given), each figure labelled with where it came from:

- a **CPU type** runs the model on its CPU: its vCPUs x 1000 / the measured server CPU-ms per image of
  the runtime and precision the stack's service settings choose on that type (OpenVINO bf16 where the
  CPU has native bf16, fp32 elsewhere, int8 when asked: service.model.runtime.choose), transferred by
  :func:`transfer` when the type's vCPUs are hyperthreads and the measured machine's were cores;
- a **GPU type**: the cores its API processes keep busy (the service's worker rule, service/workers.py:
  processes x FRONT_END_CORES_PER_PROCESS, at most its vCPUs) over the measured CPU-ms per image *outside*
  the model (decoding, HTTP), capped by the model's measured ceiling x GPUs where the benchmark ran on that
  GPU model; where its GPU model was not measured, the assumed figure below (or the CPU bound, where that
  is lower);
- otherwise ASSUMED figures (below), said so in every output.

Boot times come from the type's kind (infra/instance_types.py), estimates until measured on AWS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from service.model.runtime import SettingsConflict, choose
from service.timeouts import MAX_LATENCY_MS_CPU, MAX_LATENCY_MS_GPU
from service.workers import default_workers, front_end_ceiling

from ..instance_types import INSTANCE_TYPES, InstanceType

EBS_USD_PER_GB_MONTH = 0.08  # gp3, us-east-1, 2025 list price
HOURS_PER_MONTH = 730.0

# GPU types without a GPU measurement, images/s per instance within the latency target. ASSUMED: no GPU
# has measured this project yet; the API process's CPU per request keeps a 4-vCPU instance near
# 300-400 requests/s whatever its GPU, and these keep a margin under that.
ASSUMED_GPU_CAPACITY = {
    "g4dn.xlarge": 150.0,
    "g4dn.2xlarge": 250.0,
    "g5.xlarge": 250.0,
    "g5.2xlarge": 400.0,
    "g6.xlarge": 220.0,
    "g6e.xlarge": 300.0,
    "p4d.24xlarge": 2500.0,
    "p5.48xlarge": 4000.0,
}
# CPU types without a CPU measurement: server CPU-ms per image served per precision on one vCPU that is
# a whole core. ASSUMED: rounded from this project's 2-core c7a-class measurements (docs/performance.md:
# INT8 6.8-8.2, bf16 10.1-11.6, OpenVINO fp32 18.4-19.2 between runs).
ASSUMED_CPU_MS_PER_IMAGE = {"int8": 8.0, "bf16": 12.0, "fp32": 20.0}
# What a vCPU that is a hyperthread gives of a core's throughput on this work (vector-bound inference
# and JPEG decoding share a core's execution units): two hyperthreads ~1.2 cores. ASSUMED (Intel's own
# figure for Hyper-Threading is "up to 30%" more); measure with `make bench` on a c7i to replace it.
SMT_YIELD = 0.6
GPU_BASE_LATENCY_S = 0.05  # one request at no load on a GPU: HTTP, decode, one small batch (assumed)
CPU_BASE_LATENCY_S = 0.03  # the same on a CPU without a measured one (2 cores measured 8-12 ms: margin)

# What a capacity figure rests on (the tables' "capacity from" column).
MEASURED = "measured"  # on this kind of CPU / this GPU model, vCPUs counted alike
TRANSFERRED = "measured, transferred"  # measured on another vCPU layout, scaled by the assumed SMT_YIELD
CPU_SIDE = "CPU side measured, GPU not"  # a GPU type bounded by its API processes; its GPU unmeasured
ASSUMED = "assumed"
GIVEN = "given"


@dataclass(frozen=True)
class InstanceModel:
    instance_type: str
    capacity_rps: float
    usd_per_hour: float
    root_volume_gb: int = 100
    cold_start_s: float = 420.0
    warm_start_s: float = 75.0
    base_latency_s: float = GPU_BASE_LATENCY_S
    max_latency_s: float = MAX_LATENCY_MS_GPU / 1000  # the service's admission bound (RESNET18_MAX_LATENCY_MS)
    runtime: str = "torch"
    precision: str = "fp16"
    source: str = "assumed"  # how the capacity was found, in a sentence
    basis: str = "assumed"  # in a word or three, for tables: MEASURED, TRANSFERRED, CPU_SIDE, ASSUMED, GIVEN

    @property
    def ebs_usd_per_hour(self) -> float:
        return self.root_volume_gb * EBS_USD_PER_GB_MONTH / HOURS_PER_MONTH


@dataclass(frozen=True)
class MeasuredCapacity:
    """One ``capacities`` object of a benchmark (bench/capacity.py writes them)."""

    device: str
    gpu_name: str | None
    precision: str
    cpu_ms_per_image_outside_model: float  # server CPU per image minus the forward pass's
    cpu_ms_per_image: float
    model_ceiling_images_per_s: float  # the raw batched forward pass, best batch size
    cpus: int
    measured: str
    runtime: str = "torch"  # what ran the model (benchmarks before issue 18 ran torch only)
    base_latency_ms: float | None = None  # median of one client's requests
    cpu_model: str | None = None
    threads_per_core: int | None = None  # None: not recorded (benchmarks before issue 19)

    def gpu_measured(self, gpu: str | None) -> bool:
        """Whether the ceiling was measured on this GPU model (``T4`` in "Tesla T4", not ``L4`` in "L40S")."""
        return (
            gpu is not None
            and self.device == "cuda"
            and self.gpu_name is not None
            and re.search(rf"\b{gpu}\b", self.gpu_name) is not None
        )

    @property
    def where(self) -> str:
        cpu = self.cpu_model or ("a GPU machine" if self.device == "cuda" else "a CPU")
        return f"{self.cpus} vCPUs of {cpu}, {self.measured}"


def _measurement(data: Mapping[str, object], path: Path) -> MeasuredCapacity:
    def number(key: str) -> float:
        value = data[key]
        assert isinstance(value, int | float | str), f"{path}: {key}"
        return float(value)

    if not number("cpu_ms_per_image_outside_model") > 0 or not number("model_ceiling_images_per_s") > 0:
        raise ValueError(f"{path}: the capacity figures must be positive: {dict(data)}")
    base = data.get("base_latency_ms")
    threads = data.get("threads_per_core")
    return MeasuredCapacity(
        device=str(data["device"]),
        gpu_name=None if data.get("gpu_name") is None else str(data["gpu_name"]),
        precision=str(data["precision"]),
        cpu_ms_per_image_outside_model=number("cpu_ms_per_image_outside_model"),
        cpu_ms_per_image=number("cpu_ms_per_image"),
        model_ceiling_images_per_s=number("model_ceiling_images_per_s"),
        cpus=int(number("cpus")),
        measured=str(data["measured"]),
        runtime=str(data.get("runtime", "torch")),
        base_latency_ms=float(base) if isinstance(base, int | float) else None,
        cpu_model=None if data.get("cpu_model") is None else str(data["cpu_model"]),
        threads_per_core=int(threads) if isinstance(threads, int) else None,
    )


def read_capacities(path: Path) -> list[MeasuredCapacity]:
    """The capacity objects of a benchmark JSON: ``capacities``, else the single ``capacity`` of an
    older one, else none (a benchmark from before the capacity object)."""
    data = json.loads(path.read_text())
    objects = data.get("capacities") or ([data["capacity"]] if data.get("capacity") else [])
    return [_measurement(entry, path) for entry in objects]


def transfer(spec: InstanceType, measured: MeasuredCapacity) -> tuple[float, str]:
    """(factor, why) from the measured machine's per-vCPU figures to ``spec``'s vCPUs: 1 where both count
    vCPUs alike; SMT_YIELD where ``spec``'s vCPUs are hyperthreads and the measured ones were cores."""

    def per_vcpu(threads_per_core: int) -> float:
        return 1.0 if threads_per_core == 1 else SMT_YIELD

    if measured.threads_per_core is None:
        return 1.0, "measured CPU's vCPU layout not recorded: taken as the type's"
    factor = per_vcpu(spec.vcpus_per_core) / per_vcpu(measured.threads_per_core)
    if factor == 1.0:
        return 1.0, f"{spec.vcpus_per_core} vCPU(s) per core as measured"
    return factor, (
        f"x{factor:.2f}: {spec.vcpus_per_core} vCPUs per core here, {measured.threads_per_core} measured "
        f"(assumed hyperthread yield {SMT_YIELD})"
    )


def served_configuration(spec: InstanceType, service_env: Mapping[str, str]) -> tuple[str, str]:
    """(runtime, precision) the service picks on ``spec`` with the stack's ``fleet.serviceEnv``."""
    gpu = spec.kind.name == "gpu"
    default_device = "cuda" if gpu else "cpu"
    try:
        choice = choose(
            service_env.get("RESNET18_RUNTIME", "auto"),
            service_env.get("RESNET18_DEVICE", default_device),
            service_env.get("RESNET18_PRECISION", "auto"),
            cuda_available=gpu,
            native_bf16="avx512_bf16" in spec.cpu_features or "amx" in spec.cpu_features,
        )
    except (SettingsConflict, RuntimeError) as exc:
        raise ValueError(f"{spec.name}: the stack's serviceEnv cannot run there: {exc}") from None
    return choice.runtime, choice.precision


Derived = tuple[float, float, str, str]  # images/s, base latency (s), source, basis


def _cpu_type(spec: InstanceType, runtime: str, precision: str, measurements: Sequence[MeasuredCapacity]) -> Derived:
    found = next(
        (m for m in measurements if m.device == "cpu" and (m.runtime, m.precision) == (runtime, precision)), None
    )
    if found is None:
        ms = ASSUMED_CPU_MS_PER_IMAGE.get(precision, ASSUMED_CPU_MS_PER_IMAGE["fp32"])
        factor = 1.0 if spec.vcpus_per_core == 1 else SMT_YIELD
        return (
            spec.vcpus * factor * 1000.0 / ms,
            CPU_BASE_LATENCY_S,
            f"assumed: {runtime} {precision} {ms:g} CPU-ms/image per core, {spec.vcpus} vCPUs x {factor:g}",
            ASSUMED,
        )
    factor, why = transfer(spec, found)
    base = found.base_latency_ms / 1000 if found.base_latency_ms is not None else CPU_BASE_LATENCY_S
    return (
        spec.vcpus * factor * 1000.0 / found.cpu_ms_per_image,
        base,
        f"measured: {runtime} {precision} {found.cpu_ms_per_image:.1f} CPU-ms/image on {found.where}; "
        f"{spec.vcpus} vCPUs, {why}",
        MEASURED if factor == 1.0 else TRANSFERRED,
    )


def _gpu_type(spec: InstanceType, measurements: Sequence[MeasuredCapacity]) -> Derived | None:
    on_gpu = next((m for m in measurements if m.gpu_measured(spec.gpu)), None)
    # Decoding and HTTP cost about the same whatever runs the model; the torch figure where there is one.
    outside = on_gpu or next((m for m in measurements if m.runtime == "torch"), None)
    outside = outside or max(measurements, key=lambda m: m.cpu_ms_per_image_outside_model, default=None)
    if outside is None:
        return None
    factor, why = transfer(spec, outside)
    # The service's own worker rule (service/workers.py): so many API processes, each keeping at most
    # FRONT_END_CORES_PER_PROCESS cores busy, all of them at most the instance's vCPUs.
    processes = default_workers(spec.gpus, spec.vcpus)
    cpu_bound = front_end_ceiling(spec.vcpus, spec.gpus, outside.cpu_ms_per_image_outside_model) * factor
    cores = cpu_bound * outside.cpu_ms_per_image_outside_model / 1000.0
    why = f"{processes} API processes, {cores:.1f} cores busy; {why}"
    if on_gpu is None:  # the labelled estimate, unless the measured CPU side allows less
        assumed = ASSUMED_GPU_CAPACITY[spec.name]
        if cpu_bound < assumed:
            source = f"measured: CPU binds ({spec.vcpus} vCPUs, {why}); no GPU ceiling measured on {spec.gpu}"
            return cpu_bound, GPU_BASE_LATENCY_S, source, CPU_SIDE
        source = f"assumed: no GPU measured on {spec.gpu} (its measured CPU side would allow {cpu_bound:.0f}/s)"
        return assumed, GPU_BASE_LATENCY_S, source, ASSUMED
    gpu_bound = on_gpu.model_ceiling_images_per_s * spec.gpus
    base = on_gpu.base_latency_ms / 1000 if on_gpu.base_latency_ms is not None else GPU_BASE_LATENCY_S
    if gpu_bound < cpu_bound:
        return gpu_bound, base, f"measured: GPU binds ({spec.gpus}x {spec.gpu} measured {on_gpu.measured})", MEASURED
    source = f"measured: CPU binds ({spec.vcpus} vCPUs, {why}; {spec.gpu} ceiling {gpu_bound:.0f}/s)"
    return cpu_bound, base, source, MEASURED if factor == 1.0 else TRANSFERRED


def instance_model(
    instance_type: str,
    root_volume_gb: int = 100,
    capacity_rps: float | None = None,
    measurements: Sequence[MeasuredCapacity] = (),
    service_env: Mapping[str, str] | None = None,
) -> InstanceModel:
    """The model of one instance type: ``capacity_rps`` when given, else from ``measurements``, else assumed."""
    if instance_type not in INSTANCE_TYPES:
        raise ValueError(f"unknown instance type {instance_type}")
    spec = INSTANCE_TYPES[instance_type]
    kind = spec.kind
    runtime, precision = served_configuration(spec, service_env or {})
    gpu = kind.name == "gpu"
    if gpu:
        derived = _gpu_type(spec, measurements)
        capacity, base, source, basis = derived or (
            ASSUMED_GPU_CAPACITY[instance_type],
            GPU_BASE_LATENCY_S,
            "assumed",
            ASSUMED,
        )
    else:
        capacity, base, source, basis = _cpu_type(spec, runtime, precision, measurements)
    if capacity_rps is not None:
        capacity, source, basis = capacity_rps, GIVEN, GIVEN
    return InstanceModel(
        instance_type=instance_type,
        capacity_rps=capacity,
        usd_per_hour=spec.usd_per_hour,
        root_volume_gb=root_volume_gb,
        cold_start_s=kind.cold_start_s,
        warm_start_s=kind.warm_start_s,
        base_latency_s=base,
        max_latency_s=(MAX_LATENCY_MS_GPU if gpu else MAX_LATENCY_MS_CPU) / 1000,
        runtime=runtime,
        precision=precision,
        source=source,
        basis=basis,
    )


def instance_for(
    instance_type: str,
    root_volume_gb: int,
    measured_on: str,
    capacity_rps: float | None,
    benchmarks: Sequence[Path] = (),
    service_env: Mapping[str, str] | None = None,
) -> InstanceModel:
    """The model of ``instance_type``. Benchmarks with capacity objects apply to every type (see the
    module's docstring); a given capacity, or an older benchmark's throughput, applies only to the type it
    was measured on (``measured_on``, the stack's instance type), never to the other tiers."""
    measurements = [m for path in benchmarks for m in read_capacities(path)]
    if measurements and capacity_rps is None:
        return instance_model(instance_type, root_volume_gb, None, measurements, service_env)
    if instance_type != measured_on:
        return instance_model(instance_type, root_volume_gb, None, (), service_env)
    model = instance_model(instance_type, root_volume_gb, capacity_rps, (), service_env)
    for path in benchmarks:
        model = capacity_from_benchmark(model, path)
    return model


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
    return replace(model, capacity_rps=max(rates), source=f"measured ({path.name})", basis=MEASURED)
