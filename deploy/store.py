"""The BentoML model store the bento packs (``BENTOML_HOME``): which weights, trained or not."""

from __future__ import annotations

from dataclasses import dataclass

from service.config import INT8_MODEL_NAME, MODEL_NAME


@dataclass(frozen=True)
class StoredModel:
    tag: str
    trained: bool  # service/model/store.py labels an import trained=no when it holds no weights
    weights: str  # where the weights came from, as recorded at import


def stored_model(name: str = MODEL_NAME) -> StoredModel | None:
    """``name:latest`` in the store, or None."""
    import bentoml  # slow: only when asked

    try:
        model = bentoml.models.get(f"{name}:latest")
    except bentoml.exceptions.NotFound:
        return None
    return StoredModel(
        tag=str(model.tag),
        trained=model.info.labels.get("trained") != "no",
        weights=str(model.info.metadata.get("weights", "unknown")),
    )


def packed_model_tags() -> list[str]:
    """The models `bentoml build` packs (service/http_service.py: resnet18, and resnet18-int8 if stored)."""
    return [model.tag for name in (MODEL_NAME, INT8_MODEL_NAME) if (model := stored_model(name)) is not None]
