"""Shared by the deploy tests: stack files, model stores and the recorders' environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.server import REPO

STACK = "rehearsal"
REGION = "eu-west-3"  # not the CLI's default region (AWS_DEFAULT_REGION is set to another in the tests)
ACCOUNT = "123456789012"
CPU_BENTOFILE = REPO / "bentofile.cpu.yaml"
# The rehearsal builds the CPU image when its bentofile exists (smaller, and this machine has no GPU).
INSTANCE_TYPE = "c7a.large" if CPU_BENTOFILE.exists() else "g4dn.xlarge"


def write_stack_file(folder: Path, instance_type: str = INSTANCE_TYPE, max_size: int = 3, **extra: Any) -> Path:
    path = folder / f"Pulumi.{STACK}.yaml"
    config: dict[str, Any] = {
        "aws:region": REGION,
        "elastic-resnet:fleet": {
            "instanceType": instance_type,
            "minSize": 1,
            "maxSize": max_size,
            "desiredCapacity": 1,
            "warmPoolMinSize": 0,
        },
        **{f"elastic-resnet:{key}": value for key, value in extra.items()},
    }
    path.write_text(yaml.safe_dump({"config": config}))
    return path


def store_entry(bentoml_home: Path, trained: bool) -> None:
    """A ``resnet18`` entry labelled as service/model/store.py labels imports (no weights: preflight only
    reads the label)."""
    code = (
        "import bentoml\n"
        f"with bentoml.models.create('resnet18', labels={{'trained': '{'yes' if trained else 'no'}'}}, "
        f"metadata={{'weights': '{'file test.pth' if trained else 'untrained (random initialisation)'}'}}): pass\n"
    )
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "BENTOML_HOME": str(bentoml_home)}, check=True)


def deploy_env(bin_dir: Path, bentoml_home: Path, path: str | None = None) -> dict[str, str]:
    """The environment of a deploy under test: recorders first on PATH, an isolated model store, and a
    CLI default region that differs from the stack's (every aws call must name the stack's)."""
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH'] if path is None else path}",
        "BENTOML_HOME": str(bentoml_home),
        "BENTOML_DO_NOT_TRACK": "true",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_REGION": "us-west-2",
    }


def run_deploy(env: dict[str, str], *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy", "--stack", STACK, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def aws_region_problems(calls: list[list[str]]) -> list[list[str]]:
    """aws calls that do not name the stack's region exactly once."""
    return [c for c in calls if c[0] == "aws" and [a for a in c if a == "--region"] != ["--region"]] + [
        c for c in calls if c[0] == "aws" and "--region" in c and c[c.index("--region") + 1] != REGION
    ]


def pulumi_stack_problems(calls: list[list[str]], stack_file: Path) -> list[list[str]]:
    """pulumi calls about the stack without ``--stack rehearsal``, or (config, up) without its stack file."""
    problems = []
    for call in calls:
        if call[0] != "pulumi" or call[1:2] == ["version"] or call[1:3] == ["stack", "ls"]:
            continue
        if (
            "--stack" not in call
            or call[call.index("--stack") + 1] != STACK
            or (
                call[1] in ("config", "up")
                and ("--config-file" not in call or call[call.index("--config-file") + 1] != str(stack_file))
            )
        ):
            problems.append(call)
    return problems
