"""What is deployed where: the stack, its stack file and configuration, its region and instance kind."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from infra.config import CONFIG_NAMESPACE, ConfigError, StackConfig, from_cli_values, stack_file_cli_values
from infra.instance_types import InstanceKind, InstanceType

REPO = Path(__file__).resolve().parent.parent


class TargetError(ValueError):
    """The stack cannot be deployed as configured; the message says what to change."""


@dataclass(frozen=True)
class Target:
    stack: str
    stack_file: Path
    repo_root: Path
    config: StackConfig

    @property
    def region(self) -> str:
        return self.config.region

    @property
    def instance(self) -> InstanceType:
        return self.config.fleet.instance

    @property
    def kind(self) -> InstanceKind:
        return self.config.fleet.kind

    @property
    def bentofile(self) -> Path:
        return self.repo_root / self.kind.bentofile

    @property
    def repository_name(self) -> str:
        """The stack's ECR repository (infra/stack.py: ImageRegistry named after the stack)."""
        return self.config.name

    @property
    def default_stack_file(self) -> bool:
        """Whether pulumi finds the stack file itself (Pulumi.<stack>.yaml next to Pulumi.yaml)."""
        return self.stack_file.resolve() == (self.repo_root / f"Pulumi.{self.stack}.yaml").resolve()

    def pulumi_stack_args(self, config_file: bool = True) -> list[str]:
        """``--stack`` on every pulumi call about the stack, and the stack file when it is not the default."""
        args = ["--stack", self.stack]
        if config_file and not self.default_stack_file:
            args += ["--config-file", str(self.stack_file)]
        return args

    def config_key(self, key: str) -> str:
        return f"{CONFIG_NAMESPACE}:{key}"


def project_name(repo_root: Path) -> str:
    spec = yaml.safe_load((repo_root / "Pulumi.yaml").read_text()) or {}
    return str(spec.get("name", CONFIG_NAMESPACE))


def load_target(stack: str, stack_file: Path | None = None, repo_root: Path = REPO) -> Target:
    """The stack file read as `pulumi up` reads it (infra/config.py); its region is required."""
    path = stack_file or repo_root / f"Pulumi.{stack.split('/')[-1]}.yaml"
    if not path.is_file():
        raise TargetError(
            f"no stack file {path}: create the stack's configuration first, e.g. `cp Pulumi.dev.yaml {path.name}` "
            f"and edit it, or `pulumi stack init {stack} && pulumi config set aws:region REGION --stack {stack}`"
        )
    region, values = stack_file_cli_values(path)
    if not region:
        raise TargetError(
            f"{path.name} sets no aws:region: every aws call and `pulumi up` need it: "
            f"`pulumi config set aws:region us-east-1 --stack {stack}`"
        )
    try:
        config = from_cli_values(values, project_name(repo_root), stack.split("/")[-1], region)
    except ConfigError as exc:
        raise TargetError(f"{path.name}: {exc}") from None
    return Target(stack=stack, stack_file=path, repo_root=repo_root, config=config)
