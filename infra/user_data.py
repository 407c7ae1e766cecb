"""Renders the instances' first-boot script (templates/user-data.sh.j2) and the CloudWatch agent's
configuration it installs."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from .container import hardened_run_flags
from .signals import (
    AGENT_CPU_MEASUREMENTS,
    AGENT_GPU_MEASUREMENTS,
    AGENT_NAMESPACE,
    CLIENT_ENDPOINTS,
    GROUP_DIMENSION,
    IN_FLIGHT_METRIC,
    PERIOD_S,
    SCRAPE_INTERVAL_S,
    SERVICE_NAMESPACE,
)

TEMPLATES = Path(__file__).parent / "templates"
SCRAPE_JOB = "elastic-resnet"
# The API keys (access.apiKeysParameter): fetched to a host directory that only the container's user may
# read, mounted read-only into the container. 1034 is the uid/gid BentoML 1.4's generated Dockerfile gives
# its user (bentoml/_internal/container/generate.py, BENTO_UID_GID).
SERVICE_UID = 1034
KEYS_DIR = "/etc/elastic-resnet/keys"
KEYS_MOUNT = "/run/secrets/elastic-resnet"
KEYS_FILE = "api-keys"
# apt and dpkg wait this long for the lock that unattended-upgrades may hold at first boot.
DPKG_LOCK_TIMEOUT_S = 600


@dataclass(frozen=True)
class UserDataParams:
    region: str
    image_uri: str
    asg_name: str
    launch_hook_name: str
    terminate_hook_name: str
    log_group: str
    service_port: int
    readiness_path: str
    ready_timeout_s: int  # counted from boot
    terminate_hook_timeout_s: int  # how long the terminating hook waits (infra/fleet.py)
    service_env: dict[str, str] = field(default_factory=dict)
    api_keys_parameter: str | None = None  # SSM parameter name; None: the service runs without keys


def agent_config(log_group: str) -> dict[str, object]:
    """CloudWatch agent: CPU and per-GPU utilisation and memory, aggregated per Auto Scaling group, and
    the service's in-flight request gauge from its Prometheus endpoint (as embedded metric format),
    filtered to the client-facing endpoints so each request counts once (infra/signals.py). The agent
    runs only while the instance is InService (user data starts it then)."""
    return {
        "agent": {"metrics_collection_interval": PERIOD_S, "run_as_user": "root"},
        "metrics": {
            "namespace": AGENT_NAMESPACE,
            "append_dimensions": {GROUP_DIMENSION: "${aws:AutoScalingGroupName}", "InstanceId": "${aws:InstanceId}"},
            "aggregation_dimensions": [[GROUP_DIMENSION]],
            "metrics_collected": {
                "cpu": {"measurement": AGENT_CPU_MEASUREMENTS, "totalcpu": True},
                "nvidia_gpu": {"measurement": AGENT_GPU_MEASUREMENTS},
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
                                "source_labels": ["job", "endpoint"],
                                "label_matcher": f"^{SCRAPE_JOB};({'|'.join(CLIENT_ENDPOINTS)})$",
                                "dimensions": [[GROUP_DIMENSION]],
                                "metric_selectors": [f"^{IN_FLIGHT_METRIC}$"],
                            }
                        ],
                    },
                }
            }
        },
    }


def prometheus_config(asg_name: str, service_port: int) -> str:
    # Several scrapes per CloudWatch period: the queue signal divides the period's Sum by their number.
    return "\n".join(
        [
            "global:",
            f"  scrape_interval: {SCRAPE_INTERVAL_S}s",
            "  scrape_timeout: 10s",
            "scrape_configs:",
            f"  - job_name: {SCRAPE_JOB}",
            "    metrics_path: /metrics",
            "    static_configs:",
            f"      - targets: ['127.0.0.1:{service_port}']",
            "        labels:",
            f"          {GROUP_DIMENSION}: {asg_name}",
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
        dpkg_lock_timeout_s=DPKG_LOCK_TIMEOUT_S,
        run_flags=hardened_run_flags("docker"),
        service_uid=SERVICE_UID,
        keys_dir=KEYS_DIR,
        keys_mount=KEYS_MOUNT,
        keys_file=KEYS_FILE,
    )
