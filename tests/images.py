"""Real encoded images for the tests, made here (never downloaded): photos-like content, every odd mode."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from bench.sample_images import encode, jpeg, photo

__all__ = ["encode", "jpeg", "photo"]


def png_with_alpha(seed: int = 1) -> bytes:
    rgba = photo(320, 240, seed).convert("RGBA")
    alpha = Image.linear_gradient("L").resize(rgba.size)
    rgba.putalpha(alpha)
    return encode(rgba, "PNG")


def palette_gif(seed: int = 2) -> bytes:
    return encode(photo(300, 300, seed).quantize(64), "GIF")


def animated_gif(seed: int = 3) -> bytes:
    frames = [photo(200, 150, seed + i).quantize(32) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def grayscale_jpeg(seed: int = 4) -> bytes:
    return encode(photo(400, 300, seed).convert("L"), "JPEG", quality=90)


def cmyk_jpeg(seed: int = 5) -> bytes:
    return encode(photo(400, 300, seed).convert("CMYK"), "JPEG", quality=90)


def png_16bit(seed: int = 6) -> tuple[bytes, bytes]:
    """The same grayscale picture as a 16-bit PNG and as an 8-bit PNG."""
    gray8 = np.asarray(photo(320, 240, seed).convert("L"))
    gray16 = gray8.astype(np.uint16) * 257  # full 16-bit range
    return encode(Image.fromarray(gray16), "PNG"), encode(Image.fromarray(gray8), "PNG")


def exif_rotated_jpeg(seed: int = 7) -> tuple[bytes, bytes]:
    """A landscape picture stored rotated with EXIF Orientation=6 (as phones do), and the upright one.

    Orientation 6 means "rotate 90° clockwise to display", so the stored pixels are the upright
    picture turned 90° counter-clockwise."""
    upright = photo(400, 300, seed)
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stored, "JPEG", quality=95, exif=exif), encode(upright, "JPEG", quality=95)


def twelve_megapixel_jpeg(seed: int = 8) -> bytes:
    return jpeg(4032, 3024, seed, quality=85)


def decompression_bomb_png() -> bytes:
    """30000x30000 pixels (900 MP) of one colour: a few hundred KB on the wire, 2.7 GB decoded."""
    return encode(Image.new("L", (30000, 30000), 0), "PNG", optimize=True)


def truncated_jpeg() -> bytes:
    data = jpeg(seed=9)
    return data[: len(data) // 2]
