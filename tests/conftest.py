from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision

from container import stand_in_weights
from tests import images
from tests.server import REPO, Server, bentoml_serve

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


def import_model(bentoml_home: Path, weights: str) -> str:
    """Run the real import command into an isolated model store; returns the new tag."""
    result = subprocess.run(
        [sys.executable, "-m", "service.import_model", "--weights", weights],
        cwd=REPO,
        env={**os.environ, "BENTOML_HOME": str(bentoml_home)},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision-format ResNet18 state dict made here (ImageNet weights can't be downloaded).

    Random weights with non-trivial batch-norm statistics, so the logits are spread out and a wrong
    preprocessing step changes the answer."""
    path = tmp_path_factory.mktemp("weights") / "resnet18-test.pth"
    stand_in_weights.main(str(path))  # the same seeded weights the container image is built with
    return path


@pytest.fixture(scope="session")
def reference_model(weights_file: Path) -> torch.nn.Module:
    """The eager torchvision reference: the same weights, loaded the plain way."""
    model = torchvision.models.resnet18(weights=None)
    model.load_state_dict(torch.load(weights_file, weights_only=True))
    return model.eval()


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory, weights_file: Path) -> tuple[Path, str]:
    """A BentoML home whose model store holds the test weights, imported by the real command."""
    home = tmp_path_factory.mktemp("bentoml-home")
    return home, import_model(home, str(weights_file))


@pytest.fixture(scope="session")
def server(model_store: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The service as users run it, on CPU in fp32, serving the store's model."""
    home, _ = model_store
    env = {
        "BENTOML_HOME": str(home),
        "RESNET18_PRECISION": "fp32",
        "RESNET18_DEVICE": "cpu",
        "RESNET18_MAX_REQUEST_BYTES": str(8 * 1024 * 1024),
        "RESNET18_MAX_IMAGES_PER_REQUEST": "16",
    }
    with bentoml_serve(env, tmp_path_factory.mktemp("logs") / "server.log") as running:
        yield running


@pytest.fixture(scope="session")
def twelve_mp_jpeg() -> bytes:
    return images.twelve_megapixel_jpeg()


@pytest.fixture(scope="session")
def bomb_png() -> bytes:
    return images.decompression_bomb_png()
