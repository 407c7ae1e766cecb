"""Run the Pulumi program against Pulumi's own mocks and keep every resource it declares.

``run_cli_config`` runs the program as `pulumi up` does: its config comes through Pulumi's config layer
(``pulumi.runtime.set_all_config``) holding exactly what the CLI passes, and it is read by
``infra/__main__.py``'s own ``program()``. The monitor also records the resource options the engine
receives (``ignoreChanges``), which the mock resource arguments do not carry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockMonitor

from infra.__main__ import program
from infra.config import CONFIG_NAMESPACE, StackConfig, stack_file_cli_values
from infra.stack import build

ACCOUNT = "123456789012"
MOCK_AMI = "ami-0123456789abcdef0"
# aws.ec2.get_ami's answer for a pinned fleet.amiId (the stack reads its name and description for the
# driver it ships): by image id; any other id is a recent DLAMI. A test may add entries (monkeypatch).
CURRENT_DLAMI_NAME = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04) 20261201"
AMIS: dict[str, dict[str, str]] = {}


@dataclass
class Declared:
    type: str
    name: str
    inputs: dict[str, Any]
    ignore_changes: list[str] = field(default_factory=list)


@dataclass
class Mocks(pulumi.runtime.Mocks):
    declared: list[Declared] = field(default_factory=list)
    ignored: dict[str, list[str]] = field(default_factory=dict)  # resource name -> ignoreChanges
    warnings: list[str] = field(default_factory=list)  # what the program logged with pulumi.log.warn
    invoked: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # data sources: (token, args)
    # every registration, components included: name -> (type, the aliases it carries, as the engine gets them)
    registered: dict[str, tuple[str, str]] = field(default_factory=dict)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.declared.append(Declared(args.typ, args.name, dict(args.inputs), self.ignored.get(args.name, [])))
        state = dict(args.inputs)
        arn = f"arn:aws:mock:us-east-1:{ACCOUNT}:{args.typ.split(':')[-1].lower()}/{args.name}"
        state.setdefault("arn", arn)
        state.setdefault("name", args.name)
        if args.typ == "aws:lb/loadBalancer:LoadBalancer":
            state.update(dnsName=f"{args.name}.elb.amazonaws.com", arnSuffix=f"app/{args.name}/abc")
        if args.typ == "aws:lb/targetGroup:TargetGroup":
            state.update(arnSuffix=f"targetgroup/{args.name}/def")
        if args.typ == "aws:ecr/repository:Repository":
            state.update(repositoryUrl=f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{args.inputs['name']}")
        if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state.update(latestVersion=3)
        if args.typ == "aws:cloudwatch/dashboard:Dashboard":
            state.update(dashboardName=args.inputs["dashboardName"])
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        self.invoked.append((args.token, dict(args.args)))
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {
                "names": ["us-east-1a", "us-east-1b", "us-east-1c"],
                "zoneIds": ["use1-az1", "use1-az2", "use1-az4"],
            }, []
        if args.token == "aws:ssm/getParameter:getParameter":
            return {"name": args.args["name"], "value": MOCK_AMI, "type": "String"}, []
        if args.token == "aws:ec2/getAmi:getAmi":
            (image_id,) = next(f["values"] for f in args.args["filters"] if f["name"] == "image-id")
            if image_id not in AMIS and image_id.startswith("ami-000000"):  # a test's missing AMI: the
                return {}, [("filters", "Your query returned no results")]  # data source's failure, as the engine's
            found = {"name": CURRENT_DLAMI_NAME, "description": "Supported EC2 instances: G4dn, G5, G6, P4d, P5"}
            return {"id": image_id, "imageId": image_id, **AMIS.get(image_id, found)}, []
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/test", "userId": "test"}, []
        raise NotImplementedError(f"no mock for invoke {args.token}")

    def of_type(self, suffix: str) -> list[Declared]:
        return [d for d in self.declared if d.type.endswith(suffix)]

    def one(self, suffix: str) -> Declared:
        found = self.of_type(suffix)
        assert len(found) == 1, f"{len(found)} resources of type {suffix}"
        return found[0]


class _Warnings(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


class RecordingMonitor(MockMonitor):
    """Pulumi's mock monitor, also keeping the options each registration carries to the engine."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.recording = mocks

    def RegisterResource(self, request: Any) -> Any:
        self.recording.ignored[request.name] = list(request.ignoreChanges)
        self.recording.registered[request.name] = (request.type, str(list(request.aliases)))
        return super().RegisterResource(request)  # type: ignore[no-untyped-call]


def _run(project: str, stack: str, build_outputs: Any) -> tuple[Mocks, dict[str, Any]]:
    mocks = Mocks()
    logger = logging.getLogger(f"{__name__}.{id(mocks)}")
    logger.propagate = False
    logger.addHandler(_Warnings(mocks.warnings))
    pulumi.runtime.set_mocks(
        mocks, project=project, stack=stack, preview=False, logger=logger, monitor=RecordingMonitor(mocks)
    )
    resolved: dict[str, Any] = {}

    @pulumi.runtime.test
    def run() -> pulumi.Output[None]:
        outputs = build_outputs()
        return pulumi.Output.all(*outputs.values()).apply(
            lambda values: resolved.update(zip(outputs, values, strict=True))
        )

    run()
    return mocks, resolved


def run_program(config: StackConfig) -> tuple[Mocks, dict[str, Any]]:
    """Build the stack from an already-parsed config; returns what it declared and its resolved outputs."""
    return _run(config.project, config.stack, lambda: build(config))


def run_cli_config(
    cli_config: dict[str, str], stack: str = "dev", project: str = CONFIG_NAMESPACE
) -> tuple[Mocks, dict[str, Any]]:
    """Run ``infra/__main__.py``'s program with ``cli_config`` (full keys, e.g. ``elastic-resnet:minSize``,
    values as the CLI passes them) in Pulumi's config layer."""
    pulumi.runtime.set_all_config(cli_config)
    try:
        return _run(project, stack, program)
    finally:
        pulumi.runtime.set_all_config({})


def cli_config_of(stack_file: Path) -> dict[str, str]:
    """What the CLI passes for a stack file: every key namespaced, values as plain strings or JSON text."""
    region, values = stack_file_cli_values(stack_file)
    config = {f"{CONFIG_NAMESPACE}:{key}": value for key, value in values.items()}
    if region is not None:
        config["aws:region"] = region
    return config
