"""The stack configuration is validated before any resource is declared."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.config import ConfigError, from_stack_values, parse

REPO = Path(__file__).resolve().parents[2]


def test_region_alone_is_a_complete_configuration() -> None:
    config = parse({"region": "eu-west-1"})
    assert (config.instance_type, config.min_size, config.max_size, config.desired_capacity) == (
        "g4dn.xlarge",
        1,
        10,
        1,
    )
    assert config.warm_pool_min_size == 1
    assert (config.thresholds.cpu_percent, config.thresholds.gpu_memory_percent) == (70, 60)
    assert config.thresholds.queue_length == 50 and config.thresholds.scale_in_below == 30


def test_the_example_stack_file_is_valid() -> None:
    stack_file = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())["config"]
    values = {key.split(":", 1)[1]: value for key, value in stack_file.items() if key.startswith("elastic-resnet:")}
    config = from_stack_values(values, "elastic-resnet", "dev", stack_file["aws:region"])
    assert config.scheduled_actions[0].name == "weekday-morning-prewarm"
    assert config.scheduled_actions[0].time_zone == "America/New_York"
    assert config.thresholds.gpu_utilization_percent == 70


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"instance_type": "m5.large"}, "not a supported GPU instance type"),
        ({"instance_type": "p3.2xlarge"}, "not supported by CUDA 13"),
        ({"instance_type": "g4ad.xlarge"}, "AMD GPU"),
        ({"thresholds": {"scale_in_below": 75}}, "scale_in_below"),
        ({"thresholds": {"cpu_percent": 150}}, "thresholds.cpu_percent"),
        ({"thresholds": {"queue_length": 0}}, "thresholds.queue_length"),
        ({"min_size": 3, "desired_capacity": 2}, "min_size <= desired_capacity <= max_size"),
        ({"timing": {"scale_out_datapoints": 5}}, "scale_out_datapoints"),
        ({"scheduled_actions": [{"name": "x", "cron": "daily"}]}, "5 fields"),
        ({"vpc_id": "vpc-1"}, "vpc_id, public_subnet_ids and private_subnet_ids together"),
        ({"service_env": {"PATH": "/tmp"}}, "only RESNET18_* settings"),
        ({"alarm_email": "not-an-address"}, "alarm_email"),
        ({"unknown_key": 1}, "unknown_key"),
    ],
)
def test_bad_values_are_refused_with_the_key_named(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match="invalid elastic-resnet configuration") as info:
        parse({"region": "us-east-1", **values})
    assert message in str(info.value)


def test_stack_file_keys_are_camel_case() -> None:
    config = from_stack_values(
        {"instanceType": "g5.xlarge", "warmPoolMinSize": 2, "thresholds": {"gpuMemoryPercent": 80},
         "serviceEnv": {"RESNET18_MAX_BATCH_SIZE": "64"}},
        "elastic-resnet", "prod", "us-west-2",
    )  # fmt: skip
    assert config.instance_type == "g5.xlarge" and config.warm_pool_min_size == 2
    assert config.thresholds.gpu_memory_percent == 80
    assert config.service_env == {"RESNET18_MAX_BATCH_SIZE": "64"}
    assert config.asg_name == "elastic-resnet-prod-gpu"
