"""The model as the service holds it: which runtime, weights from the store (or RESNET18_WEIGHTS),
warm-up, readiness.

:class:`service.http_service.ImageClassifier` owns one :class:`LoadedModel` per worker process and
feeds it through BentoML's adaptive batching (:mod:`service.batching`), in the same process as the
HTTP handlers: crops never cross a process boundary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import bentoml
import numpy as np

from .config import INT8_MODEL_NAME, MODEL_NAME, ModelSettings
from .model.runtime import (
    Classifier,
    RuntimeChoice,
    SettingsConflict,
    WeightsError,
    choose,
    cuda_available,
    visible_gpus,
)
from .model.store import read_openvino, read_weights
from .schemas import ModelInfo
from .timeouts import MAX_LATENCY_MS_CPU, MAX_LATENCY_MS_GPU
from .workers import device_index

if TYPE_CHECKING:
    import openvino as ov

logger = logging.getLogger(f"bentoml.{__name__}")  # BentoML only shows its own loggers

SETTINGS = ModelSettings.from_env()


def _cuda_available() -> bool:
    """Whether torch sees a GPU; not asked (torch not even imported) when RESNET18_DEVICE=cpu, where the
    answer changes nothing (service.model.runtime.choose)."""
    return SETTINGS.device != "cpu" and cuda_available()


def _choose() -> RuntimeChoice:
    return choose(SETTINGS.runtime, SETTINGS.device, SETTINGS.precision, cuda_available=_cuda_available())


def _expected() -> tuple[bool, bool]:
    """(on a GPU, runs torch), by the one rule (service.model.runtime.choose): they size the worker
    count, the latency target and torch's threads before the model loads."""
    try:
        choice = _choose()
    except SettingsConflict:
        return False, False  # start-up fails in LoadedModel, with the message
    except RuntimeError:
        return True, False  # CUDA asked for and unusable: a GPU instance that stays up, never ready
    return choice.device == "cuda", choice.runtime == "torch"


ON_GPU, RUNS_TORCH = _expected()
# The latency target: admission (service.admission) sheds what could not be answered within it, and
# BentoML's batching sheds what still waits for its batch longer than it.
MAX_LATENCY_MS = SETTINGS.max_latency_ms or (MAX_LATENCY_MS_GPU if ON_GPU else MAX_LATENCY_MS_CPU)

UNTRAINED_WARNING = "UNTRAINED WEIGHTS: predictions are random. Import real weights (README, 'The model')."


def worker_device(choice: RuntimeChoice) -> str:
    """Where this worker runs torch: ``cuda:N``, this worker's GPU (round-robin over the visible ones by
    BentoML's worker index, service.workers.device_index), or the choice's device off a GPU. BentoML sets
    no CUDA_VISIBLE_DEVICES per worker for this service (it declares no ``resources``): without this every
    worker would load the model on the first GPU."""
    if choice.device != "cuda":
        return choice.device
    gpus = visible_gpus()
    index = device_index(bentoml.server_context.worker_index, gpus)
    logger.info("worker %s drives cuda:%d, one of %d visible GPU(s)", bentoml.server_context.worker_index, index, gpus)
    return f"cuda:{index}"


def in_store(name: str) -> bool:
    """Whether the model store (a bento's own, inside a bento) has a version of ``name``."""
    try:
        bentoml.models.get(f"{name}:latest")
    except bentoml.exceptions.NotFound:
        return False
    return True


class LoadedModel:
    """ResNet18 loaded on its runtime and warmed up, or the reason it cannot run here (then it is never
    ready).

    ``reference`` is the service's declared ``resnet18`` entry (None when RESNET18_WEIGHTS overrides it),
    ``int8_reference`` its ``resnet18-int8`` entry (None when the store has none). Weights that cannot be
    had raise :class:`WeightsError`, settings that cannot run together :class:`SettingsConflict`:
    start-up fails, never a silent fallback."""

    def __init__(
        self, reference: bentoml.models.BentoModel | None, int8_reference: bentoml.models.BentoModel | None = None
    ) -> None:
        if RUNS_TORCH or ON_GPU:
            try:
                from .model.torch_runtime import log_cuda_versions
            except ImportError:  # the CPU image, told RESNET18_DEVICE=cuda: never ready, with the reason below
                logger.error("torch is not installed here (the CPU image?): no CUDA")
            else:
                log_cuda_versions()
        self.classifier: Classifier | None = None
        self.not_ready_reason: str | None = None
        try:
            choice = _choose()
        except RuntimeError as exc:  # a SettingsConflict (ValueError) is not caught: start-up fails
            # Stay up but never ready: the load balancer keeps traffic away and the reason is logged.
            self.not_ready_reason = str(exc)
            logger.error("model is not ready: %s", exc)
            choice = None
        source = _Source.resolve(choice, reference, int8_reference)
        self.info = ModelInfo(
            tag=source.tag,
            weights=source.description,
            trained=source.trained,
            runtime=choice.runtime if choice else "unavailable",
            device=choice.device if choice else "unavailable",
            precision=choice.precision if choice else "unavailable",
            warning=None if source.trained else UNTRAINED_WARNING,
        )
        if choice is None:
            return
        started = time.perf_counter()
        classifier = source.classifier(choice)
        sizes = classifier.warm_up(SETTINGS.max_batch_size)
        self.classifier = classifier  # ready only now: no request pays for lazy initialisation
        logger.info(
            "resnet18 ready on %s (%s, %s): weights %s; compiled and warmed batch sizes %s in %.1f s; "
            "max batch %d, max latency %d ms",
            choice.runtime,
            choice.device,
            choice.precision,
            source.description,
            sizes if len(sizes) < 8 else f"1..{max(sizes)}",
            time.perf_counter() - started,
            SETTINGS.max_batch_size,
            MAX_LATENCY_MS,
        )
        if not source.trained:
            logger.warning("=" * 72 + "\n%s\n" + "=" * 72, UNTRAINED_WARNING)

    @property
    def ready(self) -> bool:
        return self.classifier is not None

    def infer(self, crops: np.ndarray) -> np.ndarray:
        """uint8 (N, 3, 224, 224) crops -> float32 (N, 1000) probabilities (the batch function)."""
        assert self.classifier is not None, "infer() before the model is ready"
        return self.classifier(crops)


