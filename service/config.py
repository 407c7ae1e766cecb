"""Runtime settings of the service, read once from the environment.

The variable names are part of the public contract (README, "Configuration"); everything else in the
service reads settings from here instead of touching ``os.environ`` itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

Weights = str  # "imagenet" | "untrained" | a path to a torchvision-format state dict
Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
Runtime = Literal["auto", "torch", "openvino"]
Device = Literal["auto", "cpu", "cuda"]

MODEL_NAME = "resnet18"  # name of the model in the BentoML model store
INT8_MODEL_NAME = "resnet18-int8"  # its INT8 OpenVINO version (python -m service.import_model --quantize int8)
PRECISIONS: tuple[Precision, ...] = ("auto", "fp32", "bf16", "fp16", "int8")
RUNTIMES: tuple[Runtime, ...] = ("auto", "torch", "openvino")
DEVICES: tuple[Device, ...] = ("auto", "cpu", "cuda")
Decode = Literal["cpu", "device"]
DECODES: tuple[Decode, ...] = ("cpu", "device")


class ConfigError(ValueError):
    """A setting has a value the service cannot run with; raised at start-up, never per request."""


def env_int(name: str, default: int, minimum: int = 1) -> int:
    """An integer setting from the environment; ConfigError names the variable when it is not one."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def _choice(name: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, choices[0]).strip().lower() or choices[0]
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class ModelSettings:
    """What the model worker loads and how it runs it."""

    weights: Weights | None  # None: the model store's ``resnet18:latest`` (what ``bentoml build`` packs)
    runtime: Runtime
    precision: Precision
    device: Device
    max_batch_size: int
    max_latency_ms: int | None  # None: chosen for the device (see service.model_service)
    decode: Decode  # where JPEGs are decoded: "device" = on the model's GPU (service.device_decode)

    @classmethod
    def from_env(cls) -> ModelSettings:
        weights = os.environ.get("RESNET18_WEIGHTS", "").strip() or None
        latency = os.environ.get("RESNET18_MAX_LATENCY_MS", "").strip()
        return cls(
            weights=weights,
            runtime=_choice("RESNET18_RUNTIME", RUNTIMES),  # type: ignore[arg-type]
            precision=_choice("RESNET18_PRECISION", PRECISIONS),  # type: ignore[arg-type]
            device=_choice("RESNET18_DEVICE", DEVICES),  # type: ignore[arg-type]
            max_batch_size=env_int("RESNET18_MAX_BATCH_SIZE", 32),
            max_latency_ms=env_int("RESNET18_MAX_LATENCY_MS", 1) if latency else None,
            decode=_choice("RESNET18_DECODE", DECODES),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class InputLimits:
    """Bounds on what one request may make the server read, decode and hold in memory."""

    max_request_bytes: int
    max_image_pixels: int
    max_images_per_request: int

    @classmethod
    def from_env(cls) -> InputLimits:
        return cls(
            max_request_bytes=env_int("RESNET18_MAX_REQUEST_BYTES", 32 * 1024 * 1024),
            # 50 MP covers 48 MP phone photos; a 30000x30000 "bomb" (900 MP) is refused before decoding.
            max_image_pixels=env_int("RESNET18_MAX_IMAGE_PIXELS", 50_000_000),
            max_images_per_request=env_int("RESNET18_MAX_IMAGES_PER_REQUEST", 64),
        )
