"""Run the Pulumi program against Pulumi's own mocks and keep every resource it declares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from infra.config import StackConfig
from infra.stack import build

ACCOUNT = "123456789012"


@dataclass
class Declared:
    type: str
    name: str
    inputs: dict[str, Any]


@dataclass
class Mocks(pulumi.runtime.Mocks):
    declared: list[Declared] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.declared.append(Declared(args.typ, args.name, dict(args.inputs)))
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
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {
                "names": ["us-east-1a", "us-east-1b", "us-east-1c"],
                "zoneIds": ["use1-az1", "use1-az2", "use1-az4"],
            }, []
        if args.token == "aws:ssm/getParameter:getParameter":
            return {"name": args.args["name"], "value": "ami-0123456789abcdef0", "type": "String"}, []
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/test", "userId": "test"}, []
        raise NotImplementedError(f"no mock for invoke {args.token}")

    def of_type(self, suffix: str) -> list[Declared]:
        return [d for d in self.declared if d.type.endswith(suffix)]

    def one(self, suffix: str) -> Declared:
        found = self.of_type(suffix)
        assert len(found) == 1, f"{len(found)} resources of type {suffix}"
        return found[0]


def run_program(config: StackConfig) -> tuple[Mocks, dict[str, Any]]:
    """Build the stack under mocks; returns what it declared and its resolved outputs."""
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project=config.project, stack=config.stack, preview=False)
    resolved: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[None]:
        outputs = build(config)
        return pulumi.Output.all(*outputs.values()).apply(
            lambda values: resolved.update(zip(outputs, values, strict=True))
        )

    program()
    return mocks, resolved
