"""Checks that fail fast, before anything is built, created or billed; each failure names its fix.

Only read-only calls run here (tests/deploy check it): `pulumi version`, `pulumi stack ls`,
`aws sts get-caller-identity`, `aws service-quotas get-service-quota`, `docker|podman info`, and the
local model store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from infra.instance_types import InstanceType

from .commands import Call, Runner
from .store import StoredModel, stored_model
from .target import Target

PULUMI_INSTALL = (
    "install the Pulumi CLI 3.x (https://www.pulumi.com/docs/iac/download-install/: "
    "curl -fsSL https://get.pulumi.com | sh)"
)
AWS_INSTALL = "install the AWS CLI v2 (https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html)"
ENGINES = ("docker", "podman")


@dataclass(frozen=True)
class Quota:
    code: str
    name: str


# EC2's On-Demand vCPU quotas per instance family class (Service Quotas, service code ec2).
QUOTA_STANDARD = Quota("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances")
QUOTA_G_VT = Quota("L-DB2E81BA", "Running On-Demand G and VT instances")
QUOTA_P = Quota("L-417A185B", "Running On-Demand P instances")


def quota_for(instance: InstanceType) -> Quota:
    family = instance.name.split(".")[0]
    if family.startswith("p"):
        return QUOTA_P
    if family.startswith(("g", "vt")):
        return QUOTA_G_VT
    return QUOTA_STANDARD


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass
class Findings:
    """What the checks learnt that the steps use."""

    checks: list[Check] = field(default_factory=list)
    engine: str | None = None
    stack_exists: bool = False
    account: str | None = None
    model: StoredModel | None = None

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def add(self, name: str, ok: bool, detail: str, fix: str = "") -> bool:
        self.checks.append(Check(name, ok, detail, fix))
        return ok


class PreflightFailed(RuntimeError):
    def __init__(self, findings: Findings) -> None:
        failed = [check for check in findings.checks if not check.ok]
        super().__init__(f"{len(failed)} preflight check(s) failed: " + "; ".join(check.name for check in failed))
        self.findings = findings


def _error_text(stderr: str, stdout: str) -> str:
    text = (stderr.strip() or stdout.strip()).splitlines()
    return text[-1] if text else "no output"


def check_config(target: Target, findings: Findings) -> None:
    config = target.config
    flag = target.config_key("launchInstances")
    findings.add(
        "stack configuration",
        config.launch_instances and config.fleet.image_uri is None,
        f"{target.stack_file.name}: {config.fleet.instance_type}, maxSize {config.fleet.max_size}, "
        f"region {target.region}",
        fix=(
            f"{target.stack_file.name} sets {flag}: false, which launches nothing: a deploy ends at a live endpoint "
            f"(it holds instances back itself on a first deploy): `pulumi config rm {flag} --stack {target.stack}`"
            if not config.launch_instances
            else "fleet.imageUri is set: the deploy pushes to this stack's own ECR repository and sets imageTag: "
            f"`pulumi config rm --path '{target.config_key('fleet.imageUri')}' --stack {target.stack}`"
        ),
    )
    exists = target.bentofile.is_file()
    findings.add(
        "bentofile",
        exists,
        f"{target.kind.bentofile} ({target.kind.name} image, variant {target.kind.image_variant})",
        fix=f"{target.bentofile} is missing: a {target.kind.name} instance type runs the image built from it",
    )


def check_pulumi(runner: Runner, target: Target, findings: Findings) -> None:
    if runner.which("pulumi") is None:
        findings.add("Pulumi CLI", False, "pulumi is not on PATH", fix=PULUMI_INSTALL)
        return
    version = runner.run(Call(("pulumi", "version")))
    if not findings.add("Pulumi CLI", version.ok, version.stdout.strip(), fix=PULUMI_INSTALL):
        return
    stacks = runner.run(Call(("pulumi", "stack", "ls", "--json")))
    if not findings.add(
        "Pulumi backend",
        stacks.ok,
        "logged in" if stacks.ok else _error_text(stacks.stderr, stacks.stdout),
        fix="log in to a state backend: `pulumi login` (Pulumi Cloud), `pulumi login s3://BUCKET` or "
        "`pulumi login --local`",
    ):
        return
    try:
        names = {str(entry.get("name", "")).split("/")[-1] for entry in json.loads(stacks.stdout or "[]")}
    except (json.JSONDecodeError, AttributeError):
        names = set()
    findings.stack_exists = target.stack.split("/")[-1] in names


def check_aws(runner: Runner, target: Target, findings: Findings) -> bool:
    if runner.which("aws") is None:
        findings.add("AWS credentials", False, "aws is not on PATH", fix=AWS_INSTALL)
        return False
    identity = runner.run(Call(("aws", "sts", "get-caller-identity", "--region", target.region, "--output", "json")))
    if identity.ok:
        found = json.loads(identity.stdout)
        findings.account = str(found.get("Account"))
        detail = f"{found.get('Arn')} (account {findings.account}), region {target.region}"
    else:
        detail = _error_text(identity.stderr, identity.stdout)
    return findings.add(
        "AWS credentials",
        identity.ok,
        detail,
        fix="configure credentials: `aws configure`, `aws sso login --profile P` then AWS_PROFILE=P, or "
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (rights: docs/deploy.md, Prerequisites)",
    )


def check_quota(runner: Runner, target: Target, findings: Findings) -> None:
    instance = target.instance
    quota = quota_for(instance)
    needed = target.config.fleet.max_size * instance.vcpus
    result = runner.run(
        Call(
            (
                "aws", "service-quotas", "get-service-quota", "--service-code", "ec2", "--quota-code", quota.code,
                "--region", target.region, "--output", "json",
            )
        )
    )  # fmt: skip
    if not result.ok:
        findings.add(
            "vCPU quota",
            False,
            f"could not read {quota.name} ({quota.code}): {_error_text(result.stderr, result.stdout)}",
            fix="allow servicequotas:GetServiceQuota, or check the quota in the Service Quotas console",
        )
        return
    value = float(json.loads(result.stdout)["Quota"]["Value"])
    findings.add(
        "vCPU quota",
        value >= needed,
        f"{quota.name}: {value:g} vCPUs in {target.region}; the stack may run {needed} "
        f"(maxSize {target.config.fleet.max_size} x {instance.vcpus} vCPUs of {instance.name})",
        fix=f"request at least {needed} vCPUs: `aws service-quotas request-service-quota-increase --service-code ec2 "
        f"--quota-code {quota.code} --desired-value {needed} --region {target.region}` (approval takes hours to days), "
        f"or lower fleet.maxSize to {int(value) // instance.vcpus}",
    )


def check_engine(runner: Runner, findings: Findings, engine: str | None) -> None:
    candidates = (engine,) if engine else ENGINES
    found = next((name for name in candidates if runner.which(name) is not None), None)
    if found is None:
        findings.add(
            "container engine",
            False,
            f"none of {', '.join(candidates)} is on PATH",
            fix="install Docker (https://docs.docker.com/engine/install/) or podman (apt-get install podman)",
        )
        return
    info = runner.run(Call((found, "info")))
    if findings.add(
        "container engine",
        info.ok,
        found if info.ok else f"{found}: {_error_text(info.stderr, info.stdout)}",
        fix=f"start the {found} daemon (`sudo systemctl start {found}`) or add your user to its group",
    ):
        findings.engine = found


def check_weights(findings: Findings, allow_untrained: bool, read: Callable[[], StoredModel | None]) -> None:
    model = read()
    findings.model = model
    importing = "`python -m service.import_model --weights imagenet` (internet) or `--weights PATH.pth`"
    if model is None:
        findings.add(
            "model weights", False, "no resnet18 model in the BentoML model store", fix=f"import weights: {importing}"
        )
        return
    if model.trained:
        findings.add("model weights", True, f"{model.tag}: {model.weights}")
        return
    findings.add(
        "model weights",
        allow_untrained,
        f"{model.tag} holds UNTRAINED weights ({model.weights}): its predictions are random"
        + (", allowed by --allow-untrained" if allow_untrained else ""),
        fix=f"import trained weights: {importing}; or pass --allow-untrained for a smoke deploy",
    )


def preflight(
    runner: Runner,
    target: Target,
    out: TextIO,
    allow_untrained: bool = False,
    engine: str | None = None,
    read_model: Callable[[], StoredModel | None] = stored_model,
) -> Findings:
    """Run every check, print each, raise :class:`PreflightFailed` if any failed."""
    findings = Findings()
    check_config(target, findings)
    check_pulumi(runner, target, findings)
    if check_aws(runner, target, findings):
        check_quota(runner, target, findings)
    check_engine(runner, findings, engine)
    check_weights(findings, allow_untrained, read_model)
    for check in findings.checks:
        print(f"  {'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}", file=out)
        if not check.ok:
            print(f"       fix: {check.fix}", file=out)
    if not findings.ok:
        raise PreflightFailed(findings)
    return findings
