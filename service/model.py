"""ResNet18: where its weights come from, and the batched forward pass on the chosen device.

Weights sources (the ``RESNET18_WEIGHTS`` / ``--weights`` contract):
- ``imagenet``: torchvision's ``ResNet18_Weights.IMAGENET1K_V1`` (downloaded with a progress bar,
  hash-checked, cached by torch.hub);
- ``untrained``: random initialisation, an explicit choice for smoke tests;
- a path: a torchvision-format state dict saved with ``torch.save(model.state_dict(), path)``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.fx.experimental.optimization import fuse
from torchvision.models import ResNet, ResNet18_Weights, resnet18

from .preprocessing import CROP, normalize

logger = logging.getLogger(f"bentoml.{__name__}")  # BentoML only shows its own loggers

IMAGENET_WEIGHTS = ResNet18_Weights.IMAGENET1K_V1
# Class names ship inside torchvision's weights metadata, so labels need no download.
LABELS: list[str] = list(IMAGENET_WEIGHTS.meta["categories"])
NUM_CLASSES = len(LABELS)
STATE_DICT_FILE = "resnet18.pth"
PRECISION_DTYPES = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}  # file name inside a BentoML model-store entry


class WeightsError(RuntimeError):
    """Weights that cannot be loaded: start-up must fail with this message, never fall back."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_state_dict(source: str, progress: bool = True) -> tuple[dict[str, torch.Tensor] | None, str]:
    """Resolve a weights source to ``(state_dict, description)``; ``None`` means untrained.

    The description says where the weights came from and is shown in every answer.
    """
    if source == "untrained":
        return None, "untrained (random initialisation)"
    if source == "imagenet":
        try:
            state = IMAGENET_WEIGHTS.get_state_dict(progress=progress, check_hash=True)
        except Exception as exc:
            raise WeightsError(
                f"could not download torchvision's ImageNet weights from {IMAGENET_WEIGHTS.url} ({exc}); "
                "without internet, import a local state dict with "
                "`python -m service.import_model --weights PATH`"
            ) from exc
        return state, f"torchvision {IMAGENET_WEIGHTS} ({IMAGENET_WEIGHTS.url})"
    path = Path(source).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist (expected imagenet, untrained or a .pth path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"weights file {path} is not a readable torch state dict: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint that wraps the state dict
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    build_resnet18(state)  # refuse, at import time, a state dict of another architecture
    return state, f"file {path.name} (sha256 {sha256_of(path)[:16]})"


def build_resnet18(state_dict: dict[str, torch.Tensor] | None) -> ResNet:
    """torchvision's ResNet18 in eval mode, with ``state_dict`` loaded strictly (shape errors are clear)."""
    model = resnet18(weights=None, num_classes=NUM_CLASSES)
    if state_dict is not None:
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"the state dict does not fit torchvision's resnet18: {exc}") from exc
    return model.eval()


@dataclass(frozen=True)
class RuntimeChoice:
    device: torch.device
    dtype: torch.dtype


def choose_runtime(device: str, precision: str) -> RuntimeChoice:
    """Resolve ``auto`` settings. Raises RuntimeError when CUDA is asked for and unusable."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "RESNET18_DEVICE=cuda but CUDA is unusable here "
            f"(torch {torch.__version__} built for CUDA {torch.version.cuda}; "
            "check `nvidia-smi`, the driver version and `docker run --gpus all`)"
        )
    resolved = device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if precision == "auto":
        # fp16 on GPUs (tensor cores); fp32 on CPUs, where it is exact (bf16 is opt-in, see README).
        precision = "fp16" if resolved == "cuda" else "fp32"
    dtype = PRECISION_DTYPES[precision]
    if resolved == "cpu" and dtype == torch.float16:
        raise RuntimeError("RESNET18_PRECISION=fp16 needs a GPU; use fp32 or bf16 on CPU")
    return RuntimeChoice(torch.device(resolved), dtype)


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


class BatchClassifier:
    """ResNet18 on one device and precision; ``__call__`` maps uint8 NCHW batches to probabilities."""

    def __init__(self, model: torch.nn.Module, runtime: RuntimeChoice) -> None:
        self.runtime = runtime
        if runtime.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # autotuned during warm_up, not on live traffic
        # Fold each batch norm into the convolution before it (exact in eval mode up to float rounding:
        # ~2e-6 on fp32 logits): +20% images/s in fp32 on CPU, +7% in bf16 (docs/performance.md).
        fused = fuse(model.eval())
        self.model = fused.to(device=runtime.device, dtype=runtime.dtype).to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, 224, 224) -> float32 (N, 1000) softmax probabilities, on the CPU."""
        batch = images.to(self.runtime.device, non_blocking=True)
        batch = normalize(batch, self.runtime.dtype).contiguous(memory_format=torch.channels_last)
        logits = self.model(batch)
        return torch.softmax(logits.float(), dim=1).cpu()

    def warm_up(self, max_batch_size: int) -> list[int]:
        """Run every batch size live traffic can produce, so no request pays for lazy init or cuDNN
        autotuning. On CPU, where there is no per-shape tuning, the extremes are enough."""
        if self.runtime.device.type == "cuda":
            sizes = list(range(1, max_batch_size + 1))
        else:
            sizes = sorted({1, max_batch_size})
        for size in sizes:
            self(torch.zeros((size, 3, CROP, CROP), dtype=torch.uint8))
        if self.runtime.device.type == "cuda":
            torch.cuda.synchronize()
        return sizes
