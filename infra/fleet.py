"""The fleet: launch template, Auto Scaling group with a warm pool, and the instances' identity.

One component for both kinds of instance (infra/instance_types.py): the kind says the AMI, the container's
flags and the warm pool's state; nothing here asks "is it a GPU".

Scale-out should take about a minute, not the 5-10 minutes of a cold GPU instance pulling a multi-GB image:
the warm pool keeps instances that have already booted, pulled the image and loaded the model. A GPU kind's
wait stopped (GPU families cannot hibernate), paying only for their disk; a CPU kind's wait hibernated
(RAM saved to the encrypted root volume), so leaving the pool resumes the running container instead of
booting. A launch lifecycle hook holds every instance, entering the pool or leaving it for service, until
the service answers /readyz (the user data's readiness script, which also follows a resume).

What `pulumi up` waits for: the group's ``min_size`` instances in service (``wait_for_capacity_timeout``,
``FleetConfig.capacity_timeout``); a failed launch (no GPU quota, say) fails it at once. It does not wait
for an instance refresh: that runs in AWS after `pulumi up` returns (docs/deploy.md says how to follow it).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .config import AccessConfig, FleetConfig
from .container import STOP_TIMEOUT_S
from .signals import AGENT_NAMESPACE, SERVICE_NAMESPACE
from .user_data import UserDataParams, render

LAUNCH_HOOK = "wait-for-ready"
TERMINATE_HOOK = "drain"
# On termination the load balancer first drains the instance (its deregistration delay), then the
# instance stops its container (`docker stop`: the service's drain bound plus exit, infra/container.py)
# and completes the hook; the margin covers the polling and the AWS call.
TERMINATE_MARGIN_S = 20


def terminate_hook_timeout_s(deregistration_delay_s: int) -> int:
    return deregistration_delay_s + STOP_TIMEOUT_S + TERMINATE_MARGIN_S


# Autoscaling owns the desired capacity once the group exists: a re-run or `pulumi up --refresh` must
# not reset a scaled-out group to the configured size. The initial hooks apply at creation only; the
# LifecycleHook resources own every later change.
IGNORED_GROUP_DRIFT = ["desiredCapacity", "initialLifecycleHooks"]


@dataclass(frozen=True)
class FleetArgs:
    name: str
    asg_name: str
    region: str
    config: FleetConfig
    sizes: tuple[int, int, int, int]  # min, desired, warm pool min, max prepared (StackConfig.fleet_sizes)
    ami_id: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[list[str]]
    load_balancer_security_group_id: pulumi.Input[str]
    target_group_arn: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    image_uri: pulumi.Input[str]
    service_port: int
    readiness_path: str
    instance_warmup_s: int
    deregistration_delay_s: int  # the load balancer's, drained before the container is stopped
    access: AccessConfig
    tags: dict[str, str]


@dataclass(frozen=True)
class Hook:
    name: str
    transition: str
    timeout_s: int
    default_result: str


def lifecycle_hooks(config: FleetConfig, deregistration_delay_s: int) -> list[Hook]:
    """The launch and terminate hooks, declared at creation (initial hooks) and as resources."""
    return [
        # Into the pool and out of it; ABANDON: never serve from an instance that did not say ready.
        Hook(LAUNCH_HOOK, "autoscaling:EC2_INSTANCE_LAUNCHING", config.hook_timeout_s, "ABANDON"),
        # The instance completes it once its container has stopped; CONTINUE if it never does.
        Hook(
            TERMINATE_HOOK,
            "autoscaling:EC2_INSTANCE_TERMINATING",
            terminate_hook_timeout_s(deregistration_delay_s),
            "CONTINUE",
        ),
    ]


FLEET_TYPE = "elastic-resnet:fleet:Fleet"
# Its name until the CPU kind came (issue 19): stacks deployed before keep their resources under the alias.
FORMER_FLEET_TYPE = "elastic-resnet:fleet:GpuFleet"


class Fleet(pulumi.ComponentResource):
    asg_name: pulumi.Output[str]
    asg_arn: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    role_name: pulumi.Output[str]
    log_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: FleetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        renamed = pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=FORMER_FLEET_TYPE)])
        super().__init__(FLEET_TYPE, name, None, pulumi.ResourceOptions.merge(opts, renamed))
        child = pulumi.ResourceOptions(parent=self)
        kind = args.config.kind
        account_id = aws.get_caller_identity().account_id
        asg_arn_pattern = (
            f"arn:aws:autoscaling:{args.region}:{account_id}:autoScalingGroup:*:autoScalingGroupName/{args.asg_name}"
        )

        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/{args.name}/service",
            retention_in_days=args.config.log_retention_days,
            tags=args.tags,
            opts=child,
        )

        # Instances accept traffic from the load balancer only; no SSH (operators use SSM Session Manager).
        security_group = aws.ec2.SecurityGroup(
            f"{name}-instances",
            vpc_id=args.vpc_id,
            # A GPU fleet's reads as it always did: a changed description replaces the security group
            description=f"elastic-resnet {kind.name.upper()} instances: the service port, from the load balancer only",
            tags={**args.tags, "Name": f"{args.name}-instances"},
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-from-alb",
            security_group_id=security_group.id,
            ip_protocol="tcp",
            from_port=args.service_port,
            to_port=args.service_port,
            referenced_security_group_id=args.load_balancer_security_group_id,
            description="service port, from the load balancer",
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-egress",
            security_group_id=security_group.id,
            ip_protocol="-1",
            cidr_ipv4="0.0.0.0/0",
            description="ECR, CloudWatch, SSM and package mirrors, through the NAT gateway",
            opts=child,
        )

        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
            tags=args.tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=pulumi.Output.all(args.repository_arn, log_group.arn).apply(
                lambda values: json.dumps(
                    instance_policy(
                        values[0], values[1], asg_arn_pattern, api_keys_statements(args.access, args.region, account_id)
                    )
                )
            ),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, tags=args.tags, opts=child)

        user_data = pulumi.Output.all(args.image_uri, log_group.name).apply(
            lambda values: render(
                UserDataParams(
                    region=args.region,
                    image_uri=values[0],
                    asg_name=args.asg_name,
                    launch_hook_name=LAUNCH_HOOK,
                    terminate_hook_name=TERMINATE_HOOK,
                    log_group=values[1],
                    service_port=args.service_port,
                    readiness_path=args.readiness_path,
                    ready_timeout_s=args.config.ready_timeout_s,
                    terminate_hook_timeout_s=terminate_hook_timeout_s(args.deregistration_delay_s),
                    service_env=args.config.service_env,
                    api_keys_parameter=args.access.api_keys_parameter,
                    kind=kind,
                    instance_type=args.config.instance_type,
                    container_read_only=args.config.container_read_only,
                )
            )
        )
        launch_template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            image_id=args.ami_id,
            instance_type=args.config.instance_type,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
            vpc_security_group_ids=[security_group.id],
            user_data=user_data.apply(lambda script: base64.b64encode(script.encode()).decode()),
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",  # IMDSv2 only
                http_put_response_hop_limit=1,  # containers cannot reach the instance's credentials
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name="/dev/sda1",
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=args.config.root_volume_gb,
                        volume_type="gp3",
                        encrypted="true",  # hibernation requires it; every kind has it
                        delete_on_termination="true",
                    ),
                )
            ],
            # Hibernation can only be enabled at launch: every instance of a hibernating kind is launched with
            # it (and an encrypted root volume with room for its RAM, FleetConfig.root_volume_gb).
            hibernation_options=aws.ec2.LaunchTemplateHibernationOptionsArgs(configured=True)
            if kind.hibernates
            else None,
            monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags={**args.tags, "Name": args.name})
                for kind in ("instance", "volume")
            ],
            update_default_version=True,
            tags=args.tags,
            opts=child,
        )

        min_size, desired, warm_min, warm_prepared = args.sizes
        hooks = lifecycle_hooks(args.config, args.deregistration_delay_s)
        group = aws.autoscaling.Group(
            f"{name}-asg",
            name=args.asg_name,
            min_size=min_size,
            max_size=args.config.max_size,
            desired_capacity=desired,
            vpc_zone_identifiers=args.subnet_ids,
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
                id=launch_template.id, version=launch_template.latest_version.apply(str)
            ),
            target_group_arns=[args.target_group_arn],
            health_check_type="ELB",
            health_check_grace_period=args.config.health_check_grace_s,
            default_instance_warmup=args.instance_warmup_s,
            # The provider's default, 10 minutes, is about what a cold GPU instance needs to boot, pull
            # and warm up: the second `pulumi up` would time out while everything is fine (the wait follows
            # readyTimeoutS, whose default is the kind's).
            wait_for_capacity_timeout=args.config.capacity_timeout,
            # The hooks must exist before the first instance launches (then the resources below take over).
            initial_lifecycle_hooks=[
                aws.autoscaling.GroupInitialLifecycleHookArgs(
                    name=hook.name,
                    lifecycle_transition=hook.transition,
                    heartbeat_timeout=hook.timeout_s,
                    default_result=hook.default_result,
                )
                for hook in hooks
            ],
            warm_pool=aws.autoscaling.GroupWarmPoolArgs(
                # GPU: Stopped (no GPU family can hibernate). CPU: Hibernated (On-Demand only: this group
                # has no Spot or mixed-instances policy, which AWS refuses with a warm pool anyway).
                pool_state=kind.warm_pool_state,
                min_size=warm_min,
                max_group_prepared_capacity=warm_prepared,
                instance_reuse_policy=aws.autoscaling.GroupWarmPoolInstanceReusePolicyArgs(reuse_on_scale_in=True),
            ),
            instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
                    min_healthy_percentage=args.config.instance_refresh_min_healthy_percent,
                    max_healthy_percentage=200,  # launch the new instance before the old one goes
                    instance_warmup=str(args.instance_warmup_s),
                    # No auto-rollback: the provider points the group at the new template version before
                    # it starts the refresh, so AWS would "roll back" to that same new version
                    # (terraform-provider-aws #34189). A failed refresh stops; roll back by deploying the
                    # previous imageTag (docs/deploy.md).
                    auto_rollback=False,
                    skip_matching=True,
                ),
            ),
            enabled_metrics=[
                aws.autoscaling.Metric.GROUP_DESIRED_CAPACITY,
                aws.autoscaling.Metric.GROUP_IN_SERVICE_INSTANCES,
                aws.autoscaling.Metric.GROUP_PENDING_INSTANCES,
                aws.autoscaling.Metric.GROUP_TERMINATING_INSTANCES,
                aws.autoscaling.Metric.GROUP_TOTAL_INSTANCES,
                aws.autoscaling.Metric.WARM_POOL_WARMED_CAPACITY,
                aws.autoscaling.Metric.WARM_POOL_PENDING_CAPACITY,
                aws.autoscaling.Metric.WARM_POOL_TOTAL_CAPACITY,
                aws.autoscaling.Metric.WARM_POOL_DESIRED_CAPACITY,
            ],
            metrics_granularity="1Minute",
            termination_policies=["OldestLaunchTemplate", "Default"],
            tags=[
                aws.autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
                for key, value in args.tags.items()
            ],
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=IGNORED_GROUP_DRIFT),
        )
        for hook in hooks:
            aws.autoscaling.LifecycleHook(
                f"{name}-hook-{hook.name}",
                name=hook.name,
                autoscaling_group_name=group.name,
                lifecycle_transition=hook.transition,
                heartbeat_timeout=hook.timeout_s,
                default_result=hook.default_result,
                opts=child,
            )
        self.asg_name = group.name
        self.asg_arn = group.arn
        self.security_group_id = security_group.id
        self.role_name = role.name
        self.log_group_name = log_group.name
        self.register_outputs({"asg_name": self.asg_name, "log_group_name": self.log_group_name})


def api_keys_statements(access: AccessConfig, region: str, account_id: str) -> list[dict[str, object]]:
    """Read the one API-keys parameter, nothing else in Parameter Store; decrypt with its customer-managed
    key, through SSM only. (The AWS-managed aws/ssm key lets every principal of the account decrypt, so it
    needs no statement: the parameter's ARN is then the whole restriction.)"""
    if access.api_keys_parameter is None:
        return []
    parameter_arn = f"arn:aws:ssm:{region}:{account_id}:parameter{access.api_keys_parameter}"
    statements: list[dict[str, object]] = [
        {"Sid": "ApiKeys", "Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": parameter_arn}
    ]
    if access.api_keys_kms_key_arn:
        statements.append(
            {
                "Sid": "ApiKeysDecrypt",
                "Effect": "Allow",
                "Action": ["kms:Decrypt"],
                "Resource": access.api_keys_kms_key_arn,
                "Condition": {"StringEquals": {"kms:ViaService": f"ssm.{region}.amazonaws.com"}},
            }
        )
    return statements


def instance_policy(
    repository_arn: str, log_group_arn: str, asg_arn_pattern: str, extra: list[dict[str, object]] | None = None
) -> dict[str, object]:
    """Least privilege for an instance: pull this repository's image, publish its metrics and logs,
    complete its own lifecycle actions, be reachable through SSM Session Manager, and read its API keys
    (``extra``). No wildcard action."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            # GetAuthorizationToken has no resource-level permissions: AWS requires "*" here.
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
            {
                "Sid": "EcrPull",
                "Effect": "Allow",
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                "Resource": repository_arn,
            },
            {
                "Sid": "Metrics",
                "Effect": "Allow",
                "Action": ["cloudwatch:PutMetricData"],
                "Resource": "*",
                "Condition": {"StringEquals": {"cloudwatch:namespace": [AGENT_NAMESPACE, SERVICE_NAMESPACE]}},
            },
            {
                "Sid": "AgentDiscovery",  # the agent resolves ${aws:AutoScalingGroupName} from the instance's tags
                "Effect": "Allow",
                "Action": ["ec2:DescribeTags", "ec2:DescribeVolumes"],
                "Resource": "*",
            },
            {
                "Sid": "Logs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                "Resource": [log_group_arn, f"{log_group_arn}:*"],
            },
            {
                "Sid": "LifecycleHooks",
                "Effect": "Allow",
                "Action": ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"],
                "Resource": asg_arn_pattern,
            },
            {
                "Sid": "SessionManager",
                "Effect": "Allow",
                "Action": [
                    "ssm:UpdateInstanceInformation",
                    "ssmmessages:CreateControlChannel",
                    "ssmmessages:CreateDataChannel",
                    "ssmmessages:OpenControlChannel",
                    "ssmmessages:OpenDataChannel",
                ],
                "Resource": "*",
            },
            *(extra or []),
        ],
    }
