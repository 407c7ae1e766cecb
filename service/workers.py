"""How many API processes serve, and which GPU each one drives: the one rule (issue 20).

Each API process is a whole pipeline (HTTP, decoding, adaptive batching and the model), so on a GPU
instance every process holds a CUDA context, a copy of the weights and its own batcher: one process per GPU
batches all of that GPU's traffic and keeps one context, and more split the traffic into smaller batches
and add a context each. What can make more pay is the front end: a process's event loop (HTTP, multipart,
batching, JSON) holds the GIL, so one process keeps only so many cores busy decoding (measured on 2 vCPUs
with ``python -m bench.frontend``: docs/performance.md, "Workers per GPU"; bench/gpu_check.sh measures it on
a GPU instance's cores).

Light on purpose (no torch, no BentoML): the planner (infra/plan) imports :func:`workers_per_gpu`,
:func:`default_workers` and :data:`FRONT_END_CORES_PER_PROCESS`, so that its multi-GPU capacity follows the
same rule as the service.
"""

from __future__ import annotations

from .config import ConfigError

# Cores one API process keeps busy: measured on 2 vCPUs with the service's model replaced by a no-op
# (python -m bench.frontend, docs/performance.md "Workers per GPU"): one process served 348-379 images/s on
# 1.27-1.32 cores of 2, 0.35 of them left idle (the load generator took 0.3), with its event loop at
# 1.1-1.25 CPU-ms per image of 3.5-3.7; the GIL serialises the rest. A second process used them only when
# the connections split evenly (+15% at 16 clients, less at 8 and 32). Unmeasured on more cores: gpu_check.
FRONT_END_CORES_PER_PROCESS = 1.3
# The most API processes per GPU, by default and by RESNET18_API_WORKERS: each holds a CUDA context
# (~0.3-0.5 GB), the weights and its allocator's cache; four on a 16 GB T4 stay under the fleet's scale-in
# bound for GPU memory (25.7%) only while each keeps under ~0.96 GiB at idle (docs/performance.md, "GPU
# memory at idle"; bench/gpu_check.sh measures it).
MAX_WORKERS_PER_GPU = 4


def workers_per_gpu(vcpus: int, gpus: int) -> int:
    """API processes per GPU when RESNET18_API_WORKERS is unset: as many as the GPU's share of the vCPUs
    keeps busy (its share / FRONT_END_CORES_PER_PROCESS, rounded), at least one, at most MAX_WORKERS_PER_GPU.
    4 vCPUs per GPU (g4dn/g5/g6.xlarge): 3; 8 or more (the 2xlarge types, p4d, p5): 4."""
    if gpus < 1 or vcpus < 1:
        raise ValueError(f"vcpus={vcpus}, gpus={gpus}")
    share = max(1, vcpus // gpus)
    return max(1, min(MAX_WORKERS_PER_GPU, round(share / FRONT_END_CORES_PER_PROCESS)))


def front_end_ceiling(vcpus: int, gpus: int, cpu_ms_per_image: float) -> float:
    """Images/s the API processes of an instance can parse and decode (default worker count): each keeps
    FRONT_END_CORES_PER_PROCESS cores busy, all of them together at most the instance's vCPUs. For the
    planner, next to the GPUs' own ceiling; ``cpu_ms_per_image``: CPU per image outside the model."""
    processes = default_workers(gpus, vcpus)
    return min(vcpus, processes * FRONT_END_CORES_PER_PROCESS) * 1000.0 / cpu_ms_per_image


def default_workers(gpus: int, vcpus: int) -> int:
    """API processes with RESNET18_API_WORKERS unset: :func:`workers_per_gpu` on each visible GPU; one
    without a GPU (there the model's threads use every core: a second copy would split the cores and the
    batches)."""
    if gpus < 0:
        raise ValueError(f"gpus={gpus}")
    return gpus * workers_per_gpu(vcpus, gpus) if gpus else 1


def checked_workers(workers: int, gpus: int) -> int:
    """``workers`` (RESNET18_API_WORKERS) if the visible GPUs can take them; ConfigError otherwise."""
    if gpus and workers > gpus * MAX_WORKERS_PER_GPU:
        raise ConfigError(
            f"RESNET18_API_WORKERS={workers} puts more than {MAX_WORKERS_PER_GPU} API processes on each of "
            f"{gpus} visible GPU(s) (each holds a CUDA context and a model copy)"
        )
    return workers


def device_index(worker_index: int | None, gpus: int) -> int:
    """The GPU (index among the visible ones) that a worker drives: round-robin over the visible GPUs.

    ``worker_index`` is ``bentoml.server_context.worker_index``: circus's worker id, which starts at 1
    (_bentoml_impl/worker/service.py); None outside `bentoml serve` (one process: the first GPU)."""
    if gpus < 1:
        raise ValueError(f"no visible GPU to pin worker {worker_index} to")
    if worker_index is None:
        return 0
    if worker_index < 1:
        raise ValueError(f"BentoML worker indices start at 1, got {worker_index}")
    return (worker_index - 1) % gpus


def workers_on_each_gpu(workers: int, gpus: int) -> list[int]:
    """How many of ``workers`` processes :func:`device_index` puts on each GPU (for logs and the planner)."""
    counts = [0] * gpus
    for index in range(1, workers + 1):
        counts[device_index(index, gpus)] += 1
    return counts
