"""The public HTTP API: ``POST /classify`` (many images) and ``POST /predict`` (one, Flask-compatible).

One BentoML service, one hop: each worker process parses and validates uploads, decodes them (in a
thread pool: PIL releases the GIL) and hands the uint8 crops to BentoML's adaptive batching in the
same process (:mod:`service.batching`), which merges them with other requests' crops into one forward
pass. Every client mistake gets a 4xx JSON error naming the image at fault.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import bentoml
import numpy as np
from starlette.responses import JSONResponse

from . import multipart, upstream
from .admission import AdmissionControl
from .auth import ApiKeyAuth, keys_from_env
from .batching import AdaptiveBatcher, Overloaded
from .config import INT8_MODEL_NAME, MODEL_NAME, InputLimits, env_int
from .errors import AnswerRejected, error_response
from .model.runtime import visible_gpus
from .model_service import MAX_LATENCY_MS, ON_GPU, RUNS_TORCH, SETTINGS, LoadedModel, in_store, require_torch
from .openapi import OpenAPIDocument
from .preprocessing import ImageError, preprocess
from .schemas import Prediction, predictions_from
from .workers import checked_workers, default_workers

if TYPE_CHECKING:  # torch is imported only where it runs: the CPU image has none (tests/test_no_torch.py)
    import torch

logger = logging.getLogger(f"bentoml.{__name__}")  # BentoML only shows its own loggers

LIMITS = InputLimits.from_env()
SERVICE_NAME = "image-classifier"
# How many API processes (service/workers.py): on a GPU, workers_per_gpu(vCPUs, GPUs) on each visible GPU
# (enough processes to keep its share of the cores decoding), each pinned to its GPU (model_service); on a
# CPU, one process whose torch threads use every core: a second copy of the model would only split the
# cores and the batches. RESNET18_API_WORKERS overrides, capped per GPU.
# Shedding by BentoML's batching at the target itself dropped 2 of 3 shed requests after decoding them:
# 76% goodput at 16x overload against 95% with admission alone at the target (docs/reliability.md).
BATCHING_SHED_FACTOR = 2
# On a GPU, a worker that has served no batch for this long gives its allocator's cache back, so that idle
# instances hold only their workers' contexts and weights, under the fleet's scale-in bound for GPU memory
# (docs/performance.md, "GPU memory at idle"; the scale-in alarm wants 15 quiet minutes anyway).
GPU_IDLE_RELEASE_S = env_int("RESNET18_GPU_IDLE_RELEASE_S", 60)
GPUS = visible_gpus() if ON_GPU and RUNS_TORCH else 0
API_WORKERS = checked_workers(env_int("RESNET18_API_WORKERS", default_workers(GPUS, os.cpu_count() or 1)), GPUS)


@bentoml.service(name=SERVICE_NAME, workers=API_WORKERS, traffic={"timeout": 60})
class ImageClassifier:
    # The model `bentoml build` packs into the bento. Not declared when RESNET18_WEIGHTS overrides it,
    # because `bentoml serve` resolves every declared model before it starts any worker.
    stored_model = bentoml.models.BentoModel(MODEL_NAME) if SETTINGS.weights is None else None
    # The INT8 model, declared (so packed by `bentoml build`) whenever the store has one; when
    # RESNET18_PRECISION=int8 finds none, start-up fails with the command that makes one.
    int8_model = bentoml.models.BentoModel(INT8_MODEL_NAME) if in_store(INT8_MODEL_NAME) else None

    def __init__(self) -> None:
        if RUNS_TORCH:
            require_torch("RESNET18_RUNTIME=torch")  # the CPU image has none: stop with the fix
            import torch

            # The worker processes share the cores: torch threads per process = cores / processes (on a
            # GPU, 1: the CPU only decodes there, and spare OpenMP threads would spin against decoding).
            torch.set_num_threads(1 if ON_GPU else max(1, (os.cpu_count() or 1) // API_WORKERS))
        # One thread runs every forward pass, and the warm-up before them: torch's OpenMP team belongs to
        # the thread that starts it, and forward passes hopping between pool threads (anyio's) kept
        # several teams spinning against each other (2 cores: 46 -> 72 images/s at batch 8).
        model_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")
        self.model = model_thread.submit(LoadedModel, type(self).stored_model, type(self).int8_model).result()
        self._batcher = AdaptiveBatcher(
            self.model.infer,
            model_thread,
            max_batch_size=SETTINGS.max_batch_size,
            # Admission sheds at the door, before a body is read or decoded; batching's own shedding
            # (of requests already decoded) is only the backstop for when the machine slows down at once.
            max_latency_ms=BATCHING_SHED_FACTOR * MAX_LATENCY_MS,
            service_name=SERVICE_NAME,
        )
        # Decoding is CPU-bound C code that releases the GIL: one thread per core decodes in parallel (per
        # core of this process's share, when several processes serve: 32 of them on a 96-vCPU p4d).
        decoders = -(-(os.cpu_count() or 1) // API_WORKERS)
        self._decoders = concurrent.futures.ThreadPoolExecutor(decoders, thread_name_prefix="decode")
        self._decode_device = _decode_device(SETTINGS.decode, self.model)
        if ON_GPU and RUNS_TORCH:
            threading.Thread(
                target=_release_when_idle, args=(model_thread, self.model), name="gpu-idle-release", daemon=True
            ).start()

    def __is_ready__(self) -> bool:
        return self.model.ready

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

    async def _classify(self, uploads: list[Path]) -> list[Prediction] | JSONResponse:
        datas = [multipart.read_upload(upload) for upload in uploads]  # in memory already
        loop = asyncio.get_running_loop()
        on_device: dict[int, np.ndarray] = {}
        if self._decode_device is not None:
            on_device = await loop.run_in_executor(self._decoders, _device_crops, datas, self._decode_device)
        try:
            crops = await asyncio.gather(
                *(self._decode(i, data) if i not in on_device else _ready(on_device[i]) for i, data in enumerate(datas))
            )
        except _BadImage as bad:
            return error_response(bad.error.status, f"image {bad.index}: {bad.error}", image=bad.index)
        if not self.model.ready:
            return error_response(503, f"the model is not ready: {self.model.not_ready_reason or 'starting'}")
        try:
            # The batcher splits and merges as needed: one call per request is enough.
            probabilities = await self._batcher(np.stack(crops))
        except Overloaded:
            bound_ms = BATCHING_SHED_FACTOR * MAX_LATENCY_MS
            logger.warning("adaptive batching shed a request (waited over %d ms for its batch)", bound_ms)
            return error_response(
                503, f"overloaded: the model could not take this request within {bound_ms} ms; retry shortly"
            )
        return predictions_from(probabilities, self.model.info)

    async def _decode(self, index: int, data: bytes) -> np.ndarray:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._decoders, _preprocess, data)
        except ImageError as exc:
            raise _BadImage(index, exc) from None


def _preprocess(data: bytes) -> np.ndarray:
    return preprocess(data, LIMITS.max_image_pixels)


def _device_crops(datas: list[bytes], device: torch.device) -> dict[int, np.ndarray]:
    """The crops of the request's JPEGs the device path takes, by index; {} when the device refuses
    the batch (then the CPU path decodes every image, and answers for the bad ones)."""
    from . import device_decode  # torch and torchvision: only with RESNET18_DECODE=device on a GPU

    indices = [i for i, data in enumerate(datas) if device_decode.takes_device_path(data, LIMITS.max_image_pixels)]
    if not indices:
        return {}
    try:
        crops = device_decode.decode_batch([datas[i] for i in indices], device).numpy()
    except RuntimeError as exc:
        logger.info("device JPEG decoding refused a batch (%s); decoding on the CPU", exc)
        return {}
    return dict(zip(indices, crops, strict=True))


def _release_when_idle(model_thread: concurrent.futures.Executor, model: LoadedModel) -> None:
    """Every half GPU_IDLE_RELEASE_S, asks the model thread to release the GPU cache if idle that long."""
    while True:
        time.sleep(GPU_IDLE_RELEASE_S / 2)
        release = getattr(model.classifier, "release_if_idle", None)
        if release is None:
            continue  # not ready (yet), or not torch on a GPU
        try:
            model_thread.submit(release, GPU_IDLE_RELEASE_S)
        except RuntimeError:  # the executor is shut down: the worker is stopping
            return


async def _ready(crop: np.ndarray) -> np.ndarray:
    return crop


def _decode_device(setting: str, model: LoadedModel) -> torch.device | None:
    """Where RESNET18_DECODE=device decodes JPEGs: the model's GPU; None (the CPU path) otherwise."""
    if setting != "device":
        return None
    classifier = model.classifier
    if classifier is None or classifier.choice.runtime != "torch" or classifier.choice.device != "cuda":
        logger.warning("RESNET18_DECODE=device needs the model on a GPU (torch runtime); decoding on the CPU")
        return None
    from .model.torch_runtime import TorchClassifier

    assert isinstance(classifier, TorchClassifier)
    from . import device_decode  # noqa: F401  (torchvision loaded now, not by the first request)

    logger.info("JPEGs are decoded on %s (nvJPEG); other images on the CPU", classifier.device)
    return classifier.device


