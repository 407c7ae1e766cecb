"""The OpenVINO runtime: the CPU default (bf16 or fp32) and the only one that runs INT8.

The model is converted once, at import (:mod:`.store`), into the form served: uint8 NCHW crops in (the
ImageNet normalisation folded in with OpenVINO's PrePostProcessor, so the server sends the same uint8
crops as to torch), softmax probabilities out, any batch size. At start-up it is only read and compiled
with the THROUGHPUT hint; one batch is split over the compiled model's streams and run through an
AsyncInferQueue, so every core works on every batch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import openvino as ov

from ..preprocessing import CROP, IMAGENET_MEAN, IMAGENET_STD
from .runtime import RuntimeChoice

if TYPE_CHECKING:  # torch converts the model at import (service.model.store); serving needs none
    import torch

IR_FILE = "resnet18.xml"  # with resnet18.bin beside it, inside a model-store entry's openvino/ folder
# What OpenVINO computes the layers it does not run in INT8 in. Pinned: on a CPU with bf16 OpenVINO
# would otherwise choose bf16 by itself, and the answer would not say what ran.
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
# Compiled blobs (in the container: /tmp, a tmpfs). Small for ResNet18: compiling INT8 took 0.09 s here,
# 0.03 s from the cache; the warm-up over every batch size (1.3 s) is what a worker's start pays.
CACHE_DIR = Path(tempfile.gettempdir()) / "resnet18-openvino-cache"


def export(model: torch.nn.Module) -> ov.Model:
    """torchvision ResNet18 -> the OpenVINO model as served: uint8 crops in, probabilities out."""
    import torch

    with_softmax = torch.nn.Sequential(model.eval(), torch.nn.Softmax(dim=1)).eval()
    converted = ov.convert_model(with_softmax, example_input=torch.zeros(1, 3, CROP, CROP), input=[(-1, 3, CROP, CROP)])
    return with_uint8_input(converted)


def with_uint8_input(model: ov.Model) -> ov.Model:
    """Fold the ImageNet normalisation (service.preprocessing's, on 0-255 values) into the model's input."""
    ppp = ov.preprocess.PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NCHW"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).mean([255 * m for m in IMAGENET_MEAN]).scale(
        [255 * s for s in IMAGENET_STD]
    )
    return ppp.build()


def save(model: ov.Model, folder: Path) -> Path:
    """Write the IR uncompressed (OpenVINO's default would store fp32 weights as fp16)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / IR_FILE
    ov.save_model(model, path, compress_to_fp16=False)
    return path


def read(folder: Path) -> ov.Model:
    return ov.Core().read_model(folder / IR_FILE)


class OpenVINOClassifier:
    """A compiled OpenVINO ResNet18 (a :class:`~.runtime.Classifier`). One caller at a time: the
    service's model thread."""

    def __init__(self, model: ov.Model, precision: str, cache_dir: Path | None = CACHE_DIR) -> None:
        core = ov.Core()
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "THROUGHPUT",
            "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision],
        }
        if cache_dir is not None:
            config["CACHE_DIR"] = str(cache_dir)
        self.compiled = core.compile_model(model, "CPU", config)
        ran = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        if _short_type(ran) != INFERENCE_PRECISION[precision]:
            raise RuntimeError(f"OpenVINO was asked for {precision} but compiled the model in {ran}")
        self._choice = RuntimeChoice("openvino", "cpu", precision)  # type: ignore[arg-type]
        self.streams = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._queue = ov.AsyncInferQueue(self.compiled, self.streams)
        self._outputs: list[np.ndarray] = [np.empty(0, np.float32)] * self.streams
        self._queue.set_callback(self._done)

    @property
    def choice(self) -> RuntimeChoice:
        return self._choice

    def _done(self, request: ov.InferRequest, index: int) -> None:
        # Copy: the request's output buffer is reused by its next inference.
        self._outputs[index] = request.get_output_tensor(0).data.copy()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, 3, 224, 224) -> float32 (N, 1000): one slice of the batch per stream, in parallel."""
        chunks = np.array_split(images, min(self.streams, len(images)))
        for index, chunk in enumerate(chunks):
            self._queue.start_async({0: np.ascontiguousarray(chunk)}, index)
        self._queue.wait_all()
        return np.concatenate(self._outputs[: len(chunks)])

    def warm_up(self, max_batch_size: int) -> list[int]:
        """Every batch size: the CPU plugin prepares kernels per input shape on first sight."""
        sizes = list(range(1, max_batch_size + 1))
        for size in sizes:
            self(np.zeros((size, 3, CROP, CROP), dtype=np.uint8))
        return sizes


def _short_type(name: str) -> str:
    """'float32' / 'bfloat16' / 'f32' / '<Type: 'bfloat16'>' -> 'f32' / 'bf16'."""
    lowered = name.lower()
    if "bf16" in lowered or "bfloat16" in lowered:
        return "bf16"
    if "f32" in lowered or "float32" in lowered:
        return "f32"
    return lowered
