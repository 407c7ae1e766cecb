"""Instance types this stack serves on, and the two kinds of instance it knows: GPU and CPU.

What differs between a GPU fleet and a CPU fleet (default AMI, container flags, which scaling signals
exist, which image, the warm pool's state, boot-time estimates) is said once, in :class:`InstanceKind`;
the fleet, scaling, user data, dashboard and planner read it from the type's ``kind`` instead of
branching on "is it a GPU".

Pure data: no Pulumi import (the planner and the config validator read it too).

Prices: on-demand Linux, us-east-1, from AWS's public price list (GPU types as of 2025; the CPU types'
.large and .xlarge prices as quoted in issue 19, December 2026; larger sizes of a family are priced
linearly, as AWS prices them). Prices change: they feed the planner's and the docs' cost figures only,
nothing is billed from them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

KindName = Literal["gpu", "cpu"]
WarmPoolState = Literal["Stopped", "Hibernated"]


@dataclass(frozen=True)
class InstanceKind:
    """Everything that differs between a GPU and a CPU instance of this stack."""

    name: KindName
    ami_parameter: str  # the default AMI: a public SSM parameter (fleet.amiId pins one instead)
    bentofile: str  # the bento recipe of the image this kind runs (`make image`, `make deploy`)
    image_variant: str  # the image's name suffix / tag suffix: which of the two images
    run_flags: tuple[str, ...]  # `docker run` flags besides infra/container.py's hardened set
    signals: tuple[str, ...]  # keys of infra.signals.SIGNALS that exist on this kind of instance
    load_signal: str  # of those, the one that tracks served load (the planner sizes fleets on its mark)
    warm_pool_state: WarmPoolState  # what a prewarmed instance waits in
    ready_timeout_s: int  # default fleet.readyTimeoutS: boot to /readyz, image pull included
    cold_start_s: float  # planner estimate: boot + image pull + model load and warm-up (unmeasured on AWS)
    warm_start_s: float  # planner estimate: leaving the warm pool for service (unmeasured on AWS)
    # Root volume (GiB) for the OS, Docker and the pulled image: the default and the least accepted. A kind
    # that hibernates adds the instance's RAM to both (InstanceType.root_volume_gb): hibernation writes
    # the RAM to the encrypted root volume, which "must be large enough to store the RAM contents and
    # accommodate your expected usage" (AWS, hibernation prerequisites).
    root_volume_gb: int
    min_root_volume_gb: int
    # apt packages kept at the AMI's version (dpkg-query patterns) and kept out of unattended upgrades
    # (name prefixes): the GPU AMI's NVIDIA driver, which a silent upgrade breaks until reboot.
    held_packages: tuple[str, ...] = ()
    upgrade_blacklist: tuple[str, ...] = ()

    @property
    def hibernates(self) -> bool:
        """A hibernated warm pool: the launch template enables hibernation, the root volume holds the RAM."""
        return self.warm_pool_state == "Hibernated"


GPU = InstanceKind(
    name="gpu",
    ami_parameter="/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id",
    bentofile="bentofile.yaml",
    image_variant="gpu",
    run_flags=("--gpus", "all"),
    signals=("cpu", "gpu-utilization", "gpu-memory", "queue"),
    load_signal="gpu-utilization",
    warm_pool_state="Stopped",  # no GPU family can hibernate
    ready_timeout_s=1200,
    # boot ~90 s + pulling and unpacking the 5.2 GB image ~4 min + model load and warm-up ~1 min
    cold_start_s=420.0,
    warm_start_s=75.0,  # start a stopped instance, container restart, model load, /readyz
    root_volume_gb=100,  # the DLAMI (CUDA, drivers) plus the 5 GB image, pulled and unpacked
    min_root_volume_gb=60,
    held_packages=("nvidia-*", "libnvidia-*"),
    upgrade_blacklist=("nvidia-", "libnvidia-", "cuda-", "linux-"),
)

CPU = InstanceKind(
    name="cpu",
    # Ubuntu 22.04, not 24.04: AWS lists the AMIs that can hibernate, and its list (as checked for issue 19) has
    # Ubuntu 22.04.2 (serial 20230303 or later) and no 24.04; the warm pool below hibernates.
    # https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/hibernating-prerequisites.html
    ami_parameter="/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id",
    bentofile="bentofile.cpu.yaml",
    image_variant="cpu",
    run_flags=(),
    signals=("cpu", "queue"),
    load_signal="cpu",  # the model runs on the CPU: its utilisation is the load
    # A hibernated instance resumes with its memory: the container, the model and its compiled
    # OpenVINO graph are already loaded, so leaving the pool is a resume, not a boot and a start.
    warm_pool_state="Hibernated",
    ready_timeout_s=600,
    # boot ~60 s + installing Docker and pulling the smaller CPU image ~90 s + model load ~10 s
    cold_start_s=180.0,
    warm_start_s=40.0,  # resume from hibernation (RAM read back from EBS) + /readyz
    root_volume_gb=30,  # Ubuntu (~3 GB), Docker, the CPU image pulled and unpacked, logs; + RAM (hibernation)
    min_root_volume_gb=16,
)

KINDS: dict[KindName, InstanceKind] = {GPU.name: GPU, CPU.name: CPU}


@dataclass(frozen=True)
class InstanceType:
    name: str
    kind: InstanceKind
    vcpus: int
    memory_gib: int
    usd_per_hour: float
    processor: str  # the CPU, and for a GPU type its GPU model ("T4")
    note: str  # what it is for; which to pick for a traffic profile: `python -m infra.plan --recommend`
    gpu: str | None = None  # GPU model, as nvidia-smi names it in part ("T4" in "Tesla T4")
    gpus: int = 0
    gpu_memory_gib: int = 0
    vcpus_per_core: int = 2  # 2 where a vCPU is a hyperthread (Intel), 1 where it is a core (c7a)
    cpu_features: tuple[str, ...] = ()  # the CPU's inference extensions: avx512_vnni, avx512_bf16, amx

    @property
    def root_volume_gb(self) -> int:
        """The default root volume: the kind's, plus room for the RAM where the kind hibernates."""
        return self.kind.root_volume_gb + self._hibernation_gb

    @property
    def min_root_volume_gb(self) -> int:
        return self.kind.min_root_volume_gb + self._hibernation_gb

    @property
    def _hibernation_gb(self) -> int:
        return self.memory_gib if self.kind.hibernates else 0


