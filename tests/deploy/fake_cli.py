"""Recorders for the two programs the rehearsal cannot run against AWS: ``aws`` and ``pulumi``.

``fake_cli.py PROGRAM ARGS...``, installed as executables named ``aws`` and ``pulumi`` first on PATH
(:func:`install`). Each call's argv is appended to ``calls.jsonl`` in the state folder
(``DEPLOY_FAKE_STATE``); the answer is what the real CLI would print, from a small state
(``state.json``) and the real local registry standing in for ECR:

- ``aws ecr describe-repositories``: RepositoryNotFoundException until a ``pulumi up`` created it;
- ``aws ecr describe-images``: asks the local registry whether the tag's manifest exists;
- ``pulumi up`` with instances: does what an instance's user data does, against the local registry:
  removes the local copy of the tag, pulls it, runs it with infra/container.py's hardened flags
  (podman) and publishes it on the port ``pulumi stack output`` reports as the endpoint;
- ``podman`` (preflight tests only): answers ``info``, refuses anything else;
- ``fail.json``: a list of calls (``"aws ecr get-login-password"``, ``"pulumi up launch"``) that fail
  once, to stop a deploy in the middle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from infra.container import hardened_run_flags  # noqa: E402

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def install(
    bin_dir: Path, state_dir: Path, settings: dict[str, Any], programs: tuple[str, ...] = ("aws", "pulumi")
) -> None:
    """Executables (``aws``, ``pulumi``; ``podman`` for tests that must not build) in ``bin_dir`` that run
    this file with ``state_dir``'s settings."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "settings.json").write_text(json.dumps(settings))
    for program in programs:
        script = bin_dir / program
        script.write_text(
            f'#!/bin/sh\nDEPLOY_FAKE_STATE="{state_dir}" exec "{sys.executable}" "{Path(__file__).resolve()}" '
            f'{program} "$@"\n'
        )
        script.chmod(0o755)


def calls(state_dir: Path) -> list[list[str]]:
    path = state_dir / "calls.jsonl"
    return [json.loads(line)["argv"] for line in path.read_text().splitlines()] if path.exists() else []


