"""The container contract, against the real image running hardened (podman, CPU). `make image-check`
runs it after `make image`; a plain `pytest` does not collect it (it needs the built image).
ELASTIC_RESNET_VARIANT (container/env.sh's VARIANT) says which image: gpu or cpu."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.servers import free_port
from tests.server import REPO, Server, bentoml_serve

IMAGE = os.environ.get("ELASTIC_RESNET_IMAGE", "")
VARIANT = os.environ.get("ELASTIC_RESNET_VARIANT", "gpu")
if not IMAGE:
    collect_ignore = ["test_image.py"]

CONTAINER = REPO / "container"
BUILD_DIR = Path(os.environ.get("BUILD_DIR", REPO / "build" / ("container-cpu" if VARIANT == "cpu" else "container")))
# The same settings for the container and the `bentoml serve` it is compared with.
SERVICE_ENV = {"RESNET18_DEVICE": "cpu", "RESNET18_PRECISION": "fp32"}
INT8_ENV = {**SERVICE_ENV, "RESNET18_PRECISION": "int8"}  # the CPU image packs resnet18-int8 too


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINER / "containers.conf")}
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True, check=check)


@dataclass
class Container:
    name: str
    url: str
    ready_s: float

    def inspect(self) -> dict[str, object]:
        info: list[dict[str, object]] = json.loads(podman("inspect", self.name).stdout)
        return info[0]

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr


@contextlib.contextmanager
def run_container(name: str, timeout_s: float = 240, env: dict[str, str] = SERVICE_ENV) -> Iterator[Container]:
    """container/run.sh (the hardened flags of infra/container.py), then wait for /readyz."""
    port = free_port()
    env_args = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
    started = time.monotonic()
    subprocess.run([str(CONTAINER / "run.sh"), name, str(port), *env_args], check=True, capture_output=True)
    container = Container(name=name, url=f"http://127.0.0.1:{port}", ready_s=0.0)
    try:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{container.url}/readyz", timeout=2).status_code == 200:
                    break
            state = container.inspect()["State"]
            assert isinstance(state, dict)
            if not state.get("Running"):
                raise RuntimeError(f"container exited ({state.get('ExitCode')}):\n{container.logs()[-4000:]}")
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"not ready after {timeout_s} s:\n{container.logs()[-4000:]}")
            time.sleep(0.5)
        container.ready_s = time.monotonic() - started
        settings = " ".join(f"{key}={value}" for key, value in env.items())
        print(f"\n{IMAGE}: ready {container.ready_s:.1f} s after `podman run` (CPU, hardened, {settings})")
        yield container
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)


@pytest.fixture(scope="session")
def container() -> Iterator[Container]:
    with run_container("elastic-resnet-contract") as running:
        yield running


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`bentoml serve` of this checkout with the model store the image was built from (same weights)."""
    env = {"BENTOML_HOME": str(BUILD_DIR / "bentoml"), **SERVICE_ENV}
    with bentoml_serve(env, tmp_path_factory.mktemp("logs") / "reference.log") as running:
        yield running


@pytest.fixture(scope="session")
def int8_container() -> Iterator[Container]:
    with run_container("elastic-resnet-contract-int8", env=INT8_ENV) as running:
        yield running


@pytest.fixture(scope="session")
def int8_reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"BENTOML_HOME": str(BUILD_DIR / "bentoml"), **INT8_ENV}
    with bentoml_serve(env, tmp_path_factory.mktemp("logs") / "int8-reference.log") as running:
        yield running
