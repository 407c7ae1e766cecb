"""The model worker: ResNet18 behind BentoML's adaptive batching.

Both HTTP endpoints of :class:`service.http_service.ImageClassifier` call :meth:`ResNet18.infer`;
BentoML merges concurrent calls into one forward pass (``bentoml_service_adaptive_batch_size`` in
``/metrics`` shows the batch sizes). The worker takes uint8 crops, so decoding and resizing stay in
the API process and run in parallel with inference.
"""

from __future__ import annotations

import logging
import time

import bentoml
import numpy as np
import torch
from bentoml.exceptions import ServiceUnavailable

from .config import MODEL_NAME, ModelSettings
from .model import BatchClassifier, WeightsError, build_resnet18, choose_runtime, load_state_dict, log_cuda_versions
from .model_store import read_weights
from .schemas import ModelInfo, WorkerStatus

logger = logging.getLogger(f"bentoml.{__name__}")  # BentoML only shows its own loggers

SETTINGS = ModelSettings.from_env()
_ON_GPU = SETTINGS.device == "cuda" or (SETTINGS.device == "auto" and torch.cuda.is_available())
# The longest a request may wait for its batch before BentoML sheds it with 503. A full CPU batch of
# 32 takes ~0.5 s on 2 cores, a GPU batch of 64 a few ms: these bounds leave room for a queue of
# several batches, so load within capacity never sees a 503.
MAX_LATENCY_MS = SETTINGS.max_latency_ms or (1000 if _ON_GPU else 5000)

UNTRAINED_WARNING = "UNTRAINED WEIGHTS: predictions are random. Import real weights (README, 'The model')."


@bentoml.service(name="resnet18", workers=1, traffic={"timeout": 60})
class ResNet18:
    # The model `bentoml build` packs into the bento. Not declared when RESNET18_WEIGHTS overrides it,
    # because `bentoml serve` resolves every declared model before it starts any worker.
    stored_model = bentoml.models.BentoModel(MODEL_NAME) if SETTINGS.weights is None else None

    def __init__(self) -> None:
        log_cuda_versions()
        state, tag, weights = self._load()
        self.classifier: BatchClassifier | None = None
        self.not_ready_reason: str | None = None
        try:
            runtime = choose_runtime(SETTINGS.device, SETTINGS.precision)
        except RuntimeError as exc:
            # Stay up but never ready: the load balancer keeps traffic away and the reason is logged.
            self.not_ready_reason = str(exc)
            logger.error("model worker is not ready: %s", exc)
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
        self.classifier = BatchClassifier(build_resnet18(state), runtime)
        started = time.perf_counter()
        sizes = self.classifier.warm_up(SETTINGS.max_batch_size)
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

    def _load(self) -> tuple[dict[str, torch.Tensor] | None, str | None, str]:
        """(state dict or None for untrained, model-store tag, description). Raises WeightsError."""
        if SETTINGS.weights is not None:
            state, description = load_state_dict(SETTINGS.weights)
            return state, None, f"RESNET18_WEIGHTS={SETTINGS.weights}: {description}"
        # Never a silent fallback: a missing or unreadable store model fails start-up here.
        reference = type(self).stored_model
        assert reference is not None
        if reference.stored is None:
            raise WeightsError(
                f"no '{MODEL_NAME}' model in the BentoML model store ({reference.tag}) and RESNET18_WEIGHTS is "
                "not set: run `python -m service.import_model --weights imagenet|PATH` first"
            )
        stored = read_weights(reference.stored)
        return stored.state_dict, stored.tag, stored.description

    def __is_ready__(self) -> bool:
        return self.classifier is not None

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=SETTINGS.max_batch_size, max_latency_ms=MAX_LATENCY_MS)
    def infer(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, 3, 224, 224) crops -> float32 (N, 1000) probabilities.

        numpy, not torch, at this boundary: BentoML's batching concatenates and splits ndarrays
        natively, and pickle protocol 5 ships them between processes without copies."""
        if self.classifier is None:
            raise ServiceUnavailable(f"model worker not ready: {self.not_ready_reason}")
        return self.classifier(torch.from_numpy(images)).numpy()

    @bentoml.api
    def describe(self) -> WorkerStatus:
        return WorkerStatus(ready=self.__is_ready__(), not_ready_reason=self.not_ready_reason, model=self.info)
