"""Preprocessing in-process: the exact reference split, decoding of odd images, and the limits."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.models import ResNet18_Weights

from service.device_decode import decode_batch, takes_device_path
from service.model.labels import LABELS
from service.preprocessing import DRAFT_MIN_SIDE, ImageError, decode_image, normalize, preprocess, resize_and_crop
from tests import images

REFERENCE = ResNet18_Weights.IMAGENET1K_V1.transforms()
PIXELS = 50_000_000
# Sizes where the resize and crop arithmetic has edges: already 256 or 224 on the short side, one pixel
# either side, odd margins (the crop offset rounds half to even), extreme aspect ratios both ways.
EDGE_SIZES = [
    (256, 256), (224, 224), (225, 225), (255, 300), (257, 1200), (1200, 257), (513, 257), (301, 299),
    (256, 1000), (1000, 256), (3000, 256), (225, 4000), (1023, 767), (2000, 1125), (999, 1000), (640, 480),
]  # fmt: skip


def crop_sizes() -> list[tuple[int, int]]:
    rng = np.random.default_rng(19)
    return EDGE_SIZES + [(int(w), int(h)) for w, h in rng.integers(200, 2500, size=(24, 2))]


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (224, 224), (1000, 999), (257, 1200)])
def test_uint8_crop_then_normalize_equals_torchvision_transforms(size: tuple[int, int]) -> None:
    data = images.jpeg(*size, seed=sum(size))
    ours = normalize(torch.from_numpy(preprocess(data, PIXELS)).unsqueeze(0))[0]
    reference = REFERENCE(Image.open(io.BytesIO(data)).convert("RGB"))
    assert ours.shape == reference.shape == (3, 224, 224)
    assert torch.allclose(ours, reference, atol=1e-6)


def test_resize_and_crop_is_byte_identical_to_torchvision() -> None:
    """The torch-free resize + crop (PIL only, the CPU image has no torch) against torchvision's own
    ``Resize(256, antialias=True)`` + ``CenterCrop(224)`` on PIL images of many sizes and aspect ratios."""
    reference = transforms.Compose([transforms.Resize(256, antialias=True), transforms.CenterCrop(224)])
    rng = np.random.default_rng(0)
    for width, height in crop_sizes():
        # Noise: every pixel of the source matters, so a one-pixel shift or another filter shows.
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        ours, theirs = np.asarray(resize_and_crop(image)), np.asarray(reference(image))
        assert ours.shape == theirs.shape == (224, 224, 3), (width, height)
        assert np.array_equal(ours, theirs), (width, height)


def test_crops_are_uint8_chw_arrays() -> None:
    crop = preprocess(images.jpeg(500, 375), PIXELS)
    assert isinstance(crop, np.ndarray) and crop.dtype == np.uint8 and crop.shape == (3, 224, 224)
    assert crop.flags.c_contiguous


def test_labels_are_torchvisions() -> None:
    assert list(LABELS) == ResNet18_Weights.IMAGENET1K_V1.meta["categories"]


def test_large_jpegs_decode_at_reduced_scale_small_ones_do_not() -> None:
    small = decode_image(images.jpeg(1000, 750), PIXELS)
    assert small.image.size == (1000, 750)
    big = decode_image(images.jpeg(4032, 3024, quality=80), PIXELS)
    assert big.original_size == (4032, 3024)
    assert big.image.size[1] >= DRAFT_MIN_SIDE and big.image.size[0] < 4032  # DCT-scaled, still > 2x the resize


def test_transparent_pixels_are_shown_on_white() -> None:
    transparent = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    decoded = decode_image(images.encode(transparent, "PNG"), PIXELS).image
    assert decoded.mode == "RGB" and decoded.getextrema() == ((255, 255), (255, 255), (255, 255))


def test_exif_orientation_restores_the_upright_picture() -> None:
    rotated, upright = images.exif_rotated_jpeg()
    assert decode_image(rotated, PIXELS).image.size == decode_image(upright, PIXELS).image.size == (400, 300)


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    sixteen, eight = images.png_16bit()
    a = np.asarray(decode_image(sixteen, PIXELS).image).astype(int)
    b = np.asarray(decode_image(eight, PIXELS).image).astype(int)
    assert np.abs(a - b).max() <= 1


@pytest.mark.parametrize(
    ("data", "status"),
    [(b"", 400), (b"GIF89a-but-not-really", 422), (images.truncated_jpeg(), 422)],
    ids=["empty", "fake-header", "truncated"],
)
def test_bad_bytes_raise_image_errors(data: bytes, status: int) -> None:
    with pytest.raises(ImageError) as info:
        decode_image(data, PIXELS)
    assert info.value.status == status


def test_pixel_limit_is_checked_from_the_header() -> None:
    data = images.encode(Image.new("L", (4000, 3000)), "PNG")
    with pytest.raises(ImageError, match="4000x3000") as info:
        decode_image(data, max_pixels=10_000_000)
    assert info.value.status == 413


# --- the GPU decoding path (RESNET18_DECODE=device), run here on the CPU ----------------------------------


def test_device_path_takes_plain_jpegs_only() -> None:
    taken = [images.jpeg(), images.grayscale_jpeg(), images.twelve_megapixel_jpeg()]
    left = [
        images.cmyk_jpeg(),
        images.exif_rotated_jpeg()[0],
        images.png_with_alpha(),
        images.truncated_jpeg()[:100],
        b"garbage",
        b"",
    ]
    assert all(takes_device_path(data, PIXELS) for data in taken)
    assert not any(takes_device_path(data, PIXELS) for data in left)
    assert not takes_device_path(images.jpeg(500, 375), max_pixels=500 * 375 - 1)  # the pixel limit holds


def test_device_path_matches_the_cpu_path(reference_model: torch.nn.Module) -> None:
    """The same code as on a GPU, on the CPU: within one grey level of the PIL path (another resize
    implementation), and the same top-5 from the model."""
    datas = [images.jpeg(*size, seed=sum(size)) for size in [(500, 375), (375, 500), (640, 480), (257, 1200)]]
    datas.append(images.grayscale_jpeg())
    device_crops = decode_batch(datas, torch.device("cpu"))
    cpu_crops = torch.from_numpy(np.stack([preprocess(data, PIXELS) for data in datas]))
    assert device_crops.shape == cpu_crops.shape and device_crops.dtype == torch.uint8
    assert (device_crops.int() - cpu_crops.int()).abs().max() <= 1
    with torch.inference_mode():
        on_device = reference_model(normalize(device_crops)).softmax(dim=1)
        on_cpu = reference_model(normalize(cpu_crops)).softmax(dim=1)
    assert torch.equal(on_device.topk(5).indices, on_cpu.topk(5).indices)
    assert torch.allclose(on_device, on_cpu, atol=1e-3)


def test_device_path_refuses_a_corrupt_batch() -> None:
    with pytest.raises(RuntimeError):
        decode_batch([images.jpeg(), images.truncated_jpeg()], torch.device("cpu"))
