"""`bentoml build` makes a bento with the model, and a container recipe for an NVIDIA GPU.

No Docker engine here: the test builds the bento and inspects the exact Docker build context that
`bentoml containerize` would send (BentoML's own construct_containerfile, with the workaround of
container/upstream.py, as container/build.sh runs it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision
import yaml

from container.template import removed_cuda_libraries
from tests.server import REPO, bentoml_build

pytestmark = pytest.mark.build


@pytest.fixture(scope="module")
def built_bento(model_store: tuple[Path, str]) -> Iterator[tuple[str, Path]]:
    home, _ = model_store
    yield bentoml_build(home)


def test_bento_declares_the_model(built_bento: tuple[str, Path], model_store: tuple[Path, str]) -> None:
    _, model_tag = model_store
    _, path = built_bento
    info = yaml.safe_load((path / "bento.yaml").read_text())
    assert info["entry_service"] == "image-classifier"
    services = {service["name"]: service for service in info["services"]}
    assert [model["tag"] for model in services["image-classifier"]["models"]] == [model_tag]


def test_bento_pins_the_torch_the_tests_ran_with(built_bento: tuple[str, Path]) -> None:
    _, path = built_bento
    pins = dict(
        line.split("==", 1)
        for line in (path / "env" / "python" / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["torch"] == torch.__version__.split("+")[0]
    assert pins["torchvision"] == torchvision.__version__.split("+")[0]
    # The CUDA runtime the container will load is the one this torch build was made for.
    assert torch.version.cuda is not None
    cuda_major = torch.version.cuda.split(".")[0]
    assert pins["nvidia-cuda-runtime"].startswith(f"{cuda_major}.")


def test_containerize_context_holds_model_and_gpu_settings(
    built_bento: tuple[str, Path], model_store: tuple[Path, str]
) -> None:
    tag, _ = built_bento
    home, model_tag = model_store
    dockerfile, files = containerize_context(tag, home)

    name, version = model_tag.split(":")
    weights = f"models/{name}/{version}/resnet18.pth"
    assert weights in files and int(files[weights]) > 40_000_000  # the model travels in the image
    openvino = f"models/{name}/{version}/openvino/resnet18"  # and its OpenVINO form, for the CPU runtime
    assert int(files[f"{openvino}.bin"]) > 40_000_000 and f"{openvino}.xml" in files
    assert "src/service/model_service.py" in files and "src/service/model/openvino_runtime.py" in files
    assert not any(path.startswith(("src/tests", "src/infra", "src/.venv")) for path in files)
    for setting in ("NVIDIA_VISIBLE_DEVICES=all", "NVIDIA_DRIVER_CAPABILITIES=compute,utility", "RESNET18_DEVICE=cuda"):
        assert setting.split("=")[0] in dockerfile and setting.split("=")[1] in dockerfile
    assert "BENTOML_CONTAINERIZED=true" in dockerfile
    assert "python:3.11" in dockerfile  # torch's wheels bring CUDA 13 + cuDNN; no CUDA base image needed

    # container/Dockerfile.j2: no build tools, no triton, and the unused CUDA libraries and uv's cache removed
    # in the very layer that installs them (a later layer cannot shrink it).
    lines = re.sub(r"\\\n", " ", dockerfile).splitlines()
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert not any("apt-get" in line or "build-essential" in line for line in instructions)
    assert "RUN printf 'triton\\n' > /etc/uv-exclude.txt" in instructions
    assert "ENV UV_EXCLUDE=/etc/uv-exclude.txt" in instructions
    [install] = [line for line in instructions if line.startswith("RUN") and "install.sh" in line]
    assert all(f"/site-packages/nvidia/cu13/lib/{name}" in install for name in removed_cuda_libraries())
    assert install.endswith("rm -rf /root/.cache/uv")  # podman: no BuildKit cache mount


def test_containerize_with_a_template_still_needs_the_workaround(
    built_bento: tuple[str, Path], model_store: tuple[Path, str]
) -> None:
    """BentoML 1.4.40, bentoml/BentoML#5566. Once this fails, BentoML is fixed: drop container/upstream.py."""
    tag, _ = built_bento
    home, _ = model_store
    code = f"""
import bentoml
from bentoml._internal.container import construct_containerfile
with construct_containerfile(bentoml.bentos.get({tag!r})):
    pass
"""
    result = containerize_script(code, home, check=False, TMPDIR="/tmp")  # the system's temporary directory
    assert result.returncode != 0
    assert "Accessing file outside of current working directory is not allowed" in result.stderr


