"""Start a real `bentoml serve` of this repo on a free port, wait until it is ready, stop it after."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.servers import REPO, free_port, managed_process

__all__ = ["REPO", "Server", "bentoml_build", "bentoml_serve"]

BENTOML = Path(sys.executable).with_name("bentoml")


@dataclass
class Server:
    url: str
    log: Path
    process: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def bentoml_serve(env: dict[str, str], log: Path, wait_ready: bool = True, timeout_s: float = 180) -> Iterator[Server]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BENTOML), "serve", "--port", str(port), "--host", "127.0.0.1"]
    ready = f"{url}/readyz" if wait_ready else None
    with managed_process(command, {"BENTOML_DO_NOT_TRACK": "true", **env}, log, ready, timeout_s) as process:
        yield Server(url=url, log=log, process=process)


def bentoml_build(home: Path) -> tuple[str, Path]:
    """`bentoml build` of this repo with the model store at ``home``: (bento tag, the bento's folder)."""
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    env.pop("RESNET18_WEIGHTS", None)  # a build packs the store's model
    result = subprocess.run(
        [str(BENTOML), "build", "--output", "tag"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    return tag, home / "bentos" / name / version
