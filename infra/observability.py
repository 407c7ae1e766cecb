"""Operations: where alarms notify, and one dashboard for requests, latency, the scaling signals of the
fleet's kind of instance (GPU widgets only on a GPU fleet) and the fleet."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from .access import BAD_INPUTS_RULE_METRIC, RATE_RULE_METRIC
from .signals import GROUP_DIMENSION, SIGNALS, Signal

# How the dashboard's title names each signal.
SHORT_NAMES = {
    "cpu": "CPU %",
    "gpu-utilization": "GPU %",
    "gpu-memory": "GPU memory %",
    "queue": "in-flight per instance",
}
assert set(SHORT_NAMES) == {signal.key for signal in SIGNALS}, "signals.py vs the dashboard"


@dataclass(frozen=True)
class ObservabilityArgs:
    name: str
    region: str
    alarm_email: str | None
    tags: dict[str, str]


class Notifications(pulumi.ComponentResource):
    """The SNS topic every alarm notifies, with an optional e-mail subscription.

    Encrypted with a customer-managed KMS key whose policy lets CloudWatch use it: CloudWatch alarms
    cannot publish to a topic encrypted with the AWS-managed ``alias/aws/sns`` key (its policy cannot
    grant CloudWatch, so every notification would be dropped). The key costs about $1 a month."""

    topic_arn: pulumi.Output[str]
    key_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("elastic-resnet:observability:Notifications", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account_id = aws.get_caller_identity().account_id
        key = aws.kms.Key(
            f"{name}-key",
            description=f"{args.name}: alarm notifications (SNS)",
            deletion_window_in_days=7,
            enable_key_rotation=True,
            policy=json.dumps(topic_key_policy(account_id)),
            tags=args.tags,
            opts=child,
        )
        topic = aws.sns.Topic(
            f"{name}-alarms", name=f"{args.name}-alarms", kms_master_key_id=key.arn, tags=args.tags, opts=child
        )
        if args.alarm_email:
            aws.sns.TopicSubscription(
                f"{name}-email", topic=topic.arn, protocol="email", endpoint=args.alarm_email, opts=child
            )
        self.topic_arn = topic.arn
        self.key_arn = key.arn
        self.register_outputs({"topic_arn": self.topic_arn})


def topic_key_policy(account_id: str) -> dict[str, object]:
    """The account administers the key; CloudWatch may use it to publish alarms to the topic."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministers",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
            },
        ],
    }


@dataclass(frozen=True)
class DashboardArgs:
    name: str
    region: str
    asg_name: pulumi.Input[str]
    load_balancer: pulumi.Input[str]  # ALB arn suffix
    target_group: pulumi.Input[str]  # target group arn suffix
    alarm_arns: pulumi.Input[list[str]]
    signals: tuple[Signal, ...]  # the fleet's kind's (signals.signals_for), drawn as their alarms compute them
    web_acl: str | None = None  # the WAF web ACL's metric name (infra/access.py), when abuse limits are on


class Dashboard(pulumi.ComponentResource):
    url: pulumi.Output[str]

    def __init__(self, name: str, args: DashboardArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("elastic-resnet:observability:Dashboard", name, None, opts)
        body = pulumi.Output.all(args.asg_name, args.load_balancer, args.target_group, args.alarm_arns).apply(
            lambda values: json.dumps(
                dashboard_body(args.region, values[0], values[1], values[2], values[3], args.signals, args.web_acl)
            )
        )
        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard", dashboard_name=args.name, dashboard_body=body, opts=pulumi.ResourceOptions(parent=self)
        )
        self.url = dashboard.dashboard_name.apply(
            lambda dashboard_name: (
                f"https://{args.region}.console.aws.amazon.com/cloudwatch/home"
                f"?region={args.region}#dashboards:name={dashboard_name}"
            )
        )
        self.register_outputs({"url": self.url})


