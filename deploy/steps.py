"""The deploy's steps, in order; each is skipped when its result already exists, so the same command
makes a first deploy, a later one, and resumes one that failed.

    bento     `bentoml build -f <kind's bentofile> --version V` (V: deploy/version.py)  skip: bento V exists
    image     `python -m container.upstream containerize` (bentoml/BentoML#5566)       skip: image exists locally
    stack     `pulumi stack init`                                                     skip: the stack exists
    registry  first deploy: `pulumi up` with launchInstances=false (ECR, ALB, network) skip: repository exists
    push      ECR login, tag, push REPO:V-<variant>                                    skip: tag in the repository
    release   `pulumi config set elastic-resnet:imageTag V-<variant>`, `pulumi up`    (idempotent)
    smoke     GET /readyz, one POST /predict against the stack's endpoint_url

Every aws call names the stack's region; every pulumi call about the stack names the stack.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from service.auth import keys_in

from .commands import Call, CommandError, Runner, check
from .preflight import Findings
from .smoke import SmokeResult, smoke_test
from .store import packed_model_tags
from .target import Target
from .version import bento_name, bento_version, image_tag

ENDPOINT_OUTPUT = "endpoint_url"  # infra/stack.py's stack outputs
REPOSITORY_OUTPUT = "ecr_repository_url"


@dataclass(frozen=True)
class Options:
    allow_untrained: bool = False
    engine: str | None = None  # docker | podman; None: whichever is installed (docker first)
    containerize_opts: Sequence[str] = ()  # KEY=VALUE, passed to the image builder as --opt
    smoke_timeout_s: float = 900.0
    smoke_image: Path | None = None
    log_dir: Path | None = None  # long commands' output; default build/deploy/<stack>/


@dataclass
class Timings:
    out: TextIO
    steps: list[tuple[str, float, str]] = field(default_factory=list)
    count: int = 0

    @contextlib.contextmanager
    def step(self, name: str, what: str) -> Iterator[list[str]]:
        """Print the step, time it; the body may append a note (e.g. why it was skipped)."""
        self.count += 1
        print(f"[{self.count}] {name}: {what}", file=self.out, flush=True)
        note: list[str] = []
        start = time.monotonic()
        try:
            yield note
        except BaseException:
            elapsed = time.monotonic() - start
            print(f"    {name} FAILED after {elapsed:.1f} s", file=self.out, flush=True)
            raise
        elapsed = time.monotonic() - start
        self.steps.append((name, elapsed, note[0] if note else "done"))
        print(f"    {name}: {note[0] if note else 'done'} ({elapsed:.1f} s)", file=self.out, flush=True)


class Deployment:
    def __init__(self, runner: Runner, target: Target, findings: Findings, options: Options, out: TextIO) -> None:
        assert findings.engine is not None, "preflight picks the engine"
        self.runner = runner
        self.target = target
        self.findings = findings
        self.options = options
        self.out = out
        self.engine = findings.engine
        self.timings = Timings(out)
        self.log_dir = options.log_dir or target.repo_root / "build" / "deploy" / target.stack.replace("/", "-")
        self.variant = target.kind.image_variant
        self.name = bento_name(target.bentofile) or "elastic-resnet"
        import bentoml  # the version BentoML writes the Dockerfile with is part of the bento's version

        self.version = bento_version(
            target.repo_root, target.bentofile, packed_model_tags(), bentoml.__version__, self.variant
        )
        self.bento_tag = f"{self.name}:{self.version}"
        self.image_tag = image_tag(self.version, self.variant)
        self.local_image = f"{self.name}:{self.image_tag}"

    # -- helpers -------------------------------------------------------------------------------------
    def aws(self, *args: str, input: str | None = None) -> Call:
        return Call(("aws", *args, "--region", self.target.region), input=input)

    def pulumi(self, *args: str, log: str | None = None) -> Call:
        # `pulumi config` and `pulumi up` read the stack file; the others take only the stack.
        reads_config = args[0] in ("config", "up")
        return Call(
            ("pulumi", *args, *self.target.pulumi_stack_args(config_file=reads_config)),
            cwd=self.target.repo_root,
            log=self.log_dir / log if log else None,
            label=f"pulumi {args[0]}",
        )

    def python(self, *args: str, log: str, label: str) -> Call:
        # RESNET18_WEIGHTS makes the service declare no stored model, so the bento would pack none.
        return Call(
            (sys.executable, *args),
            cwd=self.target.repo_root,
            env={"RESNET18_WEIGHTS": None, "BENTOML_DO_NOT_TRACK": "true"},
            log=self.log_dir / log,
            label=label,
        )

    # -- steps ---------------------------------------------------------------------------------------
    def build_bento(self) -> None:
        with self.timings.step("bento", f"{self.bento_tag} from {self.target.kind.bentofile}") as note:
            exists = self.runner.run(
                Call((sys.executable, "-m", "bentoml", "get", self.bento_tag, "-o", "json"), cwd=self.target.repo_root)
            )
            if exists.ok:
                note.append("skipped: already built")
                return
            check(
                self.runner,
                self.python(
                    "-m", "bentoml", "build", "-f", str(self.target.bentofile), "--version", self.version,
                    log="bento.log", label="bentoml build",
                ),
            )  # fmt: skip

    def build_image(self) -> None:
        with self.timings.step("image", f"{self.local_image} ({self.engine})") as note:
            if self.runner.run(Call((self.engine, "image", "inspect", self.local_image))).ok:
                note.append("skipped: already built")
                return
            opts = [arg for opt in self.options.containerize_opts for arg in ("--opt", opt)]
            check(
                self.runner,
                self.python(
                    "-m", "container.upstream", "containerize", self.bento_tag, "--backend", self.engine, *opts,
                    "-t", self.local_image, log="image.log", label="containerize",
                ),
            )  # fmt: skip

    def ensure_stack(self) -> None:
        with self.timings.step("stack", f"pulumi stack {self.target.stack}") as note:
            if self.findings.stack_exists:
                note.append("skipped: exists")
                return
            check(self.runner, self.pulumi("stack", "init"))

    def repository_uri(self) -> str | None:
        found = self.runner.run(
            self.aws(
                "ecr", "describe-repositories", "--repository-names", self.target.repository_name, "--output", "json"
            )
        )
        if found.ok:
            return str(json.loads(found.stdout)["repositories"][0]["repositoryUri"])
        if "RepositoryNotFoundException" in found.stderr + found.stdout:
            return None
        raise CommandError(found)

    def ensure_registry(self) -> str:
        with self.timings.step("registry", f"ECR repository {self.target.repository_name}") as note:
            uri = self.repository_uri()
            if uri is not None:
                note.append(f"skipped: exists ({uri})")
                return uri
            # First deploy: the repository comes from the stack; create the stack without instances
            # (they would have no image to pull), push, then launch them.
            flag = self.target.config_key("launchInstances")
            print("    first deploy: `pulumi up` with launchInstances=false (network, ALB, ECR; ~5 min)", file=self.out)
            check(self.runner, self.pulumi("config", "set", flag, "false"))
            try:
                check(self.runner, self.pulumi("up", "--yes", "--non-interactive", log="up-first.log"))
            finally:  # never hides the `pulumi up` error above; a failed rm is said, and the next run redoes it
                removed = self.runner.run(self.pulumi("config", "rm", flag))
                if not removed.ok:
                    print(f"    could not remove {flag} ({removed.stderr.strip()[-200:]})", file=self.out)
            uri = self.repository_uri()
            if uri is None:
                raise RuntimeError(f"`pulumi up` did not create the ECR repository {self.target.repository_name}")
            note.append(f"created {uri}")
            return uri

    def push(self, repository_uri: str) -> str:
        remote = f"{repository_uri}:{self.image_tag}"
        with self.timings.step("push", remote) as note:
            found = self.runner.run(
                self.aws(
                    "ecr", "describe-images", "--repository-name", self.target.repository_name,
                    "--image-ids", f"imageTag={self.image_tag}", "--output", "json",
                )
            )  # fmt: skip
            if found.ok:
                note.append("skipped: the tag is in the repository")
                return remote
            if "ImageNotFoundException" not in found.stderr + found.stdout:
                raise CommandError(found)
            password = check(self.runner, self.aws("ecr", "get-login-password")).stdout.strip()
            host = repository_uri.split("/")[0]
            check(
                self.runner,
                Call((self.engine, "login", "--username", "AWS", "--password-stdin", host), input=password),
            )
            check(self.runner, Call((self.engine, "tag", self.local_image, remote)))
            check(self.runner, Call((self.engine, "push", remote), log=self.log_dir / "push.log", label="push"))
            return remote

    def release(self) -> None:
        with self.timings.step("release", f"imageTag {self.image_tag}, pulumi up") as note:
            check(self.runner, self.pulumi("config", "set", self.target.config_key("imageTag"), self.image_tag))
            check(self.runner, self.pulumi("up", "--yes", "--non-interactive", log="up.log"))
            note.append("done (instances launched or refreshed as needed)")

    def outputs(self) -> dict[str, str]:
        result = check(self.runner, self.pulumi("stack", "output", "--json"))
        return {key: str(value) for key, value in json.loads(result.stdout).items()}

    def api_key(self) -> str | None:
        parameter = self.target.config.access.api_keys_parameter
        if parameter is None:
            return None
        value = check(
            self.runner,
            self.aws(
                "ssm", "get-parameter", "--name", parameter, "--with-decryption", "--query", "Parameter.Value",
                "--output", "text",
            ),
        ).stdout  # fmt: skip
        keys = [key for _, key in keys_in(value)]  # as the service reads them
        if not keys:
            raise RuntimeError(f"the API keys parameter {parameter} holds no key")
        return keys[0]

    def smoke(self, endpoint: str) -> SmokeResult | None:
        with self.timings.step("smoke", f"{endpoint}: GET /readyz, POST /predict") as note:
            if self.target.config.access.internal:
                note.append("skipped: internal load balancer (not reachable from outside the VPC)")
                return None

            def waiting(elapsed: float, last: str) -> None:
                if int(elapsed) % 30 < 5:
                    print(f"    ... not ready after {elapsed:.0f} s ({last})", file=self.out, flush=True)

            result = smoke_test(
                endpoint, self.api_key(), self.options.smoke_timeout_s, waiting, self.options.smoke_image
            )
            note.append(
                f"ready after {result.ready_after_s:.0f} s; /predict {result.status}: {result.label!r} "
                f"({result.score:.3f}) in {result.latency_s * 1000:.0f} ms"
            )
            return result

    def run(self) -> str:
        print(
            f"deploy {self.target.stack}: {self.target.config.fleet.instance_type} ({self.target.kind.name}), "
            f"region {self.target.region}, image tag {self.image_tag}; logs in {self.log_dir}",
            file=self.out,
        )
        self.build_bento()
        self.build_image()
        self.ensure_stack()
        repository = self.ensure_registry()
        self.push(repository)
        self.release()
        outputs = self.outputs()
        if ENDPOINT_OUTPUT not in outputs:
            raise RuntimeError(f"the stack has no {ENDPOINT_OUTPUT!r} output (it has: {', '.join(outputs) or 'none'})")
        endpoint = outputs[ENDPOINT_OUTPUT]
        self.smoke(endpoint)
        return endpoint
