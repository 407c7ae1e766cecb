"""The deploy rehearsed on this machine: `python -m deploy` for real (model import, bento, podman image,
push to a real local registry started here, a pull of that tag and a hardened `podman run`, /readyz and
/predict), with only `aws` and `pulumi` replaced by recorders (tests/deploy/fake_cli.py) whose every call
is checked: the stack's region on every aws call, the stack on every pulumi call, one immutable tag.

Four runs of the same command, as a user would make them:
1. a first deploy that fails at the ECR login (after bento and image, and the first `pulumi up` that
   creates the repository without instances);
2. re-run: resumes (bento, image, stack, repository skipped), pushes, and fails at `pulumi up`;
3. re-run: resumes (the pushed tag skipped), `pulumi up` launches the "instance" (the fake pulls the tag
   and runs it as the user data does), smoke test passes: live;
4. a later deploy with nothing changed: every build step skipped, live again.

One image build per session (3-5 minutes on 2 cores). Needs podman, runc, debootstrap and Debian's
docker-registry: tests/deploy/setup.sh installs them (CI runs it); without them the module is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.servers import free_port
from deploy.smoke import photo_jpeg
from infra.container import STOP_TIMEOUT_S
from tests.conftest import import_model
from tests.deploy import fake_cli
from tests.deploy.conftest import (
    ACCOUNT,
    INSTANCE_TYPE,
    STACK,
    aws_region_problems,
    deploy_env,
    pulumi_stack_problems,
    run_deploy,
    write_stack_file,
)
from tests.server import REPO

pytestmark = pytest.mark.build

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
CONTAINERS_CONF = REPO / "container" / "containers.conf"  # this sandbox's podman settings (docs/container.md)
VARIANT = "cpu" if INSTANCE_TYPE.startswith("c") else "gpu"
FAILURES = (["aws ecr get-login-password"], ["pulumi up launch"], [], [])


@dataclass(frozen=True)
class Run:
    code: int
    output: str
    calls: list[list[str]]


@dataclass(frozen=True)
class Rehearsal:
    runs: list[Run]
    registry: str
    repository: str
    endpoint: str
    container: str
    stack_file: Path

    @property
    def calls(self) -> list[list[str]]:
        return [call for run in self.runs for call in run.calls]

    @property
    def image_tag(self) -> str:
        tags = [c[4] for c in self.calls if c[:4] == ["pulumi", "config", "set", "elastic-resnet:imageTag"]]
        assert tags and len(set(tags)) == 1, tags
        return tags[0]


def podman(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True, check=check)


def registry_get(registry: str, path: str) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://{registry}/v2/{path}", headers={"Accept": fake_cli.MANIFEST_TYPES})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except OSError:  # not listening yet
        return 0, b""


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory, weights_file: Path) -> Iterator[Rehearsal]:
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    missing += [] if REGISTRY_BINARY.exists() else ["docker-registry"]
    if missing:
        pytest.skip(f"the deploy rehearsal needs {', '.join(missing)}: run tests/deploy/setup.sh")
    subprocess.run([str(REPO / "container" / "base-image.sh")], check=True, capture_output=True)  # no-op once built

    root = tmp_path_factory.mktemp("rehearsal")
    home = root / "bentoml"
    import_model(home, str(weights_file))  # the real import command, stand-in weights (no internet here)

    # The real registry standing in for ECR, plain HTTP on loopback (podman is told it is insecure).
    port = free_port()
    registry = f"127.0.0.1:{port}"
    config = root / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'registry'}\n"
        f"http:\n  addr: {registry}\n"
    )
    (root / "registries.conf").write_text(f'[[registry]]\nlocation = "{registry}"\ninsecure = true\n')
    registry_log = (root / "registry.log").open("w")
    server = subprocess.Popen([str(REGISTRY_BINARY), "serve", str(config)], stdout=registry_log, stderr=registry_log)

    repository = f"elastic-resnet-{STACK}"
    endpoint_port = free_port()
    container = f"deploy-rehearsal-{endpoint_port}"
    bin_dir, state = root / "bin", root / "state"
    settings = {
        "account": ACCOUNT,
        "quota": 64,
        "registry": registry,
        "repository": repository,
        "endpoint_port": endpoint_port,
        "container": container,
    }
    fake_cli.install(bin_dir, state, settings)
    stack_file = write_stack_file(root)
    env = {
        **deploy_env(bin_dir, home),
        "CONTAINERS_CONF": str(CONTAINERS_CONF),
        "CONTAINERS_REGISTRIES_CONF": str(root / "registries.conf"),
        "REGISTRY_AUTH_FILE": str(root / "auth.json"),  # the ECR login's credentials stay in the test
    }
    args = ["--stack-file", str(stack_file), "--engine", "podman", "--smoke-timeout", "300"]
    # What podman's builder can do inside this sandbox (container/build.sh does the same).
    args += ["--containerize-opt", "isolation=chroot", "--containerize-opt", "network=host"]
    runs = []
    try:
        deadline = time.monotonic() + 30
        while registry_get(registry, "")[0] != 200:
            assert time.monotonic() < deadline and server.poll() is None, (root / "registry.log").read_text()
            time.sleep(0.2)
        for failures in FAILURES:
            (state / "fail.json").write_text(json.dumps(failures))
            before = len(fake_cli.calls(state))
            result = run_deploy(env, *args)
            print(result.stdout[-4000:], result.stderr[-2000:])
            runs.append(Run(result.returncode, result.stdout + result.stderr, fake_cli.calls(state)[before:]))
        yield Rehearsal(runs, registry, repository, f"http://127.0.0.1:{endpoint_port}", container, stack_file)
    finally:
        podman("rm", "--force", "--time", "0", container)
        for call in fake_cli.calls(state):
            if call[:4] == ["pulumi", "config", "set", "elastic-resnet:imageTag"]:
                podman("rmi", "--force", f"{registry}/{repository}:{call[4]}", f"elastic-resnet-{VARIANT}:{call[4]}")
                podman("rmi", "--force", f"elastic-resnet:{call[4]}")
        server.terminate()
        server.wait(timeout=30)


def test_first_deploy_builds_creates_the_repository_and_stops_at_the_failed_login(rehearsal: Rehearsal) -> None:
    first = rehearsal.runs[0]
    assert first.code == 1, first.output
    assert re.search(r"bento: done \(", first.output) and re.search(r"image: done \(", first.output), first.output
    assert "first deploy: `pulumi up` with launchInstances=false" in first.output
    pulumi = [c[1:4] for c in first.calls if c[0] == "pulumi"]
    assert pulumi == [
        ["version"],
        ["stack", "ls", "--json"],
        ["stack", "init", "--stack"],
        ["config", "set", "elastic-resnet:launchInstances"],
        ["up", "--yes", "--non-interactive"],
        ["config", "rm", "elastic-resnet:launchInstances"],  # restored even though later steps fail
    ]
    assert [c[1:3] for c in first.calls if c[0] == "aws"][-1] == ["ecr", "get-login-password"]
    assert "re-run the same command to resume" in first.output


def test_second_run_resumes_pushes_and_stops_at_the_failed_pulumi_up(rehearsal: Rehearsal) -> None:
    second = rehearsal.runs[1]
    assert second.code == 1, second.output
    for step in ("bento", "image"):
        assert f"{step}: skipped: already built" in second.output, second.output
    assert "stack: skipped: exists" in second.output and "registry: skipped: exists" in second.output
    assert re.search(r"push: done \(", second.output), second.output
    assert not [c for c in second.calls if c[1:2] == ["config"] and "elastic-resnet:launchInstances" in c]


def test_third_run_skips_the_pushed_tag_and_goes_live(rehearsal: Rehearsal) -> None:
    third = rehearsal.runs[2]
    assert third.code == 0, third.output
    assert "push: skipped: the tag is in the repository" in third.output
    assert not [c for c in third.calls if c[1:3] == ["ecr", "get-login-password"]]
    assert f"live: {rehearsal.endpoint}" in third.output
    assert re.search(r"smoke: ready after \d+ s; /predict 200", third.output), third.output


def test_a_later_deploy_is_the_same_command_and_skips_every_build(rehearsal: Rehearsal) -> None:
    later = rehearsal.runs[3]
    assert later.code == 0, later.output
    for skipped in ("bento: skipped", "image: skipped", "stack: skipped", "registry: skipped", "push: skipped"):
        assert skipped in later.output
    assert ["up", "--yes", "--non-interactive"] in [c[1:4] for c in later.calls]


def test_every_aws_call_names_the_stacks_region_and_every_pulumi_call_the_stack(rehearsal: Rehearsal) -> None:
    calls = rehearsal.calls
    assert {c[0] for c in calls} == {"aws", "pulumi"} and len(calls) > 30
    assert aws_region_problems(calls) == []
    assert pulumi_stack_problems(calls, rehearsal.stack_file) == []


def test_the_tag_is_immutable_pushed_and_the_one_released(rehearsal: Rehearsal) -> None:
    tag = rehearsal.image_tag
    assert re.fullmatch(rf"[0-9a-f]{{16}}-{VARIANT}", tag), tag
    status, body = registry_get(rehearsal.registry, f"{rehearsal.repository}/tags/list")
    assert status == 200 and json.loads(body)["tags"] == [tag]  # never `latest`
    assert registry_get(rehearsal.registry, f"{rehearsal.repository}/manifests/{tag}")[0] == 200
    described = [c for c in rehearsal.calls if c[1:3] == ["ecr", "describe-images"]]
    assert {c[c.index("--image-ids") + 1] for c in described} == {f"imageTag={tag}"}


def test_the_pulled_tag_runs_hardened_and_answers(rehearsal: Rehearsal) -> None:
    info = json.loads(podman("inspect", rehearsal.container, check=True).stdout)[0]
    assert info["ImageName"] == f"{rehearsal.registry}/{rehearsal.repository}:{rehearsal.image_tag}"
    host = info["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert "no-new-privileges" in " ".join(host.get("SecurityOpt") or [])
    assert len(host["CapDrop"]) > 10 and not host.get("CapAdd")
    assert info["Config"]["StopTimeout"] == STOP_TIMEOUT_S
    assert httpx.get(f"{rehearsal.endpoint}/readyz", timeout=30).status_code == 200
    answer = httpx.post(
        f"{rehearsal.endpoint}/predict", files={"image": ("photo.jpg", photo_jpeg(), "image/jpeg")}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    assert {"label", "score", "class_id"} <= set(answer.json())
