"""JPEG decoding on the GPU (nvJPEG through ``torchvision.io.decode_jpeg``), behind RESNET18_DECODE=device.

On a GPU instance the CPU, not the GPU, limits throughput (docs/performance.md), and JPEG decoding is
most of the CPU an image costs. This path decodes a request's JPEGs in one batched call on the device,
then resizes and center-crops them there with torchvision's tensor transforms (antialiased bilinear,
as the reference transforms). Only what it can treat exactly like the CPU path takes it: baseline or
progressive JPEGs in RGB or grayscale with no EXIF rotation, within the pixel limit (read from the
header first, as on the CPU path). Anything else, and any request whose batch the device refuses,
goes through :func:`service.preprocessing.preprocess`, which also produces the 4xx answers.

The same code runs on the CPU (``device="cpu"``): tests/test_preprocessing.py checks it against the
PIL path there, so the GPU path is tested on machines without one. Not measured on a GPU yet.

On a GPU each decoding thread works on a CUDA stream of its own, drained before every decode, and copies
its crops to the host before it returns (pytorch/vision#9606): torchvision's nvJPEG wrapper allocates the
output images on the caller's current stream, then writes them from a private stream that never waits
for the caller's. The caching allocator hands out a block as soon as it is freed on its stream, while
kernels queued there may still read it; on the shared default stream those would be the model thread's
forward pass, whose inputs nvJPEG would overwrite (134 of 200 runs corrupted in the PR's test, hardware
and software decode alike; draining the caller's stream, or decoding with another stream current: 0 of
200). With a stream per thread, only this thread's own finished work ever freed the blocks it gets.
torchvision 0.29 deprecates its image decoders in favour of TorchCodec (a DeprecationWarning); they
still work, and the GPU images this project targets carry torchvision 0.26.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as F

from .preprocessing import CROP, RESIZE

EXIF_ORIENTATION = 0x0112


def takes_device_path(data: bytes, max_pixels: int) -> bool:
    """Whether ``data`` is a JPEG the device path decodes exactly as the CPU path would (header only)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG" or image.mode not in ("RGB", "L"):
                return False
            width, height = image.size
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # not even a readable header: the CPU path says why, with the right status
        return False
    return 0 < width * height <= max_pixels and orientation == 1


def decode_batch(datas: list[bytes], device: torch.device) -> torch.Tensor:
    """JPEG bytes -> uint8 (N, 3, 224, 224) on the host: decode on ``device``, resize the shorter side to
    256 and crop there, then copy the crops back.

    Raises RuntimeError when the decoder refuses an image (the caller falls back to the CPU path)."""
    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in datas]
    with _own_stream(device):
        decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        crops = [
            F.center_crop(F.resize(image, [RESIZE], interpolation=F.InterpolationMode.BILINEAR, antialias=True), [CROP])
            for image in decoded
        ]
        # Still on this thread's stream: the copy waits for the resizes, and everything freed after it is idle.
        return torch.stack(crops).cpu()


_streams = threading.local()


@contextlib.contextmanager
def _own_stream(device: torch.device) -> Iterator[None]:
    """On a GPU: this thread's own CUDA stream as the current one, drained first (pytorch/vision#9606,
    module docstring). Nothing on the CPU."""
    if device.type != "cuda":
        yield
        return
    streams: dict[torch.device, torch.cuda.Stream] = _streams.__dict__.setdefault("by_device", {})
    stream = streams.get(device)
    if stream is None:
        # This thread's current device too: leaving torch.cuda.stream() restores the thread's previous
        # device, which would otherwise be cuda:0 and open a context there for a worker pinned elsewhere.
        torch.cuda.set_device(device)
        stream = streams[device] = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
    stream.synchronize()  # a host barrier: nothing queued on it may still read a block the decoder gets
    with torch.cuda.stream(stream):
        yield
