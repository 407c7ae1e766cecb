"""The model as the service holds it: weights from the store (or RESNET18_WEIGHTS), device, warm-up, readiness.

:class:`service.http_service.ImageClassifier` owns one :class:`LoadedModel` per worker process and
feeds it through BentoML's adaptive batching (:mod:`service.batching`), in the same process as the
HTTP handlers: crops never cross a process boundary.
"""

from __future__ import annotations

import logging
import time

import bentoml
import numpy as np
import torch

from .config import MODEL_NAME, ModelSettings
from .model import BatchClassifier, WeightsError, build_resnet18, choose_runtime, load_state_dict, log_cuda_versions
from .model_store import read_weights
from .schemas import ModelInfo
from .timeouts import MAX_LATENCY_MS_CPU, MAX_LATENCY_MS_GPU

logger = logging.getLogger(f"bentoml.{__name__}")  # BentoML only shows its own loggers

SETTINGS = ModelSettings.from_env()
ON_GPU = SETTINGS.device == "cuda" or (SETTINGS.device == "auto" and torch.cuda.is_available())
# The latency target: admission (service.admission) sheds what could not be answered within it, and
# BentoML's batching sheds what still waits for its batch longer than it.
MAX_LATENCY_MS = SETTINGS.max_latency_ms or (MAX_LATENCY_MS_GPU if ON_GPU else MAX_LATENCY_MS_CPU)

UNTRAINED_WARNING = "UNTRAINED WEIGHTS: predictions are random. Import real weights (README, 'The model')."


class LoadedModel:
    """ResNet18 loaded and warmed up, or the reason it cannot run here (then it is never ready).

    ``reference`` is the service's declared model-store entry, None when RESNET18_WEIGHTS overrides it.
    Weights that cannot be had raise :class:`WeightsError`: start-up fails, never a silent fallback."""

    def __init__(self, reference: bentoml.models.BentoModel | None) -> None:
        log_cuda_versions()
        state, tag, weights = _weights(reference)
        self.classifier: BatchClassifier | None = None
        self.not_ready_reason: str | None = None
        try:
            runtime = choose_runtime(SETTINGS.device, SETTINGS.precision)
        except RuntimeError as exc:
            # Stay up but never ready: the load balancer keeps traffic away and the reason is logged.
            self.not_ready_reason = str(exc)
            logger.error("model is not ready: %s", exc)
            runtime = None
        self.info = ModelInfo(
            tag=tag,
            weights=weights,
            trained=state is not None,
            device=str(runtime.device) if runtime else "unavailable",
            precision=str(runtime.dtype).removeprefix("torch.") if runtime else "unavailable",
            warning=None if state is not None else UNTRAINED_WARNING,
        )
        if runtime is None:
            return
        classifier = BatchClassifier(build_resnet18(state), runtime)
        started = time.perf_counter()
        sizes = classifier.warm_up(SETTINGS.max_batch_size)
        self.classifier = classifier  # ready only now: no request pays for lazy initialisation
        logger.info(
            "resnet18 ready on %s/%s: weights %s; warmed batch sizes %s in %.1f s; torch threads %d; "
            "max batch %d, max latency %d ms",
            runtime.device,
            runtime.dtype,
            weights,
            sizes if len(sizes) < 8 else f"1..{max(sizes)}",
            time.perf_counter() - started,
            torch.get_num_threads(),
            SETTINGS.max_batch_size,
            MAX_LATENCY_MS,
        )
        if state is None:
            logger.warning("=" * 72 + "\n%s\n" + "=" * 72, UNTRAINED_WARNING)

    @property
    def ready(self) -> bool:
        return self.classifier is not None

    def infer(self, crops: np.ndarray) -> np.ndarray:
        """uint8 (N, 3, 224, 224) crops -> float32 (N, 1000) probabilities (the batch function)."""
        assert self.classifier is not None, "infer() before the model is ready"
        return self.classifier(torch.from_numpy(crops)).numpy()


def _weights(reference: bentoml.models.BentoModel | None) -> tuple[dict[str, torch.Tensor] | None, str | None, str]:
    """(state dict or None for untrained, model-store tag, description). Raises WeightsError."""
    if SETTINGS.weights is not None:
        state, description = load_state_dict(SETTINGS.weights)
        return state, None, f"RESNET18_WEIGHTS={SETTINGS.weights}: {description}"
    if reference is None or reference.stored is None:
        tag = reference.tag if reference is not None else MODEL_NAME
        raise WeightsError(
            f"no '{MODEL_NAME}' model in the BentoML model store ({tag}) and RESNET18_WEIGHTS is "
            "not set: run `python -m service.import_model --weights imagenet|PATH` first"
        )
    stored = read_weights(reference.stored)
    return stored.state_dict, stored.tag, stored.description
