"""The JSON answers of the API (pydantic models, so they also document themselves in OpenAPI)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from .model.labels import LABELS

TOP_K = 5


class ModelInfo(BaseModel):
    """Which model served the answer. Present in every answer."""

    name: str = "resnet18"
    tag: str | None = Field(description="BentoML model-store tag; null when weights came from RESNET18_WEIGHTS")
    weights: str = Field(description="where the weights came from")
    trained: bool
    runtime: str = Field(description="what runs the model: torch or openvino")
    device: str = Field(description="cpu or cuda")
    precision: str = Field(description="what the runtime computes in: fp32, bf16, fp16 or int8")
    warning: str | None = None


class WorkerStatus(BaseModel):
    """What the model worker reports about itself to the API process."""

    ready: bool
    not_ready_reason: str | None = None
    model: ModelInfo


class ClassScore(BaseModel):
    class_id: int = Field(description="ImageNet-1k class index, 0-999")
    label: str
    score: float = Field(description="softmax probability")


class Prediction(ClassScore):
    top_k: list[ClassScore] = Field(description=f"the {TOP_K} most probable classes, best first")
    model: ModelInfo


def predictions_from(probabilities: np.ndarray, model: ModelInfo) -> list[Prediction]:
    """(N, 1000) probabilities -> one Prediction per row, in order.

    numpy, not torch: this runs on the event loop's thread, where a torch operator could start an
    OpenMP team competing with the forward pass's."""
    indices = np.argsort(-probabilities, axis=1, kind="stable")[:, :TOP_K]
    scores = np.take_along_axis(probabilities, indices, axis=1)
    answers = []
    for row_scores, row_indices in zip(scores.tolist(), indices.tolist(), strict=True):
        top = [ClassScore(class_id=i, label=LABELS[i], score=s) for s, i in zip(row_scores, row_indices, strict=True)]
        answers.append(Prediction(**top[0].model_dump(), top_k=top, model=model))
    return answers