@dataclass(frozen=True)
class _Source:
    """Where the model comes from for a runtime choice, and how that runtime is built from it."""

    tag: str | None
    description: str
    trained: bool
    classifier: Callable[[RuntimeChoice], Classifier]

    @classmethod
    def resolve(
        cls,
        choice: RuntimeChoice | None,
        reference: bentoml.models.BentoModel | None,
        int8_reference: bentoml.models.BentoModel | None,
    ) -> _Source:
        """Raises WeightsError for what cannot be had. Reads only what ``choice`` runs."""
        if SETTINGS.precision == "int8":
            if SETTINGS.weights is not None:
                raise SettingsConflict(
                    "RESNET18_PRECISION=int8 serves the store's resnet18-int8 model; unset RESNET18_WEIGHTS"
                )
            if int8_reference is None or int8_reference.stored is None:
                raise WeightsError(
                    f"RESNET18_PRECISION=int8 but the BentoML model store has no '{INT8_MODEL_NAME}' model: make "
                    "one from your own photos with `python -m service.import_model --quantize int8 --calibration "
                    "DIR` (README, 'INT8'), or choose another RESNET18_PRECISION"
                )
            stored = int8_reference.stored
            description = str(stored.info.metadata.get("weights", "unknown"))
            return cls(str(stored.tag), description, True, _openvino_from(read_openvino(stored)))
        if SETTINGS.weights is not None:  # development: torch reads the state dict, whatever runs it
            require_torch("RESNET18_WEIGHTS")
            from .model.torch_runtime import TorchClassifier
            from .model.weights import build_resnet18, load_state_dict

            state, description = load_state_dict(SETTINGS.weights)
            description = f"RESNET18_WEIGHTS={SETTINGS.weights}: {description}"

            def build(c: RuntimeChoice) -> Classifier:
                model = build_resnet18(state)
                if c.runtime == "openvino":  # converted here: RESNET18_WEIGHTS is for development
                    from .model.openvino_runtime import export

                    return _openvino_from(export(model))(c)
                return TorchClassifier(model, c, worker_device(c))

            return cls(None, description, state is not None, build)
        if reference is None or reference.stored is None:
            tag = reference.tag if reference is not None else MODEL_NAME
            raise WeightsError(
                f"no '{MODEL_NAME}' model in the BentoML model store ({tag}) and RESNET18_WEIGHTS is "
                "not set: run `python -m service.import_model --weights imagenet|PATH` first"
            )
        entry = reference.stored
        trained = entry.info.labels.get("trained") != "no"
        description = str(entry.info.metadata.get("weights", "unknown"))
        if choice is None:  # never ready (CUDA asked for and unusable): nothing to read or build
            return cls(str(entry.tag), description, trained, _unavailable)
        if choice.runtime == "openvino":
            return cls(str(entry.tag), description, trained, _openvino_from(read_openvino(entry)))
        return cls(str(entry.tag), description, trained, _torch_from(entry))


def _unavailable(choice: RuntimeChoice) -> Classifier:
    raise AssertionError("no runtime is built without a runtime choice")


def require_torch(what: str) -> None:
    """torch loads only where it runs, and the CPU image carries none: asking it for torch stops start-up
    with the fix, not an ImportError traceback (tests/test_no_torch.py)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SettingsConflict(
            f"{what} needs torch, which this image does not carry (the CPU image: bentofile.cpu.yaml); "
            "unset RESNET18_RUNTIME and RESNET18_WEIGHTS to serve the stored model with OpenVINO"
        ) from None


def _torch_from(entry: bentoml.Model) -> Callable[[RuntimeChoice], Classifier]:
    require_torch("RESNET18_RUNTIME=torch")
    from .model.torch_runtime import TorchClassifier
    from .model.weights import build_resnet18

    stored = read_weights(entry)

    def build(choice: RuntimeChoice) -> Classifier:
        return TorchClassifier(build_resnet18(stored.state_dict), choice, worker_device(choice))

    return build


def _openvino_from(served: ov.Model) -> Callable[[RuntimeChoice], Classifier]:
    def build(choice: RuntimeChoice) -> Classifier:
        from .model.openvino_runtime import OpenVINOClassifier  # OpenVINO loads only where it runs

        return OpenVINOClassifier(served, choice.precision)

    return build
