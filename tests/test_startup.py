"""How the service starts: where weights come from, what it refuses, and how it says it is not ready."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

from tests import images
from tests.conftest import import_model
from tests.server import REPO, bentoml_serve

pytestmark = pytest.mark.server


def wait_until_live(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/livez", timeout=2).status_code == 200:
                # live: the worker has loaded (or given up on) its device
                return
        time.sleep(0.5)
    raise TimeoutError(url)


def post_image(url: str) -> httpx.Response:
    return httpx.post(f"{url}/predict", files={"image": ("a.jpg", images.jpeg())}, timeout=60)


def test_weights_that_cannot_be_had_fall_back_to_untrained_loudly(tmp_path: Path) -> None:
    """What `make serve` does on a fresh machine without internet: the ImageNet download fails, so it
    imports untrained weights with a warning, and every answer says so. (A missing path stands in for
    the failed download, so the test behaves the same with or without internet.)"""
    home = tmp_path / "home"
    make_serve_import = ["--weights", "/nonexistent.pth", "--if-missing", "--or-untrained"]
    result = subprocess.run(
        [sys.executable, "-m", "service.import_model", *make_serve_import],
        cwd=REPO,
        env={**os.environ, "BENTOML_HOME": str(home)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "UNTRAINED" in result.stderr
    env = {"BENTOML_HOME": str(home), "RESNET18_DEVICE": "cpu"}
    with bentoml_serve(env, tmp_path / "server.log") as server:
        response = post_image(server.url)
        assert response.status_code == 200, response.text
        model = response.json()["model"]
        assert model["trained"] is False and model["tag"] == result.stdout.strip()
        assert "UNTRAINED" in model["warning"] and "fallback" in model["weights"]
        assert "UNTRAINED WEIGHTS" in server.log_text()


def test_weights_override_from_environment(tmp_path: Path, weights_file: Path) -> None:
    env = {
        "BENTOML_HOME": str(tmp_path / "empty-home"),
        "RESNET18_WEIGHTS": str(weights_file),
        "RESNET18_DEVICE": "cpu",
    }
    with bentoml_serve(env, tmp_path / "server.log") as server:
        model = post_image(server.url).json()["model"]
        assert model["tag"] is None and model["trained"] is True
        assert model["weights"].startswith(f"RESNET18_WEIGHTS={weights_file}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on a machine without a usable GPU")
def test_cuda_asked_for_but_unusable_fails_readiness_clearly(tmp_path: Path) -> None:
    env = {"BENTOML_HOME": str(tmp_path / "empty-home"), "RESNET18_DEVICE": "cuda", "RESNET18_WEIGHTS": "untrained"}
    with bentoml_serve(env, tmp_path / "server.log", wait_ready=False) as server:
        wait_until_live(server.url)
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 503
        response = post_image(server.url)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "CUDA is unusable" in response.json()["error"]
        log = server.log_text()
        assert "CUDA is unusable" in log and "torch 2." in log and "NVIDIA driver" in log


def test_overload_is_shed_with_503_json_and_retry_after(tmp_path: Path, model_store: tuple[Path, str]) -> None:
    """A latency bound far below one forward pass makes BentoML shed queued requests."""
    home, _ = model_store
    env = {"BENTOML_HOME": str(home), "RESNET18_DEVICE": "cpu", "RESNET18_MAX_LATENCY_MS": "1"}
    with bentoml_serve(env, tmp_path / "server.log") as server:
        with ThreadPoolExecutor(max_workers=48) as pool:
            responses = list(pool.map(lambda _: post_image(server.url), range(48)))
        statuses = {r.status_code for r in responses}
        assert statuses <= {200, 503}, statuses
        shed = [r for r in responses if r.status_code == 503]
        assert shed, "nothing was shed"
        for response in shed:
            assert response.headers["retry-after"] == "1"
            assert "overloaded" in response.json()["error"]
        # Once the burst is over, the server answers again.
        assert any(post_image(server.url).status_code == 200 for _ in range(20))


def run_model_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Load the model alone, as a worker process of the service does at start-up."""
    code = (
        "from service.http_service import ImageClassifier; from service.model_service import LoadedModel; "
        "LoadedModel(ImageClassifier.inner.stored_model, ImageClassifier.inner.int8_model)"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "RESNET18_DEVICE": "cpu", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_store_model_fails_startup_never_falls_back(tmp_path: Path) -> None:
    result = run_model_worker({"BENTOML_HOME": str(tmp_path / "empty")})
    assert result.returncode != 0
    assert "WeightsError" in result.stderr and "no 'resnet18' model in the BentoML model store" in result.stderr


def test_bentoml_serve_refuses_to_start_without_a_model(tmp_path: Path) -> None:
    env = {"BENTOML_HOME": str(tmp_path / "empty"), "RESNET18_DEVICE": "cpu"}
    with bentoml_serve(env, tmp_path / "server.log", wait_ready=False) as server:
        assert server.process.wait(timeout=120) != 0
        assert "resnet18" in server.log_text() and "could not be found" in server.log_text()


@pytest.mark.parametrize(
    ("weights", "message"),
    [("/nonexistent/model.pth", "does not exist"), ("garbage", "not a readable torch state dict")],
)
def test_unreadable_weights_fail_startup(tmp_path: Path, weights: str, message: str) -> None:
    if weights == "garbage":
        weights = str(tmp_path / "garbage.pth")
        Path(weights).write_bytes(b"not a checkpoint")
    result = run_model_worker({"BENTOML_HOME": str(tmp_path / "empty"), "RESNET18_WEIGHTS": weights})
    assert result.returncode != 0
    assert message in result.stderr


def test_state_dict_of_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(4, 2).state_dict(), path)
    result = subprocess.run(
        [sys.executable, "-m", "service.import_model", "--weights", str(path)],
        cwd=REPO,
        env={**os.environ, "BENTOML_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "does not fit torchvision's resnet18" in result.stderr


def test_import_if_missing_keeps_the_existing_model(tmp_path: Path, weights_file: Path) -> None:
    home = tmp_path / "home"
    first = import_model(home, str(weights_file))
    again = subprocess.run(
        [sys.executable, "-m", "service.import_model", "--weights", "imagenet", "--if-missing"],
        cwd=REPO,
        env={**os.environ, "BENTOML_HOME": str(home)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert again.stdout.strip() == first  # nothing downloaded, the existing model kept
