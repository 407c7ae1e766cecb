"""Photo-like test images made on the spot (nothing downloaded): smooth gradients, blobs and sensor-like
noise, so they compress and decode like camera JPEGs rather than like flat colour or pure noise."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo(width: int = 500, height: int = 375, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * (fx * x / width + fy * y / height) + phase)
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.1, 0.4) * min(width, height)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        channels.append(127 + 70 * wave + 60 * blob)
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def jpeg(width: int = 500, height: int = 375, seed: int = 0, quality: int = 90) -> bytes:
    return encode(photo(width, height, seed), "JPEG", quality=quality)


def varied_photo(seed: int, width: int = 320, height: int = 240) -> bytes:
    """A JPEG of :func:`photo` with its own exposure and colour cast: photos differ from each other in
    global tone as real ones do (calibration sets, INT8 agreement)."""
    rng = np.random.default_rng(50_000 + seed)
    pixels = np.asarray(photo(width, height, seed)).astype(np.float32)
    pixels = (pixels - 127) * np.float32(rng.uniform(0.4, 1.3)) + 127 + rng.uniform(-70, 70, 3).astype(np.float32)
    return encode(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), "JPEG", quality=90)


def make_images(count: int, large: int) -> list[bytes]:
    """``count`` 500x375 photos and ``large`` 12-megapixel ones (4032x3024), mixed in evenly."""
    small = [jpeg(500, 375, seed=seed, quality=90) for seed in range(count - large)]
    big = [jpeg(4032, 3024, seed=1000 + seed, quality=85) for seed in range(large)]
    step = max(1, len(small) // max(1, large))
    images: list[bytes] = []
    for index, data in enumerate(small):
        images.append(data)
        if big and index % step == step - 1:
            images.append(big.pop())
    return images + big
