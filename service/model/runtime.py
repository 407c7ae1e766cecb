"""Which runtime runs ResNet18, on which device and in which precision, and the one interface both
runtimes implement: uint8 crops in, probabilities out.

The adaptive batcher and its model thread see only :class:`Classifier`; :mod:`.torch_runtime` (GPUs,
and CPUs when asked) and :mod:`.openvino_runtime` (the CPU default) implement it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

Runtime = Literal["torch", "openvino"]
Precision = Literal["fp32", "bf16", "fp16", "int8"]


class SettingsConflict(ValueError):
    """Settings that cannot run together (e.g. int8 on torch): start-up fails with this message."""


class WeightsError(RuntimeError):
    """Weights that cannot be loaded: start-up must fail with this message, never fall back."""


def cuda_available() -> bool:
    """torch is importable and sees a GPU. The CPU image carries no torch: no GPU for this service there.

    The one place the OpenVINO path may touch torch, and only to ask; a missing torch is an answer."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def visible_gpus() -> int:
    """How many GPUs this process may use (CUDA_VISIBLE_DEVICES applied); 0 without torch or a GPU.

    Asked only where the service runs on a GPU (as :func:`cuda_available`, it creates no CUDA context)."""
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: Runtime
    device: str  # "cpu" or "cuda"
    precision: Precision


class Classifier(Protocol):
    """ResNet18 ready to run: what the batcher calls on its model thread."""

    @property
    def choice(self) -> RuntimeChoice:
        """What really runs (the precision as the runtime reports it, not only as asked)."""

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, 3, 224, 224) crops -> float32 (N, 1000) softmax probabilities."""

    def warm_up(self, max_batch_size: int) -> list[int]:
        """Run the batch sizes live traffic can produce; returns them."""


def cpu_supports_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """bf16 pays on CPUs with native bf16 math (AVX512-BF16 or AMX); elsewhere it is emulated and slow."""
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose(
    runtime: str, device: str, precision: str, *, cuda_available: bool, native_bf16: bool | None = None
) -> RuntimeChoice:
    """Resolve the ``auto`` settings (README, "Configuration").

    On a GPU: torch in fp16. On a CPU: OpenVINO, in bf16 where the CPU computes it natively, fp32
    elsewhere; int8 only when asked. Raises :class:`SettingsConflict` for combinations that cannot run,
    and RuntimeError when CUDA is asked for and unusable (the service then stays up, never ready).
    """
    if precision == "int8":
        if runtime == "torch" or device == "cuda":
            raise SettingsConflict(
                "RESNET18_PRECISION=int8 runs on OpenVINO on a CPU: set RESNET18_RUNTIME=openvino (or auto) "
                "and RESNET18_DEVICE=cpu (or auto)"
            )
        runtime = "openvino"
    if runtime == "auto":
        runtime = "torch" if device == "cuda" or (device == "auto" and cuda_available) else "openvino"
    if runtime == "openvino":
        if device == "cuda":
            raise SettingsConflict(
                "RESNET18_RUNTIME=openvino runs on the CPU only (its GPU plugin is for Intel GPUs); "
                "use RESNET18_RUNTIME=torch (or auto) with RESNET18_DEVICE=cuda"
            )
        device = "cpu"
    if device == "cuda" and not cuda_available:
        raise RuntimeError(
            "RESNET18_DEVICE=cuda but CUDA is unusable here "
            "(check `nvidia-smi`, the driver version and `docker run --gpus all`)"
        )
    resolved = device if device != "auto" else ("cuda" if cuda_available else "cpu")
    native = cpu_supports_bf16() if native_bf16 is None else native_bf16
    if precision == "auto":
        if resolved == "cuda":
            precision = "fp16"  # tensor cores
        elif runtime == "openvino" and native:
            precision = "bf16"  # same top-1 as fp32 on labelled images, about 2x its speed (README)
        else:
            precision = "fp32"
    if precision == "fp16" and resolved == "cpu":
        raise SettingsConflict("RESNET18_PRECISION=fp16 needs a GPU; use fp32, bf16 or int8 on a CPU")
    if precision == "bf16" and runtime == "openvino" and not native:
        raise SettingsConflict(
            "RESNET18_PRECISION=bf16 with OpenVINO needs a CPU with native bf16 (AVX512-BF16 or AMX); "
            "this one has neither: use fp32 or int8"
        )
    return RuntimeChoice(runtime, resolved, precision)  # type: ignore[arg-type]
