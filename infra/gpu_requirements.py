"""What the GPU image needs from the instance, said once: the NVIDIA driver its CUDA needs. The instances'
user data checks it at boot (before pulling the image) and `pulumi up` warns when a pinned ``fleet.amiId``
is known to be older (infra/stack.py); both read it from here.

The image's torch is built for CUDA 13.0: requirements.lock.txt pins torch with the CUDA 13.0 runtime
(``nvidia-cuda-runtime==13.0.*``, ``cuda-toolkit==13.0.*``, the ``nvidia-*-cu13`` libraries; a test keeps
this module and the lock in step). NVIDIA's minimum for it:

- CUDA 13.x, through minor-version compatibility: driver >= 580 ("CUDA Toolkit 11.x, 12.x, and 13.x Driver
  Version Ranges": https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html);
- CUDA 13.0 GA's own driver, the first of the R580 branch: >= 580.65.06 (CUDA Toolkit 13.0 release notes,
  "CUDA Toolkit and Corresponding Driver Versions":
  https://docs.nvidia.com/cuda/archive/13.0.0/cuda-toolkit-release-notes/index.html).

The stricter of the two is the minimum here. A 570.x driver (R570: CUDA 12.x at most) loads no CUDA 13 code:
the container would start and never answer /readyz.

Pure: no Pulumi import (the user data renderer and the stack both read it).
"""

from __future__ import annotations

import re
from datetime import date

CUDA_VERSION = "13.0"  # the image's CUDA (requirements.lock.txt)
MIN_DRIVER_VERSION = "580.65.06"  # the least Linux driver that runs it (the module docstring's sources)

# The AWS Deep Learning AMIs carry their release date at the end of their name ("Deep Learning Base OSS Nvidia
# Driver GPU AMI (Ubuntu 24.04) 20251031"), and each release's notes list its driver (nvidia_driver). The
# release of 2025-10-31 lists 580.95.05 (Deep Learning ARM64 Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)
# 20251031), every later one seen R580 or newer; DLAMIs from before about October 2025 ship R570 (issue 20).
# Not every release's notes were read: a DLAMI older than this date is warned about as one that MAY be too
# old, which its release notes settle; a newer one is not. The boot check is the authority either way.
DLAMI_R580_SINCE = date(2025, 10, 31)
DLAMI_RELEASE_NOTES = "https://docs.aws.amazon.com/dlami/latest/devguide/appendix-ami-release-notes.html"
_DLAMI_NAME = re.compile(r"^Deep Learning .*\bAMI\b.* (\d{4})(\d{2})(\d{2})$")
# A driver version named in an AMI's name or description ("NVIDIA driver 570.172.08", "Nvidia Driver: 580.95.05")
_NAMED_DRIVER = re.compile(r"(?i)\bdriver\b[^0-9]{0,20}(\d{3}\.\d{1,3}(?:\.\d{1,3})?)\b")


def version_tuple(version: str) -> tuple[int, ...]:
    """'580.65.06' -> (580, 65, 6); ValueError for anything that is not dotted numbers."""
    if not re.fullmatch(r"\d+(\.\d+)*", version.strip()):
        raise ValueError(f"not a driver version: {version!r}")
    return tuple(int(part) for part in version.strip().split("."))


def driver_at_least(version: str, minimum: str = MIN_DRIVER_VERSION) -> bool:
    return version_tuple(version) >= version_tuple(minimum)


def ami_driver_warning(ami_id: str, name: str | None, description: str | None) -> str | None:
    """Why a pinned GPU AMI is (probably) older than the driver the image needs, where its name or
    description says so; None when it says nothing, or says it is recent enough. Never a failure: the
    instances' boot check (user data) is the authority, this only says it at `pulumi up` already."""
    for text in (description or "", name or ""):
        named = _NAMED_DRIVER.search(text)
        if named:
            driver = named.group(1)
            if driver_at_least(driver):
                return None
            return (
                f"fleet.amiId {ami_id} ({name}) ships NVIDIA driver {driver}; the GPU image's CUDA {CUDA_VERSION} "
                f"needs >= {MIN_DRIVER_VERSION}: every instance would abandon its launch at the boot check. Pin a "
                "newer AMI (docs/deploy.md, 'Pin the AMI')."
            )
    released = _dlami_release(name or "")
    if released is not None and released < DLAMI_R580_SINCE:
        return (
            f"fleet.amiId {ami_id} is a Deep Learning AMI of {released.isoformat()}, before "
            f"{DLAMI_R580_SINCE.isoformat()}: DLAMIs that old may ship the R570 NVIDIA driver, and the GPU image's "
            f"CUDA {CUDA_VERSION} needs >= {MIN_DRIVER_VERSION} (the instances check it at boot and abandon their "
            f"launch if it is older). Check its nvidia_driver in the release notes ({DLAMI_RELEASE_NOTES}) or pin a "
            "newer AMI."
        )
    return None


def _dlami_release(name: str) -> date | None:
    match = _DLAMI_NAME.match(name.strip())
    if match is None:
        return None
    try:
        return date(*(int(part) for part in match.groups()))
    except ValueError:
        return None