def containerize_context(tag: str, home: Path) -> tuple[str, dict[str, str]]:
    """(Dockerfile, {path: size}) of the build context BentoML makes for ``tag``, through the workaround."""
    code = f"""
import bentoml, pathlib
from bentoml._internal.container import construct_containerfile
from container.upstream import containerize_tempdir
bento = bentoml.bentos.get({tag!r})
with containerize_tempdir(), construct_containerfile(bento, enable_buildkit=False) as (context, dockerfile):
    root = pathlib.Path(context)
    print("DOCKERFILE_BEGIN"); print(pathlib.Path(dockerfile).read_text()); print("DOCKERFILE_END")
    for p in sorted(root.rglob("*")):
        if p.is_file():
            print("FILE", p.relative_to(root), p.stat().st_size)
"""
    result = containerize_script(code, home)
    dockerfile = result.stdout.split("DOCKERFILE_BEGIN", 1)[1].split("DOCKERFILE_END", 1)[0]
    return dockerfile, dict(re.findall(r"^FILE (\S+) (\d+)$", result.stdout, re.MULTILINE))


def containerize_script(code: str, home: Path, check: bool = True, **env_vars: str) -> subprocess.CompletedProcess[str]:
    """Python ``code`` run from the repository (as container/build.sh runs bentoml) with the test's store."""
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true", **env_vars}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=check)


# --- the CPU bento (bentofile.cpu.yaml) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_bento(model_store: tuple[Path, str]) -> tuple[str, Path]:
    home, _ = model_store
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    env.pop("RESNET18_WEIGHTS", None)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("bentoml")), "build", "-f", "bentofile.cpu.yaml", "--output", "tag"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    return tag, home / "bentos" / name / version


def test_cpu_bento_has_no_torch_and_the_same_pins(cpu_bento: tuple[str, Path]) -> None:
    """requirements.cpu.lock.txt: the GPU lock's versions, minus torch and everything only it needs."""
    tag, path = cpu_bento
    assert tag.startswith("elastic-resnet-cpu:")
    pins = dict(
        line.split("==", 1)
        for line in (path / "env" / "python" / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    gpu_pins = dict(
        line.split("==", 1) for line in (REPO / "requirements.lock.txt").read_text().splitlines() if "==" in line
    )
    assert not {"torch", "torchvision", "triton"} & set(pins)
    assert [name for name in pins if name.startswith(("nvidia", "cuda"))] == ["nvidia-ml-py"]  # bentoml's NVML
    assert {name: version for name, version in pins.items() if gpu_pins.get(name) != version} == {}
    assert {"bentoml", "openvino", "pillow", "numpy"} <= set(pins)


def test_cpu_containerize_context_holds_the_model_and_cpu_settings(
    cpu_bento: tuple[str, Path], model_store: tuple[Path, str]
) -> None:
    tag, _ = cpu_bento
    home, model_tag = model_store
    dockerfile, files = containerize_context(tag, home)
    name, version = model_tag.split(":")
    openvino = f"models/{name}/{version}/openvino/resnet18"
    assert int(files[f"{openvino}.bin"]) > 40_000_000 and f"{openvino}.xml" in files
    assert "src/service/model/openvino_runtime.py" in files
    assert "RESNET18_DEVICE" in dockerfile and "NVIDIA" not in dockerfile and "triton" not in dockerfile
    lines = re.sub(r"\\\n", " ", dockerfile).splitlines()
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert not any("apt-get" in line or "build-essential" in line for line in instructions)
    [install] = [line for line in instructions if line.startswith("RUN") and "install.sh" in line]
    assert install.endswith("rm -rf /root/.cache/uv")
