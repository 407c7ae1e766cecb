"""Renders the instances' first-boot script (templates/user-data.sh.j2) and the CloudWatch agent's
configuration it installs, for either kind of instance (infra/instance_types.py).

A boot that cannot end in a ready service abandons the launch at once and says why (the template's
``abandon_launch``): on an instance type with GPUs, the NVIDIA driver is checked against the image's minimum
(infra/gpu_requirements.py) and the GPU count against the type's, before the image is pulled."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from .container import hardened_run_flags
from .gpu_requirements import CUDA_VERSION, MIN_DRIVER_VERSION
from .instance_types import INSTANCE_TYPES, InstanceKind
from .signals import (
    AGENT_NAMESPACE,
    CLIENT_ENDPOINTS,
    GROUP_DIMENSION,
    IN_FLIGHT_METRIC,
    PERIOD_S,
    SCRAPE_INTERVAL_S,
    SERVICE_NAMESPACE,
    agent_measurements,
    signals_for,
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
# The AWS CLI, where the AMI has none (Canonical's Ubuntu images; the GPU DLAMI ships it): AWS's own v2
# installer. Ubuntu 24.04 has no `awscli` apt package, 22.04's is the old v1; the snap refreshes itself in
# the background (a CLI that changes under a running instance). The installer is the same on both releases.
AWS_CLI_URL = "https://awscli.amazonaws.com/awscli-exe-linux-x86_64.zip"


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
    kind: InstanceKind  # GPU or CPU: container flags, held driver packages, the agent's plugins
    instance_type: str  # its GPU count is what the boot check expects nvidia-smi to list
    service_env: dict[str, str] = field(default_factory=dict)
    api_keys_parameter: str | None = None  # SSM parameter name; None: the service runs without keys
    # fleet.containerReadOnly: False runs the container with infra/container.py's fallback flags (no --read-only)
    container_read_only: bool = True

    def __post_init__(self) -> None:
        if INSTANCE_TYPES[self.instance_type].kind is not self.kind:
            raise ValueError(f"{self.instance_type} is not a {self.kind.name.upper()} type")

    @property
    def expected_gpus(self) -> int:
        """The GPUs nvidia-smi must list at boot; 0 (a CPU type): no GPU check at all."""
        return INSTANCE_TYPES[self.instance_type].gpus


def agent_config(log_group: str, kind: InstanceKind) -> dict[str, object]:
    """CloudWatch agent: the kind's signals (CPU; on a GPU kind per-GPU utilisation and memory too),
    aggregated per Auto Scaling group, and the service's in-flight request gauge from its Prometheus
    endpoint (as embedded metric format), filtered to the client-facing endpoints so each request counts
    once (infra/signals.py). The agent runs only while the instance is InService (user data starts it then)."""
    plugins = agent_measurements(signals_for(kind))
    collected: dict[str, dict[str, object]] = {
        plugin: {"measurement": measurements, **({"totalcpu": True} if plugin == "cpu" else {})}
        for plugin, measurements in plugins.items()
    }
    return {
        "agent": {"metrics_collection_interval": PERIOD_S, "run_as_user": "root"},
        "metrics": {
            "namespace": AGENT_NAMESPACE,
            "append_dimensions": {GROUP_DIMENSION: "${aws:AutoScalingGroupName}", "InstanceId": "${aws:InstanceId}"},
            "aggregation_dimensions": [[GROUP_DIMENSION]],
            "metrics_collected": collected,
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
        agent_config=json.dumps(agent_config(params.log_group, params.kind), indent=2),
        prometheus_config=prometheus_config(params.asg_name, params.service_port),
        dpkg_lock_timeout_s=DPKG_LOCK_TIMEOUT_S,
        run_flags=hardened_run_flags("docker", read_only=params.container_read_only),
        expected_gpus=params.expected_gpus,
        min_driver=MIN_DRIVER_VERSION,
        cuda_version=CUDA_VERSION,
        kind_flags=params.kind.run_flags,
        aws_cli_url=AWS_CLI_URL,
        service_uid=SERVICE_UID,
        keys_dir=KEYS_DIR,
        keys_mount=KEYS_MOUNT,
        keys_file=KEYS_FILE,
    )