class Fake:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.settings: dict[str, Any] = json.loads((state_dir / "settings.json").read_text())
        state_file = state_dir / "state.json"
        self.state: dict[str, Any] = (
            json.loads(state_file.read_text()) if state_file.exists() else {"config": {}, "stacks": [], "repo": False}
        )

    def save(self) -> None:
        (self.dir / "state.json").write_text(json.dumps(self.state))

    def fails_once(self, name: str) -> bool:
        path = self.dir / "fail.json"
        pending: list[str] = json.loads(path.read_text()) if path.exists() else []
        if name not in pending:
            return False
        pending.remove(name)
        path.write_text(json.dumps(pending))
        return True

    @property
    def repository_uri(self) -> str:
        return f"{self.settings['registry']}/{self.settings['repository']}"

    # -- aws -----------------------------------------------------------------------------------------
    def aws(self, args: list[str]) -> int:
        command = " ".join(args[:2])
        if self.fails_once(f"aws {command}"):
            print(f"An error occurred (ServiceUnavailable) when calling {command}: rehearsed failure", file=sys.stderr)
            return 254
        if command == "sts get-caller-identity":
            account = self.settings["account"]
            print(json.dumps({"UserId": "AIDAREHEARSAL", "Account": account, "Arn": f"arn:aws:iam::{account}:user/r"}))
        elif command == "service-quotas get-service-quota":
            code = args[args.index("--quota-code") + 1]
            print(json.dumps({"Quota": {"QuotaCode": code, "ServiceCode": "ec2", "Value": self.settings["quota"]}}))
        elif command == "ecr describe-repositories":
            if not self.state["repo"]:
                print(
                    "An error occurred (RepositoryNotFoundException) when calling the DescribeRepositories "
                    "operation: The repository with name 'x' does not exist in the registry",
                    file=sys.stderr,
                )
                return 254
            name = self.settings["repository"]
            print(json.dumps({"repositories": [{"repositoryName": name, "repositoryUri": self.repository_uri}]}))
        elif command == "ecr describe-images":
            tag = args[args.index("--image-ids") + 1].removeprefix("imageTag=")
            if not self.registry_has(tag):
                print(
                    "An error occurred (ImageNotFoundException) when calling the DescribeImages operation: "
                    f"The image with imageId {{imageTag:'{tag}'}} does not exist",
                    file=sys.stderr,
                )
                return 254
            print(json.dumps({"imageDetails": [{"imageTags": [tag]}]}))
        elif command == "ecr get-login-password":
            print("rehearsal-password")
        else:
            print(f"fake aws: unexpected call {args}", file=sys.stderr)
            return 252
        return 0

    def registry_has(self, tag: str) -> bool:
        url = f"http://{self.settings['registry']}/v2/{self.settings['repository']}/manifests/{tag}"
        request = urllib.request.Request(url, method="HEAD", headers={"Accept": MANIFEST_TYPES})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status == 200
        except urllib.error.HTTPError:
            return False

    # -- pulumi --------------------------------------------------------------------------------------
    def pulumi(self, args: list[str]) -> int:
        if args[:1] == ["version"]:
            print("v3.190.0")
        elif args[:2] == ["stack", "ls"]:
            print(json.dumps([{"name": name, "current": False} for name in self.state["stacks"]]))
        elif args[:2] == ["stack", "init"]:
            self.state["stacks"].append(args[args.index("--stack") + 1])
        elif args[:2] == ["config", "set"]:
            self.state["config"][args[2]] = args[3]
        elif args[:2] == ["config", "rm"]:
            self.state["config"].pop(args[2], None)
        elif args[:1] == ["up"]:
            return self.up()
        elif args[:3] == ["stack", "output", "--json"]:
            print(
                json.dumps(
                    {
                        "endpoint_url": f"http://127.0.0.1:{self.settings['endpoint_port']}",
                        "ecr_repository_url": self.repository_uri,
                    }
                )
            )
        else:
            print(f"fake pulumi: unexpected call {args}", file=sys.stderr)
            return 255
        self.save()
        return 0

    def up(self) -> int:
        self.state["repo"] = True  # the program creates the repository whether instances launch or not
        self.save()
        if self.state["config"].get("elastic-resnet:launchInstances") == "false":
            print("Resources: + 60 created (instances held back)")
            return 0
        if self.fails_once("pulumi up launch"):
            print("error: waiting for Auto Scaling Group capacity: rehearsed failure", file=sys.stderr)
            return 255
        tag = self.state["config"].get("elastic-resnet:imageTag", "latest")
        image = f"{self.repository_uri}:{tag}"
        if self.state.get("running") == image:
            print("Resources: 62 unchanged")
            return 0
        # What the user data does on an instance (infra/templates/user-data.sh.j2), with podman here.
        name = self.settings["container"]
        podman = ["podman"]
        subprocess.run([*podman, "rmi", image], capture_output=True)  # the pull below must fetch the tag
        subprocess.run([*podman, "pull", image], check=True)
        subprocess.run([*podman, "rm", "--force", name], capture_output=True)
        subprocess.run(
            [
                *podman, "run", "--detach", "--name", name, *hardened_run_flags("podman"),
                "--publish", f"127.0.0.1:{self.settings['endpoint_port']}:3000", "--env", "RESNET18_DEVICE=cpu", image,
            ],
            check=True,
        )  # fmt: skip
        self.state["running"] = image
        self.save()
        print(f"Resources: ~ 1 updated (launch template: {image})")
        return 0


def main() -> int:
    program, args = sys.argv[1], sys.argv[2:]
    state_dir = Path(os.environ["DEPLOY_FAKE_STATE"])
    with (state_dir / "calls.jsonl").open("a") as log:
        log.write(json.dumps({"argv": [program, *args]}) + "\n")
    fake = Fake(state_dir)
    if program == "podman":  # preflight tests: `podman info` answers, anything else is refused
        return 0 if args[:1] == ["info"] else 125
    return fake.aws(args) if program == "aws" else fake.pulumi(args)


if __name__ == "__main__":
    sys.exit(main())
