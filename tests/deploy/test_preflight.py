"""`python -m deploy` stops at preflight, before any side effect, and names the fix: no Pulumi CLI, a
vCPU quota below what the stack may run, untrained weights. Recorders stand in for aws, pulumi and the
container engine (which refuses everything but `info`), so a side effect would show in their log."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.deploy import fake_cli
from tests.deploy.conftest import (
    ACCOUNT,
    INSTANCE_TYPE,
    aws_region_problems,
    deploy_env,
    pulumi_stack_problems,
    run_deploy,
    store_entry,
    write_stack_file,
)

READ_ONLY = {
    ("aws", "sts", "get-caller-identity"),
    ("aws", "service-quotas", "get-service-quota"),
    ("pulumi", "version"),
    ("pulumi", "stack", "ls"),
    ("podman", "info"),
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    homes = {"trained": tmp_path_factory.mktemp("trained-home"), "untrained": tmp_path_factory.mktemp("untrained")}
    store_entry(homes["trained"], trained=True)
    store_entry(homes["untrained"], trained=False)
    return homes


def preflight_run(
    tmp_path: Path,
    home: Path,
    quota: float = 1000,
    programs: tuple[str, ...] = ("aws", "pulumi", "podman"),
    passes: bool = False,
) -> tuple[int, str, list[list[str]], Path]:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    fake_cli.install(bin_dir, state, {"account": ACCOUNT, "quota": quota}, programs)
    stack_file = write_stack_file(tmp_path, max_size=10)
    # PATH: the recorders only, so neither a real pulumi nor a real engine on this machine is found.
    result = run_deploy(deploy_env(bin_dir, home, path=""), "--stack-file", str(stack_file), timeout=300)
    calls = fake_cli.calls(state)
    assert not aws_region_problems(calls) and not pulumi_stack_problems(calls, stack_file)
    if passes:
        return result.returncode, result.stdout + result.stderr, calls, stack_file
    side_effects = [c for c in calls if not any(tuple(c[: len(p)]) == p for p in READ_ONLY)]
    assert side_effects == [], f"side effects before preflight passed: {side_effects}"
    assert not (home / "bentos").exists() or not any((home / "bentos").iterdir()), "a bento was built"
    return result.returncode, result.stdout + result.stderr, calls, stack_file


def test_all_checks_pass_with_a_trained_model(tmp_path: Path) -> None:
    # Past preflight the bento is built (from the store's empty stand-in entry); the recording podman
    # then refuses the image build, and the deploy stops there with the command and how to resume.
    store_entry(tmp_path / "home", trained=True)  # its own store: this test builds a bento into it
    code, output, calls, _ = preflight_run(tmp_path, tmp_path / "home", passes=True)
    assert "FAIL" not in output.split("[1] bento")[0], output
    assert code == 1 and "re-run the same command to resume" in output, output
    assert [c[:2] for c in calls if c[0] == "podman"] == [["podman", "info"], ["podman", "image"], ["podman", "build"]]
    for name in ("Pulumi CLI", "Pulumi backend", "AWS credentials", "vCPU quota", "container engine", "model weights"):
        assert f"ok   {name}" in output, output


def test_no_pulumi_on_path(tmp_path: Path, stores: dict[str, Path]) -> None:
    code, output, calls, _ = preflight_run(tmp_path, stores["trained"], programs=("aws", "podman"))
    assert code == 2, output
    assert "FAIL Pulumi CLI: pulumi is not on PATH" in output
    assert "fix: install the Pulumi CLI" in output and "get.pulumi.com" in output
    assert "nothing was built or changed" in output
    assert not [c for c in calls if c[0] == "pulumi"]


def test_quota_too_small(tmp_path: Path, stores: dict[str, Path]) -> None:
    from infra.instance_types import INSTANCE_TYPES

    vcpus = INSTANCE_TYPES[INSTANCE_TYPE].vcpus
    needed = 10 * vcpus  # maxSize 10
    code, output, calls, _ = preflight_run(tmp_path, stores["trained"], quota=needed - 1)
    assert code == 2, output
    quota_calls = [c for c in calls if c[1:3] == ["service-quotas", "get-service-quota"]]
    code_asked = quota_calls[0][quota_calls[0].index("--quota-code") + 1]
    assert code_asked == ("L-1216C47A" if INSTANCE_TYPE.startswith("c") else "L-DB2E81BA")
    assert "FAIL vCPU quota" in output and f"the stack may run {needed}" in output, output
    assert f"--quota-code {code_asked} --desired-value {needed} --region eu-west-3" in output


def test_untrained_weights(tmp_path: Path, stores: dict[str, Path]) -> None:
    code, output, _, _ = preflight_run(tmp_path, stores["untrained"])
    assert code == 2, output
    assert "FAIL model weights" in output and "UNTRAINED" in output
    assert "python -m service.import_model --weights imagenet" in output and "--allow-untrained" in output


def test_no_model_at_all(tmp_path: Path) -> None:
    code, output, _, _ = preflight_run(tmp_path, tmp_path / "empty-home")
    assert code == 2 and "FAIL model weights: no resnet18 model" in output, output


def test_a_stack_file_without_region_stops_before_any_call(tmp_path: Path, stores: dict[str, Path]) -> None:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    fake_cli.install(bin_dir, state, {"account": ACCOUNT, "quota": 1000})
    stack_file = tmp_path / "Pulumi.rehearsal.yaml"
    stack_file.write_text("config:\n  elastic-resnet:imageTag: latest\n")
    result = run_deploy(deploy_env(bin_dir, stores["trained"], path=""), "--stack-file", str(stack_file))
    assert result.returncode == 2
    assert "sets no aws:region" in result.stdout and "pulumi config set aws:region" in result.stdout
    assert fake_cli.calls(state) == []


def test_launch_instances_false_is_refused(tmp_path: Path, stores: dict[str, Path]) -> None:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    fake_cli.install(bin_dir, state, {"account": ACCOUNT, "quota": 1000}, ("aws", "pulumi", "podman"))
    stack_file = write_stack_file(tmp_path, launchInstances=False)
    result = run_deploy(deploy_env(bin_dir, stores["trained"], path=""), "--stack-file", str(stack_file))
    assert result.returncode == 2, result.stdout
    assert "FAIL stack configuration" in result.stdout
    assert "pulumi config rm elastic-resnet:launchInstances --stack rehearsal" in result.stdout


def test_env_is_not_leaking_a_real_cli() -> None:
    assert "DEPLOY_FAKE_STATE" not in os.environ
