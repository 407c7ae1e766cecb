"""The raw model ceiling: ResNet18 forward passes on preprocessed uint8 crops, no HTTP, no decoding.

Two variants, same weights: ``service``, the service's own BatchClassifier (conv+BN folded, device
transfer, normalisation, channels_last, inference_mode, softmax), whose CPU per image is what the
forward pass costs inside the server; and ``eager``, plain torchvision ResNet18 in eval mode with
channels_last, what a user would write in-process: the reference the served throughput is compared to.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from service.model import PRECISION_DTYPES, BatchClassifier, RuntimeChoice, build_resnet18
from service.preprocessing import normalize

SERVICE, EAGER = "service", "eager"


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


def cpu_supports_bf16() -> bool:
    """bf16 pays on CPUs with native bf16 math (AVX512-BF16 or AMX); elsewhere it is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precisions_for(device: str) -> list[str]:
    if device == "cuda":
        return ["fp32", "fp16"]
    return ["fp32", "bf16"] if cpu_supports_bf16() else ["fp32"]


def eager(model: torch.nn.Module, device: str, precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Plain torchvision: float input normalised as the transforms do, the unfused model, softmax."""
    runtime = RuntimeChoice(torch.device(device), PRECISION_DTYPES[precision])
    plain = copy.deepcopy(model).eval().to(device=runtime.device, dtype=runtime.dtype)
    plain = plain.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward(images: torch.Tensor) -> torch.Tensor:
        batch = normalize(images.to(runtime.device), runtime.dtype).contiguous(memory_format=torch.channels_last)
        return torch.softmax(plain(batch).float(), dim=1).cpu()

    return forward


def measure(
    device: str,
    precision: str,
    batch_size: int,
    seconds: float = 3.0,
    model: torch.nn.Module | None = None,
    variant: str = SERVICE,
) -> RawResult:
    model = model if model is not None else build_resnet18(None)
    if variant == EAGER:
        forward = eager(model, device, precision)
    else:
        forward = BatchClassifier(model, RuntimeChoice(torch.device(device), PRECISION_DTYPES[precision]))
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
