"""ResNet18's weights: where they come from and how a state dict becomes torchvision's model.

Weights sources (the ``RESNET18_WEIGHTS`` / ``--weights`` contract):
- ``imagenet``: torchvision's ``ResNet18_Weights.IMAGENET1K_V1`` (downloaded with a progress bar,
  hash-checked, cached by torch.hub);
- ``untrained``: random initialisation, an explicit choice for smoke tests;
- a path: a torchvision-format state dict saved with ``torch.save(model.state_dict(), path)``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torchvision.models import ResNet, ResNet18_Weights, resnet18

from .labels import NUM_CLASSES
from .runtime import WeightsError

__all__ = ["IMAGENET_WEIGHTS", "STATE_DICT_FILE", "WeightsError", "build_resnet18", "load_state_dict", "sha256_of"]

IMAGENET_WEIGHTS = ResNet18_Weights.IMAGENET1K_V1
STATE_DICT_FILE = "resnet18.pth"  # file name inside a BentoML model-store entry


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