class _BadImage(Exception):
    def __init__(self, index: int, error: ImageError) -> None:
        self.index, self.error = index, error


upstream.install(workers=API_WORKERS)
# bentoml.service turns the class into a bentoml.Service, which its type stubs do not say.
# Added first, so outermost (in front of BentoML's own too: service/middleware_order.py): a request
# without a valid key is refused from its headers alone, before admission counts it or anything reads
# its body (service/auth.py).
ImageClassifier.add_asgi_middleware(ApiKeyAuth, keys=keys_from_env())  # type: ignore[attr-defined]
ImageClassifier.add_asgi_middleware(  # type: ignore[attr-defined]
    AdmissionControl,
    max_body_bytes=LIMITS.max_request_bytes,
    max_latency_s=MAX_LATENCY_MS / 1000,
    # Always at least one full batch (the rate measured at low concurrency undersells batching), and
    # never more than a few batches per worker: beyond that, memory would grow for nothing.
    min_in_flight=SETTINGS.max_batch_size,
    max_in_flight=max(64, 8 * SETTINGS.max_batch_size),
)
ImageClassifier.add_asgi_middleware(OpenAPIDocument, service=ImageClassifier)  # type: ignore[attr-defined]
ImageClassifier.add_asgi_middleware(AnswerRejected)  # type: ignore[attr-defined]
