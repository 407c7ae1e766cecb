"""Renders the instances' first-boot script (templates/user-data.sh.j2) and the CloudWatch agent's
configuration it installs."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).parent / "templates"
AGENT_NAMESPACE = "CWAgent"  # nvidia_gpu metrics
SERVICE_NAMESPACE = "ElasticResnet"  # the service's own metrics, scraped from its /metrics
IN_FLIGHT_METRIC = "bentoml_service_request_in_progress"


@dataclass(frozen=True)
class UserDataParams:
    region: str
    image_uri: str
    asg_name: str
    launch_hook_name: str
    log_group: str
    service_port: int
    readiness_path: str
    ready_timeout_s: int
    service_env: dict[str, str] = field(default_factory=dict)


def agent_config(log_group: str) -> dict[str, object]:
    """CloudWatch agent: per-GPU utilisation and memory, aggregated per Auto Scaling group, and the
    service's in-flight request gauge from its Prometheus endpoint (as embedded metric format)."""
    return {
        "agent": {"metrics_collection_interval": 60, "run_as_user": "root"},
        "metrics": {
            "namespace": AGENT_NAMESPACE,
            "append_dimensions": {
                "AutoScalingGroupName": "${aws:AutoScalingGroupName}",
                "InstanceId": "${aws:InstanceId}",
            },
            "aggregation_dimensions": [["AutoScalingGroupName"]],
            "metrics_collected": {
                "nvidia_gpu": {"measurement": ["utilization_gpu", "memory_used", "memory_total"]},
            },
        },
        "logs": {
            "metrics_collected": {
                "prometheus": {
                    "log_group_name": log_group,
                    "prometheus_config_path": "/opt/aws/amazon-cloudwatch-agent/etc/prometheus.yaml",
                    "emf_processor": {
                        "metric_namespace": SERVICE_NAMESPACE,
                        "metric_declaration": [
                            {
                                "source_labels": ["job"],
                                "label_matcher": "^elastic-resnet$",
                                "dimensions": [["AutoScalingGroupName"]],
                                "metric_selectors": [f"^{IN_FLIGHT_METRIC}$"],
                            }
                        ],
                    },
                }
            }
        },
    }


def prometheus_config(asg_name: str, service_port: int) -> str:
    # One scrape per 60 s CloudWatch period: the period's Sum is then the fleet's in-flight requests.
    return "\n".join(
        [
            "global:",
            "  scrape_interval: 60s",
            "  scrape_timeout: 10s",
            "scrape_configs:",
            "  - job_name: elastic-resnet",
            "    metrics_path: /metrics",
            "    static_configs:",
            f"      - targets: ['127.0.0.1:{service_port}']",
            "        labels:",
            f"          AutoScalingGroupName: {asg_name}",
        ]
    )


def render(params: UserDataParams) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,  # a missing parameter is an error, not an empty string
        keep_trailing_newline=True,
        # bash uses "{#" (${#array[@]}): move Jinja's comment markers out of its way
        comment_start_string="<#--",
        comment_end_string="--#>",
        autoescape=False,  # a shell script, not HTML; values are quoted with shell_quote
    )
    environment.filters["shell_quote"] = shlex.quote
    template = environment.get_template("user-data.sh.j2")
    return template.render(
        **params.__dict__,
        agent_config=json.dumps(agent_config(params.log_group), indent=2),
        prometheus_config=prometheus_config(params.asg_name, params.service_port),
    )
