"""Wires the components into the stack; returns the stack outputs."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from .config import READINESS_PATH, SERVICE_PORT, StackConfig
from .fleet import FleetArgs, GpuFleet
from .load_balancer import LoadBalancer, LoadBalancerArgs
from .network import Network, NetworkArgs
from .observability import Dashboard, DashboardArgs, Notifications, ObservabilityArgs
from .registry import ImageRegistry, RegistryArgs
from .scaling import Scaling, ScalingArgs


def build(config: StackConfig) -> dict[str, pulumi.Output[str]]:
    tags = {"project": config.project, "stack": config.stack, "managed-by": "pulumi", **config.tags}

    if config.vpc_id:
        vpc_id: pulumi.Input[str] = config.vpc_id
        public_subnets: pulumi.Input[list[str]] = config.public_subnet_ids
        private_subnets: pulumi.Input[list[str]] = config.private_subnet_ids
    else:
        network = Network(
            "network",
            NetworkArgs(config.name, config.region, config.vpc_cidr, config.availability_zones, tags),
        )
        vpc_id, public_subnets, private_subnets = network.vpc_id, network.public_subnet_ids, network.private_subnet_ids

    registry = ImageRegistry("registry", RegistryArgs(config.name, tags))
    image_uri = config.image_uri or registry.repository_url.apply(lambda url: f"{url}:{config.image_tag}")

    endpoint = LoadBalancer(
        "endpoint",
        LoadBalancerArgs(
            name=config.name,
            vpc_id=vpc_id,
            subnet_ids=public_subnets,
            service_port=SERVICE_PORT,
            health_check_path=READINESS_PATH,
            certificate_arn=config.certificate_arn,
            idle_timeout_s=config.alb_idle_timeout_s,
            deregistration_delay_s=config.deregistration_delay_s,
            tags=tags,
        ),
    )

    ami_id = config.ami_id or aws.ssm.get_parameter(name=config.ami_ssm_parameter).value
    min_size, desired, warm_min, warm_max = config.fleet_sizes
    fleet = GpuFleet(
        "fleet",
        FleetArgs(
            name=config.name,
            asg_name=config.asg_name,
            region=config.region,
            instance_type=config.instance_type,
            ami_id=ami_id,
            root_volume_gb=config.root_volume_gb,
            vpc_id=vpc_id,
            subnet_ids=private_subnets,
            load_balancer_security_group_id=endpoint.security_group_id,
            target_group_arn=endpoint.target_group_arn,
            repository_arn=registry.repository_arn,
            image_uri=image_uri,
            service_port=SERVICE_PORT,
            readiness_path=READINESS_PATH,
            service_env=config.service_env,
            min_size=min_size,
            max_size=config.max_size,
            desired_capacity=desired,
            warm_pool_min_size=warm_min,
            warm_pool_max_prepared=warm_max,
            health_check_grace_s=config.health_check_grace_s,
            instance_warmup_s=config.timing.instance_warmup_s,
            refresh_min_healthy_percent=config.instance_refresh_min_healthy_percent,
            log_retention_days=config.log_retention_days,
            tags=tags,
        ),
    )

    notifications = Notifications("alerts", ObservabilityArgs(config.name, config.region, config.alarm_email, tags))
    scaling = Scaling(
        "scaling",
        ScalingArgs(
            name=config.name,
            asg_name=fleet.asg_name,
            thresholds=config.thresholds,
            timing=config.timing,
            scheduled_actions=config.scheduled_actions,
            predictive_scaling=config.predictive_scaling,
            notification_topic_arn=notifications.topic_arn,
            tags=tags,
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
        ),
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
