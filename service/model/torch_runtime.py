"""The torch runtime: ResNet18 with batch norms folded, on a GPU (fp16 by default) or a CPU."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import torch
from torch.fx.experimental.optimization import fuse

from ..preprocessing import CROP, normalize
from .runtime import RuntimeChoice

logger = logging.getLogger(f"bentoml.{__name__}")  # BentoML only shows its own loggers

PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def log_cuda_versions() -> None:
    """Torch's CUDA build against the installed driver: a mismatch is the top deployment failure."""
    driver = "unknown"
    try:
        import pynvml

        pynvml.nvmlInit()
        driver = str(pynvml.nvmlSystemGetDriverVersion())
    except Exception as exc:  # no NVML (CPU machine, or the driver is missing)
        driver = f"unavailable ({exc.__class__.__name__})"
    logger.info(
        "torch %s, built for CUDA %s, cuDNN %s; NVIDIA driver %s; cuda available: %s",
        torch.__version__,
        torch.version.cuda,
        torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,  # type: ignore[no-untyped-call]
        driver,
        torch.cuda.is_available(),
    )


MIB = 1024 * 1024


def release_cached_memory(device: torch.device, when: str = "after warm-up") -> dict[str, float | None]:
    """Give back to the driver what the caching allocator holds beyond live tensors, and report what this
    worker keeps on ``device``, in MiB: ``allocated`` (live tensors: the weights), ``reserved`` (the
    allocator's segments, before and after the release) and ``process`` (the whole process on that GPU
    per NVML, CUDA context and cuDNN/cuBLAS included; None where NVML cannot say, e.g. in a container
    whose PIDs NVML does not see). Warm-up runs every batch size and cuDNN's autotuner tries workspaces
    for each: without this, their peak stays reserved while the worker idles, and the fleet's GPU-memory
    signal reads it as load (docs/performance.md, "GPU memory at idle"). ``when``: for the log line."""
    torch.cuda.synchronize(device)
    reserved_before = torch.cuda.memory_reserved(device)
    torch.cuda.empty_cache()
    report: dict[str, float | None] = {
        "allocated_mib": torch.cuda.memory_allocated(device) / MIB,
        "reserved_before_release_mib": reserved_before / MIB,
        "reserved_mib": torch.cuda.memory_reserved(device) / MIB,
        "process_mib": process_gpu_mib(device),
    }
    logger.info(
        "GPU memory of this worker on %s %s: allocated %.0f MiB, reserved %.0f MiB (%.0f before "
        "empty_cache), process total %s MiB",
        device,
        when,
        report["allocated_mib"],
        report["reserved_mib"],
        report["reserved_before_release_mib"],
        "unknown" if report["process_mib"] is None else f"{report['process_mib']:.0f}",
    )
    return report


def process_gpu_mib(device: torch.device) -> float | None:
    """This process's memory on ``device`` per NVML (context included), or None where NVML cannot say."""
    try:
        import pynvml

        pynvml.nvmlInit()
        uuid = str(torch.cuda.get_device_properties(device).uuid)
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if process.pid == os.getpid() and process.usedGpuMemory is not None:
                return float(process.usedGpuMemory) / MIB
    except Exception as exc:  # no NVML, an old driver, another PID namespace: the torch figures remain
        logger.debug("NVML could not report this process's GPU memory: %s", exc)
    return None


class TorchClassifier:
    """ResNet18 on one device and precision (a :class:`~.runtime.Classifier`).

    ``device``: where it runs, when more exact than ``choice.device`` ("cuda:1": this worker's GPU,
    service.model_service.worker_device). Built on the thread that runs its forward passes (the model
    thread), which then has that GPU as its current device."""

    def __init__(self, model: torch.nn.Module, choice: RuntimeChoice, device: str | None = None) -> None:
        self._choice = choice
        self.device = torch.device(device or choice.device)
        self.dtype = PRECISION_DTYPES[choice.precision]
        self.gpu_memory: dict[str, float | None] | None = None  # at the last release_cached_memory
        self.last_used = self.released_at = 0.0  # time.monotonic() of the last served batch, the last release
        if self.device.type == "cuda":
            if self.device.index is not None:
                # Anything that names no device in this thread (a synchronize, cuDNN's handles) goes to this
                # worker's GPU rather than opening a second context on the first one.
                torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True  # autotuned during warm_up, not on live traffic
        # Fold each batch norm into the convolution before it (exact in eval mode up to float rounding:
        # ~2e-6 on fp32 logits): +20% images/s in fp32 on CPU, +7% in bf16 (docs/performance.md).
        fused = fuse(model.eval())
        self.model = fused.to(device=self.device, dtype=self.dtype).to(memory_format=torch.channels_last)

    @property
    def choice(self) -> RuntimeChoice:
        return self._choice

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.last_used = time.monotonic()
        return self.forward(torch.from_numpy(images)).numpy()

    def release_if_idle(self, idle_s: float) -> bool:
        """On a GPU, once no batch has come for ``idle_s`` since the last one, give the allocator's cache
        back (what the last burst's batches and cuDNN workspaces left reserved): an idle worker then holds
        its context and weights only, whatever load it saw. Runs on the model thread, between batches; the
        next batch allocates again, once."""
        idle = time.monotonic() - self.last_used
        if self.device.type != "cuda" or self.released_at >= self.last_used or idle < idle_s:
            return False
        self.gpu_memory = release_cached_memory(self.device, f"after {idle_s:g} s idle")
        self.released_at = time.monotonic()
        return True

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, 224, 224) on any device -> float32 (N, 1000) softmax probabilities, on the CPU."""
        batch = images.to(self.device, non_blocking=True)
        batch = normalize(batch, self.dtype).contiguous(memory_format=torch.channels_last)
        logits = self.model(batch)
        return torch.softmax(logits.float(), dim=1).cpu()

    def warm_up(self, max_batch_size: int) -> list[int]:
        """Run every batch size live traffic can produce, so no request pays for lazy init or cuDNN
        autotuning. On CPU, where there is no per-shape tuning, the extremes are enough."""
        on_gpu = self.device.type == "cuda"
        sizes = list(range(1, max_batch_size + 1)) if on_gpu else sorted({1, max_batch_size})
        for size in sizes:
            self.forward(torch.zeros((size, 3, CROP, CROP), dtype=torch.uint8))
        if on_gpu:
            self.gpu_memory = release_cached_memory(self.device)
        return sizes
