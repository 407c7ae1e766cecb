"""Bytes -> validated RGB image -> the uint8 crop the model worker normalises on its device.

Two steps, as in torchvision's transforms: :func:`decode_image` turns untrusted upload bytes into an
RGB ``PIL.Image`` (or raises :class:`ImageError`, a client error), and :func:`to_model_input` applies
ResNet18's standard ImageNet preprocessing (resize the shorter side to 256, center crop 224) and
stops at uint8: the float conversion and mean/std normalisation happen in the model worker, on its
device (folded into the OpenVINO model; :func:`normalize` for torch), so 4x fewer bytes cross the
process boundary. The split is exact: ``to_model_input`` then :func:`normalize` equals
``ResNet18_Weights.IMAGENET1K_V1.transforms()`` on the same image.

PIL and numpy only: this runs in the CPU image, which carries no torch (tests/test_no_torch.py).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

RESIZE = 256
CROP = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# JPEGs whose shorter side is at least twice this are decoded at a reduced DCT scale (PIL's draft
# mode) that keeps the shorter side >= this: decode + resize + crop of a 12 MP photo measured
# 99 ms -> 21 ms; the antialiased resize to 256 that follows keeps the result close to a full decode.
# Images below this size (most web images) take the exact reference path.
DRAFT_MIN_SIDE = 2 * RESIZE

# Transparent pixels are shown on white, as a browser shows them on a white page; dropping alpha
# instead would expose whatever colour the encoder left under it (often black).
BACKGROUND = (255, 255, 255)

# PIL's own decompression-bomb guard is a process-wide constant; decode_image enforces the
# per-deployment limit (RESNET18_MAX_IMAGE_PIXELS) itself, from the header, before decoding.
Image.MAX_IMAGE_PIXELS = None


def resize_and_crop(image: Image.Image) -> Image.Image:
    """The shorter side to RESIZE (bilinear, antialiased), then the centre CROP x CROP square.

    torchvision's ``Resize(256, antialias=True)`` + ``CenterCrop(224)`` on a PIL image are these very PIL
    calls, with sizes and offsets computed as here (torchvision/transforms/functional.py:
    ``_compute_resized_output_size``, ``center_crop``): byte-identical crops (tests/test_preprocessing.py).
    PIL always antialiases a bilinear downscale. No torch operator, so no OpenMP team, in decoding threads."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = RESIZE, int(RESIZE * long / short)
    new_width, new_height = (new_short, new_long) if width <= height else (new_long, new_short)
    if (new_width, new_height) != (width, height):
        image = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
    # Never smaller than the crop (the shorter side is now 256 > 224), so torchvision's padding never applies.
    top = round((new_height - CROP) / 2.0)  # torchvision: int(round(...)), the same banker's rounding
    left = round((new_width - CROP) / 2.0)
    return image.crop((left, top, left + CROP, top + CROP))


def to_model_input(image: Image.Image) -> np.ndarray:
    """RGB image -> uint8 CHW 3x224x224, as ``transforms.PILToTensor`` would give, made with numpy."""
    pixels = np.asarray(resize_and_crop(image))  # HWC
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


class ImageError(ValueError):
    """An upload that is not a usable image. ``status`` is the HTTP status the client gets."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, EXIF orientation applied, possibly DCT-downscaled (see DRAFT_MIN_SIDE)
    original_size: tuple[int, int]  # width, height as encoded
    format: str


def decode_image(data: bytes, max_pixels: int) -> DecodedImage:
    """Decode untrusted bytes into an RGB image, refusing anything that is not one or is too large.

    The pixel limit is checked from the header, before any pixel is decoded, so a small file that
    claims 30000x30000 pixels costs nothing.
    """
    if not data:
        raise ImageError("the file is empty", status=400)
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("the file is not an image in a supported format (JPEG, PNG, GIF, WebP, BMP, TIFF)") from None
    except Exception as exc:  # any other parser failure is still the file's fault
        raise ImageError(f"the image header could not be read: {exc}") from None

    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError("the image has no pixels")
    if width * height > max_pixels:
        raise ImageError(
            f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}", status=413
        )
    fmt = image.format or "unknown"
    if fmt == "JPEG" and min(width, height) >= 2 * DRAFT_MIN_SIDE:
        scale = min(width, height) / DRAFT_MIN_SIDE
        image.draft(None, (int(width / scale), int(height / scale)))
    try:
        image.load()  # first frame only, for animated GIF/WebP
        oriented: Image.Image = ImageOps.exif_transpose(image) or image
        rgb = _to_rgb(oriented)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageError(f"the {fmt} image could not be decoded (truncated or corrupt?): {exc}") from None
    return DecodedImage(image=rgb, original_size=(width, height), format=fmt)


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _high_bit_depth_to_rgb(image)
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit (and 32-bit) grayscale: scale the full range to 8 bits; PIL's convert would clip at 255."""
    array = np.asarray(image)
    if array.dtype.kind == "f":
        scaled = np.clip(array, 0.0, 1.0) * 255.0
    else:
        top = 65535 if image.mode.startswith("I;16") or int(array.max(initial=0)) <= 65535 else int(array.max())
        scaled = array.astype(np.float64) * (255.0 / top)
    gray = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
    return gray.convert("RGB")


def normalize(batch: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """uint8 NCHW -> ImageNet-normalised float (float32 unless ``dtype``), on ``batch``'s device: the second
    half of the transform, for the torch runtime (OpenVINO has it folded into its model)."""
    import torch  # only where torch runs

    mean = torch.tensor(IMAGENET_MEAN, device=batch.device, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device, dtype=torch.float32).view(1, 3, 1, 1)
    return ((batch.to(torch.float32) / 255.0 - mean) / std).to(dtype or torch.float32)


def preprocess(data: bytes, max_pixels: int) -> np.ndarray:
    """Upload bytes -> uint8 3x224x224 array (raises ImageError on bad input)."""
    return to_model_input(decode_image(data, max_pixels).image)
