"""The endpoint: an Application Load Balancer in front of the GPU instances' port 3000.

Who reaches it is ``access`` config (docs/security.md): its security group admits ``allowedCidrs`` only,
``internal`` keeps it inside the VPC, and its listener forwards only the service's client and health
paths (plus the docs with ``exposeDocs``); everything else, /metrics included, is answered 404 by the
load balancer itself and never reaches an instance.

Health checks hit the service's /readyz, which answers 200 only once the model is loaded and warmed
up, so no instance gets traffic before it can serve it fast. Requests go to the target with the fewest
outstanding requests: batches make per-instance latency depend on queue depth, not on request count.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from service.routes import CLIENT_ROUTES, DOCS_ROUTES, HEALTH_ROUTES

from .config import AccessConfig, LoadBalancerConfig

# TLS 1.3 and 1.2 (AWS's recommended policy); TLS 1.0/1.1 clients are refused.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# Health checks: a target takes 2 x 10 s to join, 3 x 10 s of failures to leave.
HEALTH_CHECK = {"interval": 10, "timeout": 5, "healthy_threshold": 2, "unhealthy_threshold": 3}
# What the load balancer answers for a path it does not forward: the service's own error shape.
NOT_FOUND_BODY = '{"error": "not found"}'
# Paths forwarded to the instances, by listener rule priority (an ALB rule takes at most 5 path values).
FORWARDED_PATHS = {10: [*CLIENT_ROUTES, *HEALTH_ROUTES]}
DOCS_RULE_PRIORITY = 20


def forwarded_paths(access: AccessConfig) -> dict[int, list[str]]:
    return {**FORWARDED_PATHS, DOCS_RULE_PRIORITY: list(DOCS_ROUTES)} if access.expose_docs else dict(FORWARDED_PATHS)


@dataclass(frozen=True)
class LoadBalancerArgs:
    name: str
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[list[str]]
    service_port: int
    health_check_path: str
    config: LoadBalancerConfig
    access: AccessConfig
    tags: dict[str, str]


class LoadBalancer(pulumi.ComponentResource):
    security_group_id: pulumi.Output[str]
    target_group_arn: pulumi.Output[str]
    arn: pulumi.Output[str]
    arn_suffix: pulumi.Output[str]  # the LoadBalancer dimension of AWS/ApplicationELB metrics
    target_group_arn_suffix: pulumi.Output[str]
    url: pulumi.Output[str]

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("elastic-resnet:endpoint:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        https = args.config.certificate_arn is not None
        listener_ports = [80, 443] if https else [80]

        security_group = aws.ec2.SecurityGroup(
            f"{name}-alb",
            vpc_id=args.vpc_id,
            description="elastic-resnet load balancer: HTTP(S) from the allowed networks",
            tags={**args.tags, "Name": f"{args.name}-alb"},
            opts=child,
        )
        for port in listener_ports:
            for index, cidr in enumerate(args.access.allowed_cidrs):
                aws.vpc.SecurityGroupIngressRule(
                    # the first keeps the name it had before allow-lists existed: no replacement on upgrade
                    f"{name}-alb-in-{port}" + (f"-{index}" if index else ""),
                    security_group_id=security_group.id,
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    cidr_ipv4=cidr,
                    description=f"clients from {cidr}, port {port}",
                    opts=child,
                )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-alb-out",
            security_group_id=security_group.id,
            ip_protocol="tcp",
            from_port=args.service_port,
            to_port=args.service_port,
            cidr_ipv4="0.0.0.0/0",
            description="to the service port of the targets (their own group admits only this ALB)",
            opts=child,
        )

        alb = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=args.access.internal,
            subnets=args.subnet_ids,
            security_groups=[security_group.id],
            idle_timeout=args.config.alb_idle_timeout_s,  # below the service's keep-alive (config.py)
            drop_invalid_header_fields=True,
            tags=args.tags,
            opts=child,
        )
        target_group = aws.lb.TargetGroup(
            f"{name}-tg",
            port=args.service_port,
            protocol="HTTP",
            target_type="instance",
            vpc_id=args.vpc_id,
            load_balancing_algorithm_type="least_outstanding_requests",
            # Long enough for in-flight requests to finish (they take well under a second; BentoML's
            # own request timeout is 60 s), short enough not to slow scale-in and deploys.
            deregistration_delay=args.config.deregistration_delay_s,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                path=args.health_check_path,
                protocol="HTTP",
                matcher="200",
                interval=HEALTH_CHECK["interval"],
                timeout=HEALTH_CHECK["timeout"],
                healthy_threshold=HEALTH_CHECK["healthy_threshold"],
                unhealthy_threshold=HEALTH_CHECK["unhealthy_threshold"],
            ),
            tags=args.tags,
            opts=child,
        )
        not_found = aws.lb.ListenerDefaultActionArgs(
            type="fixed-response",
            fixed_response=aws.lb.ListenerDefaultActionFixedResponseArgs(
                content_type="application/json", message_body=NOT_FOUND_BODY, status_code="404"
            ),
        )
        if https:
            serving = aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=alb.arn,
                port=443,
                protocol="HTTPS",
                ssl_policy=TLS_POLICY,
                certificate_arn=args.config.certificate_arn,
                default_actions=[not_found],
                opts=child,
            )
            redirect = aws.lb.ListenerDefaultActionArgs(
                type="redirect",
                redirect=aws.lb.ListenerDefaultActionRedirectArgs(port="443", protocol="HTTPS", status_code="HTTP_301"),
            )
            aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=alb.arn,
                port=80,
                protocol="HTTP",
                default_actions=[redirect],
                opts=child,
            )
        else:
            serving = aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=alb.arn,
                port=80,
                protocol="HTTP",
                default_actions=[not_found],
                opts=child,
            )
        for priority, paths in forwarded_paths(args.access).items():
            aws.lb.ListenerRule(
                f"{name}-forward-{priority}",
                listener_arn=serving.arn,
                priority=priority,
                conditions=[
                    aws.lb.ListenerRuleConditionArgs(
                        path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(values=paths)
                    )
                ],
                actions=[aws.lb.ListenerRuleActionArgs(type="forward", target_group_arn=target_group.arn)],
                tags=args.tags,
                opts=child,
            )

        self.security_group_id = security_group.id
        self.target_group_arn = target_group.arn
        self.arn = alb.arn
        self.arn_suffix = alb.arn_suffix
        self.target_group_arn_suffix = target_group.arn_suffix
        self.url = alb.dns_name.apply(lambda dns: f"{'https' if https else 'http'}://{dns}")
        self.register_outputs({"url": self.url, "target_group_arn": self.target_group_arn})
