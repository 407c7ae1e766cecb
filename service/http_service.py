"""The public HTTP API: ``POST /classify`` (many images) and ``POST /predict`` (one, Flask-compatible).

This process validates and decodes uploads (in a thread pool: PIL releases the GIL) and sends uint8
crops to the :class:`service.model_service.ResNet18` worker, whose adaptive batching merges them
with other requests' crops. Every client mistake gets a 4xx JSON error naming the image at fault.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import aiohttp
import anyio
import bentoml
import numpy as np
import torch
from bentoml.exceptions import BentoMLException
from starlette.responses import JSONResponse

from . import multipart
from .admission import AdmissionControl
from .config import InputLimits, env_int
from .errors import error_response
from .model_service import MAX_LATENCY_MS, SETTINGS, ResNet18
from .preprocessing import ImageError, preprocess
from .schemas import ModelInfo, Prediction, WorkerStatus, predictions_from

logger = logging.getLogger(f"bentoml.{__name__}")  # BentoML only shows its own loggers

LIMITS = InputLimits.from_env()
INFER_ATTEMPTS = 3
API_WORKERS = env_int("RESNET18_API_WORKERS", 1)


@bentoml.service(name="image-classifier", workers=API_WORKERS, traffic={"timeout": 60})
class ImageClassifier:
    model = bentoml.depends(ResNet18)

    def __init__(self) -> None:
        # This process does no tensor math worth threads, and idle OpenMP threads spin for a while after
        # every parallel op: with more than one they take CPU from the model worker on the same machine.
        torch.set_num_threads(1)
        # Decoding is CPU-bound C code that releases the GIL: one thread per core decodes in parallel.
        self._decoders = anyio.CapacityLimiter(os.cpu_count() or 1)
        self._model_info: ModelInfo | None = None

    @bentoml.api(route="/classify")
    async def classify(self, images: list[Path]) -> list[Prediction]:
        """Classify one or more images (multipart field ``images``, repeated); answers in request order."""
        if not images:
            return error_response(400, "no image: send one or more files in the multipart field 'images'")  # type: ignore[return-value]
        if len(images) > LIMITS.max_images_per_request:
            return error_response(  # type: ignore[return-value]
                413,
                f"{len(images)} images in one request; the limit is {LIMITS.max_images_per_request} "
                "(RESNET18_MAX_IMAGES_PER_REQUEST)",
            )
        return await self._classify(images)  # type: ignore[return-value]

    @bentoml.api(route="/predict")
    async def predict(self, image: Path) -> Prediction:
        """Classify one image (multipart field ``image``), as the classic Flask example does."""
        answer = await self._classify([image])
        return answer if isinstance(answer, JSONResponse) else answer[0]  # type: ignore[return-value]

    async def _classify(self, paths: list[Path]) -> list[Prediction] | JSONResponse:
        try:
            crops = await asyncio.gather(*(self._decode(i, path) for i, path in enumerate(paths)))
        except _BadImage as bad:
            return error_response(bad.error.status, f"image {bad.index}: {bad.error}", image=bad.index)
        try:
            info = await self._model_info_if_ready()
            if isinstance(info, str):
                return error_response(503, f"the model is not ready: {info}")
            # The worker's batching splits and merges as needed: one call per request is enough.
            probabilities = await self._infer(torch.stack(crops).numpy())
        except BentoMLException as exc:
            if exc.error_code.value in (429, 503):
                logger.warning("model worker shed a request: %s", exc)
                return error_response(
                    503,
                    "overloaded: the model could not take this request within its latency bound "
                    f"({MAX_LATENCY_MS} ms); retry shortly",
                )
            raise
        return predictions_from(torch.from_numpy(probabilities.copy()), info)

    async def _infer(self, crops: np.ndarray) -> np.ndarray:
        """One batched inference call, retried on a dropped connection.

        BentoML 1.4's client to a dependency replaces its HTTP session every 100 requests by closing
        the old one, which aborts the requests still in flight on it ("Server disconnected"). Inference
        is idempotent, so such a call is simply sent again on the new session."""
        for attempt in range(INFER_ATTEMPTS):
            try:
                result: np.ndarray = await self.model.to_async.infer(crops)
                return result
            except aiohttp.ClientConnectionError:
                if attempt == INFER_ATTEMPTS - 1:
                    raise
                logger.info("connection to the model worker dropped; retrying (attempt %d)", attempt + 2)
        raise AssertionError("unreachable")

    async def _decode(self, index: int, path: Path) -> torch.Tensor:
        try:
            return await anyio.to_thread.run_sync(_read_and_preprocess, path, limiter=self._decoders)
        except ImageError as exc:
            raise _BadImage(index, exc) from None

    async def _model_info_if_ready(self) -> ModelInfo | str:
        """The worker's model description once it is ready (then cached), else why it is not."""
        if self._model_info is None:
            status = WorkerStatus.model_validate(await self.model.to_async.describe())
            if not status.ready:
                return status.not_ready_reason or "starting"
            self._model_info = status.model
        return self._model_info


def _read_and_preprocess(path: Path) -> torch.Tensor:
    return preprocess(path.read_bytes(), LIMITS.max_image_pixels)


class _BadImage(Exception):
    def __init__(self, index: int, error: ImageError) -> None:
        self.index, self.error = index, error


multipart.install()
# bentoml.service turns the class into a bentoml.Service, which its type stubs do not say.
ImageClassifier.add_asgi_middleware(  # type: ignore[attr-defined]
    AdmissionControl,
    max_body_bytes=LIMITS.max_request_bytes,
    # Enough to keep a few full batches queued per worker; beyond it, memory would grow for nothing.
    max_in_flight=max(64, 8 * SETTINGS.max_batch_size),
)
