"""Download the wheels bench/gpu_check.sh needs on a GPU machine without a package index.

    python -m bench.wheels [--dest wheels] [--python-version 3.12]    (or: make wheels)

Such machines come with Python, torch and torchvision preinstalled, but no BentoML. This fetches, for
that interpreter and manylinux x86_64, exactly the packages of requirements.lock.txt that torch and
torchvision do not bring themselves (their dependency closure is read from the local installation),
at the locked versions, without dependencies of their own (the lock is already closed). The folder
is git-ignored; carry it with the tree (it must stay small: the limit is checked here).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements.lock.txt"
PREINSTALLED = ("torch", "torchvision")  # with everything they depend on
# torch's CUDA libraries (some reach the lock through a CUDA meta-package's extras); the machine's torch
# has its own. nvidia-ml-py is BentoML's NVML binding, not a CUDA library.
CUDA_LIBRARIES = re.compile(r"^(nvidia-(?!ml-py$)|cuda-)")
# The CPU runtime (service/model/openvino_runtime.py): a GPU runs torch, and the service imports OpenVINO
# only when it runs it. Its wheel alone (~50 MiB) would not fit the device tool's carry limit.
CPU_RUNTIME = frozenset({"openvino", "openvino-telemetry"})
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64")
MAX_MIB = 64


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: tuple[str, ...]) -> set[str]:
    """Names of ``roots`` and everything they require (non-extra), from the local installation."""
    seen: set[str] = set()
    todo = [canonical(root) for root in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = requires(name) or []
        except PackageNotFoundError:
            continue
        todo += [canonical(re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0]) for r in requirements if "extra ==" not in r]
    return seen


def missing_pins() -> list[str]:
    skip = closure(PREINSTALLED)
    pins = []
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        name = canonical(line.split("==", 1)[0]) if "==" in line else ""
        if name and name not in skip and name not in CPU_RUNTIME and not CUDA_LIBRARIES.match(name):
            pins.append(line)
    return pins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dest", type=Path, default=REPO / "wheels")
    parser.add_argument("--python-version", default="3.12")
    args = parser.parse_args()
    pins = missing_pins()
    abi = "cp" + args.python_version.replace(".", "")
    command = [
        sys.executable, "-m", "pip", "download", "--dest", str(args.dest), "--no-deps", "--only-binary=:all:",
        "--python-version", args.python_version, "--implementation", "cp", "--abi", abi, "--abi", "abi3",
        "--abi", "none", *(f"--platform={platform}" for platform in PLATFORMS), *pins,
    ]  # fmt: skip
    subprocess.run(command, check=True)
    wanted = {canonical(pin.split("==", 1)[0]) for pin in pins}
    stale = [w for w in args.dest.glob("*.whl") if canonical(w.name.split("-", 1)[0]) not in wanted]
    for wheel in stale:  # from an earlier lock
        wheel.unlink()
    size = sum(w.stat().st_size for w in args.dest.glob("*.whl")) / 2**20
    print(f"{len(pins)} wheels for Python {args.python_version} in {args.dest}: {size:.1f} MiB")
    if size > MAX_MIB:
        sys.exit(f"{size:.1f} MiB is over the {MAX_MIB} MiB a working tree may carry to a GPU machine")


if __name__ == "__main__":
    main()
