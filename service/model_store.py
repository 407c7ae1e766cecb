"""ResNet18 weights in the BentoML model store: what ``bentoml build`` packs into the bento, so a
container never downloads at boot. ``python -m service.import_model`` writes; the service reads."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import bentoml
import torch

from .config import MODEL_NAME
from .model import STATE_DICT_FILE, WeightsError, load_state_dict

logger = logging.getLogger(f"bentoml.{__name__}")  # BentoML only shows its own loggers


@dataclass(frozen=True)
class StoredWeights:
    tag: str
    description: str  # where the weights came from, as recorded at import
    state_dict: dict[str, torch.Tensor] | None  # None: imported as untrained


def import_weights(source: str, if_missing: bool = False, or_untrained: bool = False) -> str:
    """Load ``source`` (imagenet | untrained | PATH) and save it as a new ``resnet18`` model version.

    Returns the tag. With ``if_missing``, an existing ``resnet18`` model is kept and its tag returned.
    With ``or_untrained``, weights that cannot be loaded are replaced by untrained ones, loudly: the
    fallback of `make serve` on a machine without internet.
    """
    if if_missing:
        try:
            existing = bentoml.models.get(f"{MODEL_NAME}:latest")
        except bentoml.exceptions.NotFound:
            pass
        else:
            logger.info("model %s is already in the store; keeping it", existing.tag)
            return str(existing.tag)
    try:
        state_dict, description = load_state_dict(source, progress=True)
    except WeightsError as exc:
        if not or_untrained:
            raise
        logger.warning(
            "=" * 72 + "\nWARNING: %s\nImporting UNTRAINED weights instead: predictions will be random.\n" + "=" * 72,
            exc,
        )
        state_dict, description = None, f"untrained (fallback: {source} could not be loaded)"
    with bentoml.models.create(
        MODEL_NAME,
        labels={"architecture": "resnet18", "trained": "no" if state_dict is None else "yes"},
        metadata={"weights": description, "source": source, "torch": str(torch.__version__)},
    ) as model:
        if state_dict is not None:
            torch.save(state_dict, model.path_of(STATE_DICT_FILE))
    return str(model.tag)


def read_weights(model: bentoml.Model) -> StoredWeights:
    """Read a store entry written by :func:`import_weights`."""
    description = str(model.info.metadata.get("weights", "unknown"))
    path = model.path_of(STATE_DICT_FILE)
    state_dict: dict[str, torch.Tensor] | None = None
    if model.info.labels.get("trained") != "no":
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"model {model.tag} has no readable {STATE_DICT_FILE}: {exc}") from exc
    return StoredWeights(tag=str(model.tag), description=description, state_dict=state_dict)
