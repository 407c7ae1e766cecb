"""The raw model ceiling: ResNet18 forward passes on preprocessed uint8 crops, no HTTP, no decoding.

Uses the service's own BatchClassifier (device transfer, normalisation, channels_last, inference_mode,
softmax), so "service / raw" measures exactly what serving adds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from service.model import PRECISION_DTYPES, BatchClassifier, RuntimeChoice, build_resnet18


@dataclass(frozen=True)
class RawResult:
    device: str
    precision: str
    batch_size: int
    images_per_s: float
    ms_per_batch: float

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


def measure(
    device: str, precision: str, batch_size: int, seconds: float = 3.0, model: torch.nn.Module | None = None
) -> RawResult:
    classifier = BatchClassifier(
        model if model is not None else build_resnet18(None),
        RuntimeChoice(torch.device(device), PRECISION_DTYPES[precision]),
    )
    batch = torch.randint(0, 256, (batch_size, 3, 224, 224), dtype=torch.uint8)
    for _ in range(3):  # warm-up: allocator, oneDNN/cuDNN kernel selection
        classifier(batch)
    if device == "cuda":
        torch.cuda.synchronize()
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or runs < 3:
        classifier(batch)  # returns probabilities on the CPU: includes the copy back, as in serving
        runs += 1
    elapsed = time.perf_counter() - started
    return RawResult(device, precision, batch_size, runs * batch_size / elapsed, 1000 * elapsed / runs)
