"""The OpenVINO path runs without torch: the CPU image (bentofile.cpu.yaml) carries no torch or torchvision.

A real `bentoml serve`, every process of it unable to import torch or torchvision (tests/no_torch's
sitecustomize), answers real JPEGs exactly as the normal server does with the same model. Anyone who adds
`import torch` to the request path (the service's modules, preprocessing, the OpenVINO runtime) breaks
these tests before they break the CPU image."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from bench.sample_images import varied_photo
from tests import images
from tests.server import REPO, Server, bentoml_serve

pytestmark = pytest.mark.server

NO_TORCH = REPO / "tests" / "no_torch"
# The `server` fixture's settings (tests/conftest.py): the same model store, OpenVINO fp32 on the CPU.
SETTINGS = {
    "RESNET18_PRECISION": "fp32",
    "RESNET18_DEVICE": "cpu",
    "RESNET18_MAX_REQUEST_BYTES": str(8 * 1024 * 1024),
    "RESNET18_MAX_IMAGES_PER_REQUEST": "16",
}


def without_torch(env: dict[str, str]) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(NO_TORCH), os.environ.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path}


@pytest.fixture(scope="module")
def proof_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("no-torch-proof")


@pytest.fixture(scope="module")
def torchless(
    model_store: tuple[Path, str], proof_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    home, _ = model_store
    env = without_torch({"BENTOML_HOME": str(home), "NO_TORCH_PROOF": str(proof_dir), **SETTINGS})
    with bentoml_serve(env, tmp_path_factory.mktemp("logs") / "no-torch.log") as running:
        yield running


def test_the_blocker_blocks() -> None:
    code = "import torch"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=without_torch(dict(os.environ)), capture_output=True, text=True
    )
    assert result.returncode != 0 and "the CPU image has no torch" in result.stderr


def test_the_service_and_the_openvino_model_load_without_torch(model_store: tuple[Path, str]) -> None:
    """In one process, for a readable failure: the service module and its model on OpenVINO, fp32 and the
    CPU default, with torch and torchvision unimportable."""
    home, _ = model_store
    code = (
        "import sys\n"
        "from service.http_service import ImageClassifier; from service.model_service import LoadedModel\n"
        "model = LoadedModel(ImageClassifier.inner.stored_model, ImageClassifier.inner.int8_model)\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision'})\n"
        "print(model.info.runtime, model.ready, loaded)"
    )
    for precision in ("fp32", "auto"):
        env = without_torch({**os.environ, "BENTOML_HOME": str(home), "RESNET18_PRECISION": precision})
        env.pop("RESNET18_DEVICE", None)  # auto: the CUDA check finds no torch, so no GPU
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.split() == ["openvino", "True", "[]"], result.stdout


def test_a_server_without_torch_answers_as_the_normal_one(torchless: Server, server: Server, proof_dir: Path) -> None:
    # The blocker ran in the server and in every worker process it started.
    root = psutil.Process(torchless.process.pid)
    pids = {root.pid} | {child.pid for child in root.children(recursive=True)}
    assert pids <= {int(p.name) for p in proof_dir.iterdir()}, "a server process started without the blocker"
    assert len(pids) >= 2  # the arbiter and at least one worker
    datas = [images.jpeg(500, 375), images.twelve_megapixel_jpeg(), images.grayscale_jpeg(), varied_photo(7)]
    for data in datas:
        files = {"image": ("photo.jpg", data)}
        got = httpx.post(f"{torchless.url}/predict", files=files, timeout=120)
        expected = httpx.post(f"{server.url}/predict", files=files, timeout=120)
        assert got.status_code == expected.status_code == 200, got.text
        assert got.json() == expected.json()
    assert got.json()["model"]["runtime"] == "openvino"
    batch = [("images", (f"{i}.jpg", varied_photo(seed))) for i, seed in enumerate(range(40, 46))]
    got = httpx.post(f"{torchless.url}/classify", files=batch, timeout=120)
    expected = httpx.post(f"{server.url}/classify", files=batch, timeout=120)
    assert got.status_code == expected.status_code == 200, got.text
    assert got.json() == expected.json()
    assert "No module named 'torch" not in torchless.log_text()


def test_cuda_asked_for_without_torch_is_never_ready_not_a_crash(model_store: tuple[Path, str]) -> None:
    """The CPU image on a host that sets RESNET18_DEVICE=cuda: up, never ready, with the reason (as the GPU
    image without a usable GPU), not an ImportError at start-up."""
    home, _ = model_store
    code = (
        "from service.http_service import ImageClassifier; from service.model_service import LoadedModel\n"
        "model = LoadedModel(ImageClassifier.inner.stored_model, ImageClassifier.inner.int8_model)\n"
        "print(model.ready, model.info.runtime)"
    )
    env = without_torch({**os.environ, "BENTOML_HOME": str(home), "RESNET18_DEVICE": "cuda"})
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["False", "unavailable"]
    assert "CUDA is unusable" in result.stderr and "torch is not installed" in result.stderr


@pytest.mark.parametrize("setting", [{"RESNET18_RUNTIME": "torch"}, {"RESNET18_WEIGHTS": "model.pth"}])
def test_torch_asked_for_without_torch_stops_with_the_fix(
    model_store: tuple[Path, str], setting: dict[str, str]
) -> None:
    """The CPU image told to run torch: start-up (the service's own constructor, as a worker runs it) stops
    with a message naming the fix, not an ImportError."""
    home, _ = model_store
    code = "from service.http_service import ImageClassifier; ImageClassifier.inner()"
    env = without_torch({**os.environ, "BENTOML_HOME": str(home), "RESNET18_DEVICE": "cpu", **setting})
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    assert "SettingsConflict" in result.stderr and "needs torch, which this image does not carry" in result.stderr
    assert "ModuleNotFoundError" not in result.stderr
