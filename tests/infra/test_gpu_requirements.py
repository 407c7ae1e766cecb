"""The one place that says which NVIDIA driver the GPU image needs (infra/gpu_requirements.py): in step with
the image's lock file, and read the same way by the boot check and `pulumi up`'s AMI warning."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.gpu_requirements import (
    CUDA_VERSION,
    DLAMI_R580_SINCE,
    MIN_DRIVER_VERSION,
    ami_driver_warning,
    driver_at_least,
    version_tuple,
)

REPO = Path(__file__).resolve().parents[2]


def test_the_minimum_follows_the_cuda_of_the_images_lock() -> None:
    """requirements.lock.txt pins torch with the CUDA runtime it was built for: bumping CUDA past 13.0 must
    revisit the driver minimum (and this test says so)."""
    lock = (REPO / "requirements.lock.txt").read_text()
    assert re.search(r"^torch==", lock, re.M), "the GPU image's lock pins torch"
    runtime = re.search(r"^nvidia-cuda-runtime(?:-cu\d+)?==(\d+)\.(\d+)\.", lock, re.M)
    assert runtime, "the lock pins the CUDA runtime"
    assert f"{runtime.group(1)}.{runtime.group(2)}" == CUDA_VERSION, "new CUDA: update MIN_DRIVER_VERSION"
    assert re.search(r"^nvidia-\S+-cu13==", lock, re.M)  # the CUDA 13 builds of the NVIDIA libraries
    assert version_tuple(MIN_DRIVER_VERSION)[0] == 580  # CUDA 13.x: the R580 branch or newer


@pytest.mark.parametrize(
    ("driver", "enough"),
    [("580.65.06", True), ("580.95.05", True), ("595.71.05", True), ("580.9.1", False), ("570.172.08", False)],
)
def test_driver_versions_compare_as_numbers(driver: str, enough: bool) -> None:
    assert driver_at_least(driver) is enough


def test_a_version_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="not a driver version"):
        version_tuple("N/A")


DLAMI = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04) {}"


@pytest.mark.parametrize(
    ("name", "description", "warned"),
    [
        (DLAMI.format("20250815"), "Supported EC2 instances: G4dn, G5", "DLAMIs that old may ship the R570"),
        (DLAMI.format(DLAMI_R580_SINCE.strftime("%Y%m%d")), "", None),
        (DLAMI.format("20261201"), "", None),
        ("my-gpu-base", "NVIDIA driver 570.172.08, Docker", "ships NVIDIA driver 570.172.08"),
        ("my-gpu-base", "NVIDIA Driver: 580.95.05", None),  # a named driver wins over the name's date
        (DLAMI.format("20250815"), "nvidia driver 580.82.07", None),
        ("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250815", "Canonical, Ubuntu", None),
        (None, None, None),  # nothing known: the boot check decides
    ],
)
def test_what_an_amis_name_or_description_says_of_its_driver(
    name: str | None, description: str | None, warned: str | None
) -> None:
    warning = ami_driver_warning("ami-0123", name, description)
    if warned is None:
        assert warning is None
    else:
        assert warning is not None and warned in warning and MIN_DRIVER_VERSION in warning