def _gpu(name: str, gpu: str, gpus: int, gpu_gib: int, vcpus: int, gib: int, usd: float, note: str) -> InstanceType:
    return InstanceType(name, GPU, vcpus, gib, usd, gpu, note, gpu=gpu, gpus=gpus, gpu_memory_gib=gpu_gib)


_GENOA = ("AMD EPYC Genoa (4th gen)", 1, ("avx512_vnni", "avx512_bf16"))
_SAPPHIRE_RAPIDS = ("Intel Xeon Sapphire Rapids (4th gen)", 2, ("avx512_vnni", "avx512_bf16", "amx"))
_ICE_LAKE = ("Intel Xeon Ice Lake (3rd gen)", 2, ("avx512_vnni",))


def _cpu(name: str, vcpus: int, gib: int, usd: float, cpu: tuple[str, int, tuple[str, ...]], note: str) -> InstanceType:
    processor, per_core, features = cpu
    return InstanceType(name, CPU, vcpus, gib, usd, processor, note, vcpus_per_core=per_core, cpu_features=features)


INSTANCE_TYPES: dict[str, InstanceType] = {
    t.name: t
    for t in [
        _gpu("g4dn.xlarge", "T4", 1, 16, 4, 16, 0.526, "the cheapest GPU; the default"),
        _gpu("g4dn.2xlarge", "T4", 1, 16, 8, 32, 0.752, "T4 with more CPU for decoding"),
        _gpu("g5.xlarge", "A10G", 1, 24, 4, 16, 1.006, "A10G"),
        _gpu("g5.2xlarge", "A10G", 1, 24, 8, 32, 1.212, "A10G with more CPU for decoding"),
        _gpu("g6.xlarge", "L4", 1, 24, 4, 16, 0.805, "L4: an A10G alternative"),
        _gpu("g6e.xlarge", "L40S", 1, 48, 4, 32, 1.861, "L40S"),
        _gpu("p4d.24xlarge", "A100", 8, 320, 96, 1152, 21.96, "8x A100"),
        _gpu("p5.48xlarge", "H100", 8, 640, 192, 2048, 55.04, "8x H100"),
        # CPU: OpenVINO INT8/bf16 (docs/performance.md). c7a is the class this project's benchmark runs on.
        _cpu("c7a.large", 2, 4, 0.10264, _GENOA, "the CPU tier's default: the class the benchmark measures"),
        _cpu("c7a.xlarge", 4, 8, 0.20528, _GENOA, "c7a, twice the cores"),
        _cpu("c7a.2xlarge", 8, 16, 0.41056, _GENOA, "c7a, four times the cores"),
        _cpu("c7i.large", 2, 4, 0.08925, _SAPPHIRE_RAPIDS, "AMX; one core, two hyperthreads"),
        _cpu("c7i.xlarge", 4, 8, 0.1785, _SAPPHIRE_RAPIDS, "AMX; two cores"),
        _cpu("c7i.2xlarge", 8, 16, 0.357, _SAPPHIRE_RAPIDS, "AMX; four cores"),
        _cpu("c6i.large", 2, 4, 0.085, _ICE_LAKE, "no native bf16: fp32 or INT8"),
        _cpu("c6i.xlarge", 4, 8, 0.17, _ICE_LAKE, "no native bf16: fp32 or INT8"),
        _cpu("m7i.large", 2, 8, 0.1008, _SAPPHIRE_RAPIDS, "c7i with 8 GiB: no gain for this model"),
        _cpu("m7i.xlarge", 4, 16, 0.2016, _SAPPHIRE_RAPIDS, "c7i with 16 GiB: no gain for this model"),
    ]
}

