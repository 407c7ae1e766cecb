"""Wires the components into the stack; returns the stack outputs."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from .access import AbuseProtection, AbuseProtectionArgs, CostGuard, CostGuardArgs, web_acl_metric
from .config import READINESS_PATH, SERVICE_PORT, StackConfig
from .fleet import Fleet, FleetArgs
from .gpu_requirements import MIN_DRIVER_VERSION, ami_driver_warning
from .instance_types import GPU, KINDS, InstanceKind
from .load_balancer import LoadBalancer, LoadBalancerArgs
from .network import Network, NetworkArgs
from .observability import Dashboard, DashboardArgs, Notifications, ObservabilityArgs
from .registry import ImageRegistry, RegistryArgs, ecr_repository_arn
from .scaling import Scaling, ScalingArgs
from .signals import signals_for


def build(config: StackConfig) -> dict[str, pulumi.Output[str]]:
    tags = {"project": config.project, "stack": config.stack, "managed-by": "pulumi", **config.tags}

    network_config = config.network
    if network_config.vpc_id:
        vpc_id: pulumi.Input[str] = network_config.vpc_id
        public_subnets: pulumi.Input[list[str]] = network_config.public_subnet_ids
        private_subnets: pulumi.Input[list[str]] = network_config.private_subnet_ids
    else:
        network = Network("network", NetworkArgs(config.name, config.region, network_config, tags))
        vpc_id, public_subnets, private_subnets = network.vpc_id, network.public_subnet_ids, network.private_subnet_ids

    kind = config.fleet.kind  # GPU or CPU (infra/instance_types.py): what differs is read from it
    signals = signals_for(kind)
    registry = ImageRegistry("registry", RegistryArgs(config.name, tags))
    # One repository for both images; the tag says which (tag_mismatch).
    image_uri = config.fleet.image_uri or registry.repository_url.apply(lambda url: f"{url}:{config.image_tag}")
    mismatch = tag_mismatch(config.fleet.image_uri or config.image_tag, kind)
    if mismatch:
        pulumi.log.warn(mismatch)
    # The instances may pull from the repository the image is in: this stack's, or the ECR repository
    # fleet.imageUri names (another account's must also allow it in its repository policy). An image
    # outside ECR is pulled anonymously: a public one.
    pull_repository_arn = (
        ecr_repository_arn(config.fleet.image_uri) if config.fleet.image_uri else None
    ) or registry.repository_arn

    access = config.access
    if access.public:
        pulumi.log.warn(
            "the endpoint is public: anyone who learns its URL can call the model on your bill. Set "
            "access.apiKeysParameter and/or access.allowedCidrs (docs/security.md)."
        )
    endpoint = LoadBalancer(
        "endpoint",
        LoadBalancerArgs(
            name=config.name,
            vpc_id=vpc_id,
            # an internal load balancer lives in the private subnets, next to its callers' VPC traffic
            subnet_ids=private_subnets if access.internal else public_subnets,
            service_port=SERVICE_PORT,
            health_check_path=READINESS_PATH,
            config=config.load_balancer,
            access=access,
            tags=tags,
        ),
    )

    if config.fleet.ami_id is None:
        pulumi.log.warn(
            f"fleet.amiId is not set: the AMI comes from {config.fleet.ami_ssm_parameter}, resolved at every "
            "`pulumi up`, so each new release replaces every instance. Pin it (docs/deploy.md, 'Pin the AMI')."
        )
    elif config.fleet.instance.gpus:
        warning = pinned_ami_warning(config.fleet.ami_id)
        if warning:
            pulumi.log.warn(warning)
    if not config.fleet.container_read_only:
        pulumi.log.warn(read_only_off_warning(config.fleet.instance.gpus))
    ami_id = config.fleet.ami_id or aws.ssm.get_parameter(name=config.fleet.ami_ssm_parameter).value
    fleet = Fleet(
        "fleet",
        FleetArgs(
            name=config.name,
            asg_name=config.asg_name,
            region=config.region,
            config=config.fleet,
            sizes=config.fleet_sizes,
            ami_id=ami_id,
            vpc_id=vpc_id,
            subnet_ids=private_subnets,
            load_balancer_security_group_id=endpoint.security_group_id,
            target_group_arn=endpoint.target_group_arn,
            repository_arn=pull_repository_arn,
            image_uri=image_uri,
            service_port=SERVICE_PORT,
            readiness_path=READINESS_PATH,
            instance_warmup_s=config.scaling.timing.instance_warmup_s,
            deregistration_delay_s=config.load_balancer.deregistration_delay_s,
            access=access,
            tags=tags,
        ),
    )

    notifications = Notifications("alerts", ObservabilityArgs(config.name, config.region, config.alarm_email, tags))
    scaling = Scaling(
        "scaling",
        ScalingArgs(
            name=config.name,
            asg_name=fleet.asg_name,
            config=config.scaling,
            signals=signals,
            notification_topic_arn=notifications.topic_arn,
            tags=tags,
            load_balancer=endpoint.arn_suffix,
            scales_to_zero=config.scales_to_zero,
            launches_instances=config.launch_instances,
        ),
    )
    dashboard = Dashboard(
        "dashboard",
        DashboardArgs(
            name=config.name,
            region=config.region,
            asg_name=fleet.asg_name,
            load_balancer=endpoint.arn_suffix,
            target_group=endpoint.target_group_arn_suffix,
            alarm_arns=scaling.alarm_arns,
            signals=signals,
            web_acl=web_acl_metric(config.name) if access.rate_limit_per_5min is not None else None,
        ),
    )
    if access.rate_limit_per_5min is not None:
        AbuseProtection(
            "abuse",
            AbuseProtectionArgs(config.name, endpoint.arn, access.rate_limit_per_5min, tags),
        )
    if access.monthly_budget_usd is not None:
        # The "stack" tag is on every resource; activate it as a cost-allocation tag once (docs/security.md).
        CostGuard(
            "budget",
            CostGuardArgs(config.name, access.monthly_budget_usd, "stack", config.stack, config.budget_emails),
        )
    return {
        "endpoint_url": endpoint.url,
        "ecr_repository_url": registry.repository_url,
        "image_uri": pulumi.Output.from_input(image_uri),
        "asg_name": fleet.asg_name,
        "dashboard_url": dashboard.url,
        "alarm_topic_arn": notifications.topic_arn,
        "log_group": fleet.log_group_name,
    }


def tag_mismatch(image: str, kind: InstanceKind) -> str | None:
    """A warning when the image's tag names the other kind's image (``...-cpu`` on a GPU fleet, ``...-gpu``
    on a CPU one): the deploy command tags each image with its variant as suffix (kind.image_variant)."""
    tag = image.rsplit("/", 1)[-1].partition(":")[2] if "/" in image else image
    for other in KINDS.values():
        if other is not kind and tag.endswith(f"-{other.image_variant}"):
            return (
                f"the image tag {tag!r} names a {other.name.upper()} image, but fleet.instanceType is a "
                f"{kind.name.upper()} type: the instances would run the wrong image (tag the "
                f"{kind.name.upper()} image ...-{kind.image_variant})"
            )
    if "/" not in image and kind is not GPU and not tag.endswith(f"-{kind.image_variant}"):
        # imageTag (not a full fleet.imageUri) without the suffix: "latest" has always been the GPU image's
        return (
            f"imageTag {tag!r} does not name a {kind.name.upper()} image (...-{kind.image_variant}) and "
            f"fleet.instanceType is a {kind.name.upper()} type: the instances may pull the GPU image "
            f"(`make deploy` pushes and sets a ...-{kind.image_variant} tag)"
        )
    return None


def pinned_ami_warning(ami_id: str) -> str | None:
    """A warning when the pinned GPU AMI is known to be older than the driver the image needs (its name or
    description names its driver or its release date: infra/gpu_requirements.py), or cannot be looked up.
    Never a failure: the instances' boot check abandons a launch on an old driver, saying why."""
    try:
        ami = aws.ec2.get_ami(filters=[{"name": "image-id", "values": [ami_id]}], include_deprecated=True)
    except Exception as exc:  # no such AMI, no ec2:DescribeImages: the boot check still guards the driver
        return (
            f"fleet.amiId {ami_id} could not be looked up ({str(exc).splitlines()[0] if str(exc) else exc!r}): "
            f"whether its NVIDIA driver is >= {MIN_DRIVER_VERSION} is checked only when an instance boots"
        )
    return ami_driver_warning(ami_id, ami.name, ami.description)


def read_only_off_warning(gpus: int) -> str:
    """fleet.containerReadOnly: false is never silent."""
    why = (
        "the fallback for an NVIDIA container toolkit that refuses a read-only container (1.20.0): keep it off "
        "only while the AMI has that toolkit; one with the fix (NVIDIA/nvidia-container-toolkit#2028) runs the "
        "hardened set"
        if gpus
        else "a CPU instance has no NVIDIA container toolkit to need it: turn it back on"
    )
    return (
        "fleet.containerReadOnly is false: the service container runs with a WRITABLE root filesystem "
        f"(tmpfs /tmp, no capabilities and no-new-privileges stay): {why} (docs/deploy.md)."
    )
