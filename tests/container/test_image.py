"""The real image, running as the instances run it: hardened, non-root, and answering exactly as
`bentoml serve` of the same code and weights does."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from container.template import removed_cuda_libraries
from infra.container import STOP_TIMEOUT_S
from tests import images
from tests.container.conftest import VARIANT, Container, podman
from tests.server import Server

pytestmark = pytest.mark.server
gpu_image = pytest.mark.skipif(VARIANT != "gpu", reason="the GPU image's contents")
cpu_image = pytest.mark.skipif(VARIANT != "cpu", reason="the CPU image's contents")


def test_runs_hardened_as_non_root(container: Container) -> None:
    info = container.inspect()
    host = info["HostConfig"]
    config = info["Config"]
    assert isinstance(host, dict) and isinstance(config, dict)
    assert host["ReadonlyRootfs"] is True
    assert "/tmp" in host["Tmpfs"]
    assert any("no-new-privileges" in opt for opt in host["SecurityOpt"] or [])
    assert host["CapAdd"] in (None, [])
    assert config["StopTimeout"] == STOP_TIMEOUT_S
    assert podman("exec", container.name, "id", "-u").stdout.strip() != "0"
    # The code and model are not writable; /tmp (BentoML's home) is.
    denied = podman("exec", container.name, "touch", "/home/bentoml/bento/x", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    assert podman("exec", container.name, "sh", "-c", 'test -d "$BENTOML_HOME" && echo ok').stdout.strip() == "ok"


@gpu_image
def test_image_leaves_out_triton_and_cuda_libraries_nothing_loads(container: Container) -> None:
    """container/Dockerfile.j2's removals, checked in the image: triton is not installed, and no file left in
    the venv names a removed CUDA library, so none can need it (DT_NEEDED) or dlopen it. The CUDA libraries
    torch does load are all there (libtorch_cuda and its dependencies load with `import torch`, even on a
    CPU): docs/container.md, "Kept, on purpose"."""
    find_triton = "import importlib.util; print(importlib.util.find_spec('triton'))"
    assert podman("exec", container.name, "python", "-c", find_triton).stdout.strip() == "None"
    stems = [arg for name in removed_cuda_libraries() for arg in ("-e", name.removeprefix("lib").split(".so")[0])]
    named = podman("exec", container.name, "grep", "-rlsF", *stems, "/app/.venv", check=False)
    assert named.returncode in (0, 1), named.stderr  # grep: 1 = nothing matched, 2 = an error
    # Naming them is fine for the wheels' file lists, headers, and cuda.pathfinder's catalog of the libraries
    # it finds when a caller asks for one by name (no other file has the name to ask with).
    loaders = [
        path
        for path in named.stdout.splitlines()
        if not path.endswith(("/RECORD", ".h")) and "/cuda/pathfinder/_dynamic_libs/" not in path
    ]
    assert loaders == []


@cpu_image
def test_cpu_image_has_no_torch(container: Container) -> None:
    """bentofile.cpu.yaml: no torch, torchvision, triton or CUDA wheel in the image, and the service, which
    answered /readyz, runs OpenVINO without them."""
    code = (
        "import importlib.util, json, pathlib, sys, sysconfig\n"
        "site = pathlib.Path(sysconfig.get_paths()['purelib'])\n"
        "names = ('torch', 'torchvision', 'triton', 'nvidia')\n"
        "print(json.dumps([sys.prefix, [n for n in names if importlib.util.find_spec(n)],"
        " sorted(p.name for p in site.glob('nvidia*'))]))"
    )
    prefix, found, nvidia = json.loads(podman("exec", container.name, "python", "-c", code).stdout)
    assert prefix == "/app/.venv" and found == []
    assert all(name.startswith("nvidia_ml_py-") for name in nvidia), nvidia  # bentoml's NVML bindings only
    info = httpx.post(f"{container.url}/predict", files={"image": ("x", images.grayscale_jpeg())}, timeout=60)
    assert info.status_code == 200 and info.json()["model"]["runtime"] == "openvino"
    assert info.json()["model"]["precision"] == "fp32"


@cpu_image
@pytest.mark.parametrize(
    "data", [images.grayscale_jpeg(), images.twelve_megapixel_jpeg()], ids=["grayscale-jpeg", "12mp-jpeg"]
)
def test_int8_predict_equals_bentoml_serve(int8_container: Container, int8_reference: Server, data: bytes) -> None:
    """The image's INT8 model (the store's resnet18-int8, packed into the bento) answers as `bentoml serve`'s."""
    files = {"image": ("x", data)}
    got = httpx.post(f"{int8_container.url}/predict", files=files, timeout=120)
    expected = httpx.post(f"{int8_reference.url}/predict", files=files, timeout=120)
    assert got.status_code == expected.status_code == 200, got.text
    assert got.json() == expected.json()
    model = got.json()["model"]
    assert (model["runtime"], model["precision"]) == ("openvino", "int8") and model["tag"].startswith("resnet18-int8:")


@pytest.mark.parametrize(
    "data",
    [images.png_with_alpha(), images.grayscale_jpeg(), images.cmyk_jpeg(), images.twelve_megapixel_jpeg()],
    ids=["png-alpha", "grayscale-jpeg", "cmyk-jpeg", "12mp-jpeg"],
)
def test_predict_equals_bentoml_serve(container: Container, reference: Server, data: bytes) -> None:
    files = {"image": ("x", data)}
    got = httpx.post(f"{container.url}/predict", files=files, timeout=120)
    expected = httpx.post(f"{reference.url}/predict", files=files, timeout=120)
    assert got.status_code == expected.status_code == 200, got.text
    assert got.json() == expected.json()


def test_classify_equals_bentoml_serve(container: Container, reference: Server) -> None:
    batch = [("images", (f"{i}", data)) for i, data in enumerate([images.palette_gif(), images.animated_gif()])]
    got = httpx.post(f"{container.url}/classify", files=batch, timeout=120)
    expected = httpx.post(f"{reference.url}/classify", files=batch, timeout=120)
    assert got.status_code == expected.status_code == 200, got.text
    assert got.json() == expected.json()
    assert len(got.json()) == 2


@pytest.mark.parametrize(
    ("path", "request_kwargs", "status"),
    [
        ("/predict", {"files": {"image": ("x", b"not an image at all")}}, 422),
        ("/predict", {"files": {"image": ("x", images.truncated_jpeg())}}, 422),
        ("/predict", {"files": {"picture": ("x", images.grayscale_jpeg())}}, 400),
        ("/predict", {"content": b'{"image": "x"}', "headers": {"content-type": "application/json"}}, 400),
        ("/classify", {"data": {"images": "http://169.254.169.254/latest/meta-data/"}}, 400),
        ("/predict", {"files": {"image": ("x", images.decompression_bomb_png())}}, 413),
    ],
    ids=["not-an-image", "truncated-jpeg", "wrong-field", "json-body", "url-instead-of-file", "bomb"],
)
def test_bad_input_gets_4xx_json(container: Container, path: str, request_kwargs: dict[str, Any], status: int) -> None:
    response = httpx.post(f"{container.url}{path}", timeout=60, **request_kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]
