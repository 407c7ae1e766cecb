"""The raw model ceiling: ResNet18 forward passes on preprocessed uint8 crops, no HTTP, no decoding.

Three variants, same weights: ``service``, the service's own TorchClassifier (conv+BN folded, device
transfer, normalisation, channels_last, inference_mode, softmax), whose CPU per image is what the
forward pass costs inside the server; ``openvino``, the service's OpenVINOClassifier (uint8 in, the batch
split over its streams), the CPU runtime; and ``eager``, plain torchvision ResNet18 in eval mode with
channels_last, what a user would write in-process: the reference the served throughput is compared to.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from service.model.runtime import RuntimeChoice, cpu_supports_bf16
from service.model.torch_runtime import PRECISION_DTYPES, TorchClassifier
from service.model.weights import build_resnet18
from service.preprocessing import normalize

if TYPE_CHECKING:
    import openvino as ov

SERVICE, EAGER, OPENVINO = "service", "eager", "openvino"


@dataclass(frozen=True)
class RawResult:
    device: str
    precision: str
    batch_size: int
    images_per_s: float
    ms_per_batch: float
    cpu_ms_per_image: float  # CPU time of this process (all its threads) per image
    model: str = SERVICE

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def precisions_for(device: str) -> list[str]:
    if device == "cuda":
        return ["fp32", "fp16"]
    return ["fp32", "bf16"] if cpu_supports_bf16() else ["fp32"]


def openvino_precisions() -> list[str]:
    return ["fp32", "bf16", "int8"] if cpu_supports_bf16() else ["fp32", "int8"]


def eager(model: torch.nn.Module, device: str, precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Plain torchvision: float input normalised as the transforms do, the unfused model, softmax."""
    dtype = PRECISION_DTYPES[precision]
    plain = copy.deepcopy(model).eval().to(device=device, dtype=dtype)
    plain = plain.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward(images: torch.Tensor) -> torch.Tensor:
        batch = normalize(images.to(device), dtype).contiguous(memory_format=torch.channels_last)
        return torch.softmax(plain(batch).float(), dim=1).cpu()

    return forward


def measure(
    device: str,
    precision: str,
    batch_size: int,
    seconds: float = 3.0,
    model: torch.nn.Module | None = None,
    variant: str = SERVICE,
    openvino_model: ov.Model | None = None,
) -> RawResult:
    """``openvino_model``: the served OpenVINO model to run (the INT8 one for int8); default: ``model``
    exported."""
    model = model if model is not None else build_resnet18(None)
    forward: Callable[[torch.Tensor], object]
    if variant == EAGER:
        forward = eager(model, device, precision)
    elif variant == OPENVINO:  # imported here: a GPU machine (bench/gpu_check.sh) has no OpenVINO
        from service.model.openvino_runtime import OpenVINOClassifier, export

        compiled = OpenVINOClassifier(openvino_model or export(model), precision, cache_dir=None)
        forward = lambda images: compiled(images.numpy())  # noqa: E731
    else:
        forward = TorchClassifier(model, RuntimeChoice("torch", device, precision)).forward  # type: ignore[arg-type]
    batch = torch.randint(0, 256, (batch_size, 3, 224, 224), dtype=torch.uint8)
    for _ in range(3):  # warm-up: allocator, oneDNN/cuDNN kernel selection
        forward(batch)
    if device == "cuda":
        torch.cuda.synchronize()
    runs, started, cpu_started = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds or runs < 3:
        forward(batch)  # returns probabilities on the CPU: includes the copy back, as in serving
        runs += 1
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    images = runs * batch_size
    return RawResult(
        device, precision, batch_size, images / elapsed, 1000 * elapsed / runs, 1000 * cpu / images, variant
    )


def cpu_ms_per_image_at(results: list[RawResult], precision: str, batch_size: float, variant: str = SERVICE) -> float:
    """The forward pass's CPU per image at a (mean) batch size, interpolated between the measured
    batch sizes (clamped at the ends)."""
    points = sorted(
        (r.batch_size, r.cpu_ms_per_image) for r in results if r.precision == precision and r.model == variant
    )
    if not points:
        return float("nan")
    if batch_size <= points[0][0]:
        return points[0][1]
    for (b0, c0), (b1, c1) in itertools.pairwise(points):
        if batch_size <= b1:
            return c0 + (c1 - c0) * (batch_size - b0) / (b1 - b0)
    return points[-1][1]
