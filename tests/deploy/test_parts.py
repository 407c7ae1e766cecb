"""The deploy's parts without any external program: the bento version, the quota per instance family,
the stack's arguments to pulumi, the runner's progress lines, and the make target."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.commands import Call, SubprocessRunner
from deploy.preflight import QUOTA_G_VT, QUOTA_P, QUOTA_STANDARD, quota_for
from deploy.target import TargetError, load_target
from deploy.version import bento_version, image_tag, packed_files
from infra.instance_types import INSTANCE_TYPES
from tests.deploy.conftest import write_stack_file
from tests.server import REPO


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The files a bento is made from, in a folder of their own."""
    for name in ("bentofile.yaml", "README.md", "requirements.lock.txt", "container/Dockerfile.j2", "Pulumi.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "service", tmp_path / "service", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.md").write_text("not in the bento")
    return tmp_path


def version(clone: Path, models: tuple[str, ...] = ("resnet18:aaa",), variant: str = "gpu") -> str:
    return bento_version(clone, clone / "bentofile.yaml", models, "1.4.40", variant)


def test_the_version_follows_what_the_bento_packs(clone: Path) -> None:
    first = version(clone)
    assert version(clone) == first  # same inputs, same version: a re-run reuses bento, image and tag
    (clone / "docs" / "notes.md").write_text("changed")
    assert version(clone) == first  # not packed
    (clone / "service" / "routes.py").write_text((clone / "service" / "routes.py").read_text() + "\n# changed\n")
    changed = version(clone)
    assert changed != first
    assert version(clone, models=("resnet18:bbb",)) != changed  # new weights imported
    assert version(clone, variant="cpu") != changed
    (clone / "requirements.lock.txt").write_text("torch==0\n")
    assert version(clone) != changed


def test_packed_files_follow_the_bentofile() -> None:
    names = {p.relative_to(REPO).as_posix() for p in packed_files(REPO, REPO / "bentofile.yaml")}
    assert {"service/http_service.py", "requirements.lock.txt", "container/Dockerfile.j2", "README.md"} <= names
    assert not [n for n in names if n.startswith(("infra/", "tests/", "docs/", "deploy/"))]


def test_image_tags_are_immutable_names() -> None:
    assert image_tag("0123456789abcdef", "cpu") == "0123456789abcdef-cpu"


@pytest.mark.parametrize(
    ("family", "quota"), [("g4dn", QUOTA_G_VT), ("g6e", QUOTA_G_VT), ("p5", QUOTA_P), ("c7a", QUOTA_STANDARD)]
)
def test_quota_per_family(family: str, quota: object) -> None:
    types = [t for name, t in INSTANCE_TYPES.items() if name.split(".")[0] == family]
    assert types and {quota_for(t) for t in types} == {quota}


def test_pulumi_gets_the_stack_and_a_non_default_stack_file(tmp_path: Path) -> None:
    target = load_target("rehearsal", write_stack_file(tmp_path), REPO)
    assert target.region == "eu-west-3"
    assert target.pulumi_stack_args() == [
        "--stack",
        "rehearsal",
        "--config-file",
        str(tmp_path / "Pulumi.rehearsal.yaml"),
    ]
    assert target.pulumi_stack_args(config_file=False) == ["--stack", "rehearsal"]
    assert load_target("dev").pulumi_stack_args() == ["--stack", "dev"]  # Pulumi.dev.yaml: pulumi finds it


def test_a_missing_or_invalid_stack_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="no stack file"):
        load_target("nope", repo_root=tmp_path)
    with pytest.raises(TargetError, match="maxSize"):
        load_target("rehearsal", write_stack_file(tmp_path, max_size=0), REPO)


def test_a_long_command_prints_progress_and_logs_its_output(tmp_path: Path) -> None:
    out = io.StringIO()
    code = "import time\nfor i in range(4):\n    print('step', i, flush=True); time.sleep(0.3)"
    result = SubprocessRunner(out, progress_every_s=0.4).run(
        Call((sys.executable, "-c", code), log=tmp_path / "x.log", label="build")
    )
    assert result.ok and "step 3" in (tmp_path / "x.log").read_text()
    assert "... build: " in out.getvalue() and "step" in out.getvalue()


def test_make_deploy_calls_the_module_and_needs_a_stack() -> None:
    dry = subprocess.run(["make", "-n", "deploy", "STACK=dev"], cwd=REPO, capture_output=True, text=True, check=True)
    assert "-m deploy --stack dev" in dry.stdout
    bare = subprocess.run(["make", "deploy"], cwd=REPO, capture_output=True, text=True)
    assert bare.returncode != 0 and "usage: make deploy STACK=" in bare.stderr
    assert subprocess.run([sys.executable, "-m", "deploy", "--help"], cwd=REPO, capture_output=True).returncode == 0