DEFAULT_INSTANCE_TYPE = "g4dn.xlarge"

# AWS: "You can't hibernate a Linux instance that has more than 150 GB of RAM" (hibernation limitations).
MAX_HIBERNATION_RAM_GIB = 150
assert all(t.memory_gib <= MAX_HIBERNATION_RAM_GIB for t in INSTANCE_TYPES.values() if t.kind.hibernates), (
    "a hibernating kind's type has more RAM than AWS can hibernate"
)

# Families this stack refuses, with the reason a user gets.
UNSUPPORTED_FAMILIES = {
    "p2": "K80 GPUs are not supported by CUDA 13",
    "p3": "V100 GPUs (Volta) are not supported by CUDA 13",
    "g3": "M60 GPUs are not supported by CUDA 13",
    "g4ad": "g4ad has an AMD GPU; the image needs NVIDIA CUDA",
    "g5g": "g5g is arm64 (Graviton) with T4G GPUs: the images are x86_64 only",
}
BURSTABLE_REASON = (
    "burstable (t-family) instances run on CPU credits: sustained inference spends them and the CPU is then "
    "throttled to its baseline (20-40%), so the instance would serve a fraction of the capacity the planner "
    "and the scaling thresholds count on; use c7a, c7i, c6i or m7i"
)
ARM64_REASON = "is arm64 (Graviton): the images are x86_64 only until an arm64 image exists; use c7a, c7i, c6i or m7i"


def refusal(instance_type: str) -> str | None:
    """Why ``instance_type`` cannot serve this stack, or None when it is supported."""
    family = instance_type.split(".")[0]
    if instance_type in INSTANCE_TYPES:
        return None
    if family in UNSUPPORTED_FAMILIES:
        return f"{instance_type}: {UNSUPPORTED_FAMILIES[family]}"
    if family.startswith("t") and family[1:2].isdigit():
        return f"{instance_type}: {BURSTABLE_REASON}"
    if re.fullmatch(r"[a-z]+\d+g[a-z]*", family):  # c7g, c7gn, m6gd, r8g: the Graviton families
        return f"{instance_type} {ARM64_REASON}"
    known = ", ".join(INSTANCE_TYPES)
    return f"{instance_type} is not a supported instance type (supported: {known})"


def kind_of(instance_type: str) -> InstanceKind:
    return INSTANCE_TYPES[instance_type].kind