def dashboard_body(
    region: str,
    asg: str,
    alb: str,
    tg: str,
    alarm_arns: list[str],
    signals: tuple[Signal, ...] = SIGNALS,
    web_acl: str | None = None,
) -> dict[str, Any]:
    def widget(title: str, metrics: list[list[Any]], x: int, y: int, **extra: Any) -> dict[str, Any]:
        properties = {"title": title, "region": region, "metrics": metrics, "view": "timeSeries", "period": 60}
        return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6, "properties": {**properties, **extra}}

    by_asg = [GROUP_DIMENSION, asg]
    lb = ["LoadBalancer", alb]
    return {
        "widgets": [
            widget(
                "Requests (per minute) and errors",
                [
                    ["AWS/ApplicationELB", "RequestCount", *lb, {"stat": "Sum"}],
                    ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", *lb, {"stat": "Sum"}],
                    ["AWS/ApplicationELB", "HTTPCode_Target_4XX_Count", *lb, {"stat": "Sum"}],
                    ["AWS/ApplicationELB", "RequestCountPerTarget", "TargetGroup", tg, {"stat": "Sum"}],
                ],
                0,
                0,
            ),
            widget(
                "Latency at the load balancer (s)",
                [
                    ["AWS/ApplicationELB", "TargetResponseTime", *lb, {"stat": "p50"}],
                    ["AWS/ApplicationELB", "TargetResponseTime", *lb, {"stat": "p99"}],
                ],
                12,
                0,
            ),
            widget(
                "Scaling signals: " + ", ".join(SHORT_NAMES[signal.key] for signal in signals),
                signal_metrics(asg, signals),
                0,
                6,
            ),
            widget(
                "Targets passing /readyz",
                [
                    ["AWS/ApplicationELB", "HealthyHostCount", "TargetGroup", tg, *lb, {"stat": "Minimum"}],
                    ["AWS/ApplicationELB", "UnHealthyHostCount", "TargetGroup", tg, *lb, {"stat": "Maximum"}],
                ],
                12,
                6,
            ),
            widget(
                "Instances: in service, warm pool, pending",
                [
                    ["AWS/AutoScaling", "GroupInServiceInstances", *by_asg],
                    ["AWS/AutoScaling", "GroupDesiredCapacity", *by_asg],
                    ["AWS/AutoScaling", "GroupPendingInstances", *by_asg],
                    ["AWS/AutoScaling", "WarmPoolWarmedCapacity", *by_asg],
                ],
                0,
                12,
            ),
            {
                "type": "alarm",
                "x": 12,
                "y": 12,
                "width": 12,
                "height": 6,
                "properties": {"title": "Scaling alarms (state changes are the scaling events)", "alarms": alarm_arns},
            },
            *(
                [widget("WAF: requests blocked per rule, allowed", waf_metrics(region, web_acl), 0, 18)]
                if web_acl
                else []
            ),
        ]
    }


def waf_metrics(region: str, web_acl: str) -> list[list[Any]]:
    acl = ["WebACL", web_acl, "Region", region]
    return [
        ["AWS/WAFV2", "BlockedRequests", *acl, "Rule", RATE_RULE_METRIC, {"stat": "Sum"}],
        ["AWS/WAFV2", "BlockedRequests", *acl, "Rule", BAD_INPUTS_RULE_METRIC, {"stat": "Sum"}],
        ["AWS/WAFV2", "AllowedRequests", *acl, "Rule", "ALL", {"stat": "Sum"}],
    ]


def signal_metrics(asg: str, signals: tuple[Signal, ...] = SIGNALS) -> list[list[Any]]:
    """Each scaling signal drawn exactly as its alarm computes it (infra/signals.py)."""
    rows: list[list[Any]] = []
    for index, signal in enumerate(signals):
        ids = {key: f"s{index}{key}" for key in signal.metrics}
        for key, metric in signal.metrics.items():
            rows.append(
                [metric.namespace, metric.name, GROUP_DIMENSION, asg, {"id": ids[key], "stat": metric.statistic,
                                                                      "visible": False}]
            )  # fmt: skip
        rows.append([{"expression": signal.expression.format(**ids), "label": signal.description}])
    return rows
