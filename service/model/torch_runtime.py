"""The torch runtime: ResNet18 with batch norms folded, on a GPU (fp16 by default) or a CPU."""

from __future__ import annotations

import logging

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


class TorchClassifier:
    """ResNet18 on one device and precision (a :class:`~.runtime.Classifier`)."""

    def __init__(self, model: torch.nn.Module, choice: RuntimeChoice) -> None:
        self._choice = choice
        self.device = torch.device(choice.device)
        self.dtype = PRECISION_DTYPES[choice.precision]
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # autotuned during warm_up, not on live traffic
        # Fold each batch norm into the convolution before it (exact in eval mode up to float rounding:
        # ~2e-6 on fp32 logits): +20% images/s in fp32 on CPU, +7% in bf16 (docs/performance.md).
        fused = fuse(model.eval())
        self.model = fused.to(device=self.device, dtype=self.dtype).to(memory_format=torch.channels_last)

    @property
    def choice(self) -> RuntimeChoice:
        return self._choice

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.forward(torch.from_numpy(images)).numpy()

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
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return sizes
