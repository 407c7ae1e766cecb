"""GPU instance types this stack supports, as users pick them (docs/deploy.md, "Choosing an instance type").

Only NVIDIA GPUs of the Turing generation or newer: the container's torch is built for CUDA 13, which
dropped Volta (p3) and older, and g4ad carries an AMD GPU. Prices: on-demand Linux, us-east-1, from
AWS's public price list as of 2025 (not re-checked since; prices change): they feed the README's cost
table only, nothing is billed from them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInstanceType:
    name: str
    gpu: str
    gpus: int
    gpu_memory_gib: int
    vcpus: int
    usd_per_hour: float
    note: str  # what it is for; which to pick for a traffic profile: `python -m infra.plan --recommend`


GPU_INSTANCE_TYPES: dict[str, GpuInstanceType] = {
    t.name: t
    for t in [
        GpuInstanceType("g4dn.xlarge", "T4", 1, 16, 4, 0.526, "the cheapest GPU; the default"),
        GpuInstanceType("g4dn.2xlarge", "T4", 1, 16, 8, 0.752, "T4 with more CPU for decoding"),
        GpuInstanceType("g5.xlarge", "A10G", 1, 24, 4, 1.006, "A10G"),
        GpuInstanceType("g5.2xlarge", "A10G", 1, 24, 8, 1.212, "A10G with more CPU for decoding"),
        GpuInstanceType("g6.xlarge", "L4", 1, 24, 4, 0.805, "L4: an A10G alternative"),
        GpuInstanceType("g6e.xlarge", "L40S", 1, 48, 4, 1.861, "L40S"),
        GpuInstanceType("p4d.24xlarge", "A100", 8, 320, 96, 21.96, "8x A100"),
        GpuInstanceType("p5.48xlarge", "H100", 8, 640, 192, 55.04, "8x H100"),
    ]
}

# Families whose GPUs the container cannot use, with the reason a user gets.
UNSUPPORTED_FAMILIES = {
    "p2": "K80 GPUs are not supported by CUDA 13",
    "p3": "V100 GPUs (Volta) are not supported by CUDA 13",
    "g3": "M60 GPUs are not supported by CUDA 13",
    "g4ad": "g4ad has an AMD GPU; the image needs NVIDIA CUDA",
}
