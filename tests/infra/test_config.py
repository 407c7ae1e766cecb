"""The stack configuration: read as the Pulumi CLI passes it, validated before any resource is declared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.config import ConfigError, from_cli_values, load_stack_file, parse, stack_file_cli_values, with_changes
from infra.instance_types import CPU, GPU
from service.timeouts import KEEPALIVE_S

REPO = Path(__file__).resolve().parents[2]

# What `pulumi up` hands the program for the shipped Pulumi.dev.yaml (the CLI's PULUMI_CONFIG bag):
# scalars as their plain text, objects as compact JSON with sorted keys (Go's encoding/json).
SHIPPED_DEV_CLI_VALUES = {
    "imageTag": "latest",
    "fleet": '{"desiredCapacity":1,"instanceType":"g4dn.xlarge","maxSize":10,"minSize":1,"readyTimeoutS":1200,'
    '"warmPoolMinSize":1}',
    "loadBalancer": '{"albIdleTimeoutS":60,"deregistrationDelayS":30}',
    "scaling": '{"scheduledActions":[{"cron":"45 7 * * MON-FRI","minSize":2,"name":"weekday-morning-prewarm",'
    '"timeZone":"America/New_York"},{"cron":"0 20 * * MON-FRI","minSize":1,"name":"weekday-evening",'
    '"timeZone":"America/New_York"}],"thresholds":{"cpuPercent":70,"gpuMemoryPercent":60,"gpuUtilizationPercent":70,'
    '"queueLength":50,"scaleInBelow":30},"timing":{"instanceWarmupS":180,"scaleInDatapoints":15,'
    '"scaleInEvaluationPeriods":15,"scaleOutDatapoints":2,"scaleOutEvaluationPeriods":3,"scaleOutPercent":50}}',
}


def cli(values: dict[str, str], region: str = "us-east-1"):  # type: ignore[no-untyped-def]
    return from_cli_values(values, "elastic-resnet", "dev", region)


def test_the_shipped_stack_file_is_encoded_as_the_cli_passes_it() -> None:
    assert stack_file_cli_values(REPO / "Pulumi.dev.yaml") == ("us-east-1", SHIPPED_DEV_CLI_VALUES)


def test_the_shipped_stack_file_states_the_defaults() -> None:
    """Pulumi.dev.yaml says every key it lists shows its default: the region-only stack reads the same,
    except for the scheduled actions it adds."""
    shipped = cli(SHIPPED_DEV_CLI_VALUES)
    defaults = cli({})
    assert [action.name for action in shipped.scaling.scheduled_actions] == [
        "weekday-morning-prewarm",
        "weekday-evening",
    ]
    assert shipped.scaling.scheduled_actions[0].time_zone == "America/New_York"
    assert shipped.scaling.scheduled_actions[0].min_size == 2
    assert shipped.model_copy(update={"scaling": defaults.scaling}) == defaults


def test_region_alone_is_a_complete_configuration() -> None:
    config = cli({}, region="eu-west-1")
    fleet = config.fleet
    assert (fleet.instance_type, fleet.min_size, fleet.max_size, fleet.desired_capacity) == ("g4dn.xlarge", 1, 10, 1)
    assert (fleet.warm_pool_min_size, fleet.warm_pool_max_prepared, fleet.ready_timeout_s) == (1, None, 1200)
    thresholds = config.scaling.thresholds
    assert (thresholds.cpu_percent, thresholds.gpu_utilization_percent, thresholds.gpu_memory_percent) == (70, 70, 60)
    assert (thresholds.queue_length, thresholds.scale_in_below) == (50, 30)
    assert (config.load_balancer.alb_idle_timeout_s, config.load_balancer.deregistration_delay_s) == (60, 30)
    assert config.launch_instances is True and config.image_tag == "latest"


def test_min_zero_is_a_supported_setting() -> None:
    config = cli({"fleet": '{"minSize":"0","desiredCapacity":"0"}'})
    assert config.scales_to_zero and config.fleet_sizes == (0, 0, 1, 1)
    assert config.scaling.scale_to_zero.idle_minutes == 30
    assert not cli({"launchInstances": "false", "fleet": '{"minSize":0,"desiredCapacity":0}'}).scales_to_zero


def test_scalars_arrive_as_plain_strings() -> None:
    """`pulumi config set elastic-resnet:launchInstances false` and `... imageTag 2` reach the program as
    the strings "false" and "2"."""
    config = cli({"launchInstances": "false", "imageTag": "2", "alarmEmail": "oncall@example.com"})
    assert config.launch_instances is False
    assert config.image_tag == "2"
    assert config.fleet_sizes == (0, 0, 0, 0)


def test_sections_arrive_as_json_text_and_numbers_may_be_strings() -> None:
    # `pulumi config set --path elastic-resnet:fleet.minSize 2` may store the number as a string.
    config = cli({"fleet": json.dumps({"minSize": "2", "desiredCapacity": 2, "instanceType": "g5.xlarge"})})
    assert (config.fleet.min_size, config.fleet.desired_capacity, config.fleet.instance_type) == (2, 2, "g5.xlarge")


def test_a_section_given_as_plain_text_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="elastic-resnet:fleet: expected an object"):
        cli({"fleet": "g4dn.xlarge"})


def test_tag_keys_are_kept_as_written() -> None:
    config = cli({"tags": '{"CostCenter":"1234","team-name":"vision","Owner":"ml"}'})
    assert config.tags == {"CostCenter": "1234", "team-name": "vision", "Owner": "ml"}


def test_service_env_keys_are_kept_as_written() -> None:
    config = cli({"fleet": '{"serviceEnv":{"RESNET18_MAX_BATCH_SIZE":"64"}}'})
    assert config.fleet.service_env == {"RESNET18_MAX_BATCH_SIZE": "64"}


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"instanceTyp": "g5.xlarge"}, "instanceTyp"),  # a top-level typo
        ({"fleet": '{"minSzie":2}'}, "fleet.minSzie"),  # a typo inside a section
        ({"scaling": '{"thresholds":{"cpuPercnt":80}}'}, "scaling.thresholds.cpuPercnt"),
        ({"scaling": '{"timing":{"periodS":30}}'}, "scaling.timing.periodS"),  # fixed at 60 s: signals.PERIOD_S
    ],
)
def test_misspelled_keys_are_refused(values: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match="Extra inputs are not permitted") as info:
        cli(values)
    assert named in str(info.value)


def test_reserved_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="elastic-resnet:region cannot be set"):
        cli({"region": "eu-west-1"})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"fleet": {"instanceType": "m5.large"}}, "m5.large is not a supported instance type (supported: g4dn"),
        # refused with the reason (issue 19): burstable CPU credits, and arm64 until an arm64 image exists
        ({"fleet": {"instanceType": "t3.xlarge"}}, "t3.xlarge: burstable (t-family) instances run on CPU credits"),
        ({"fleet": {"instanceType": "t4g.large"}}, "t4g.large: burstable (t-family)"),
        ({"fleet": {"instanceType": "c7g.large"}}, "c7g.large is arm64 (Graviton): the images are x86_64 only"),
        ({"fleet": {"instanceType": "m7g.xlarge"}}, "m7g.xlarge is arm64 (Graviton)"),
        # hibernation writes the RAM to the root volume: 16 GiB for the OS and image + 4 GiB of RAM
        (
            {"fleet": {"instanceType": "c7a.large", "rootVolumeGb": 19}},
            "rootVolumeGb (19) is too small for c7a.large: it needs at least 20 GiB (16 GiB + 4 GiB of RAM",
        ),
        ({"fleet": {"rootVolumeGb": 59}}, "rootVolumeGb (59) is too small for g4dn.xlarge: it needs at least 60 GiB"),
        ({"fleet": {"instanceType": "p3.2xlarge"}}, "not supported by CUDA 13"),
        ({"fleet": {"instanceType": "g4ad.xlarge"}}, "AMD GPU"),
        ({"fleet": {"minSize": 3, "desiredCapacity": 2}}, "minSize <= desiredCapacity <= maxSize"),
        ({"fleet": {"serviceEnv": {"PATH": "/tmp"}}}, "only RESNET18_* settings"),
        ({"fleet": {"readyTimeoutS": 60}}, "fleet.readyTimeoutS"),
        # the launch hook's timeout (readyTimeoutS + 120 s) must stay within AWS's 7200 s
        ({"fleet": {"readyTimeoutS": 7081}}, "fleet.readyTimeoutS"),
        # one inbound rule per port per network: with HTTPS (80 and 443), 31 networks need 62 of AWS's 60
        (
            {
                "loadBalancer": {"certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/x"},
                "access": {"allowedCidrs": [f"10.0.{i}.0/24" for i in range(31)]},
            },
            "at most 30 networks",
        ),
        ({"scaling": {"thresholds": {"scaleInBelow": 75}}}, "scaleInBelow"),
        ({"scaling": {"thresholds": {"cpuPercent": 150}}}, "scaling.thresholds.cpuPercent"),
        ({"scaling": {"thresholds": {"queueLength": 0}}}, "scaling.thresholds.queueLength"),
        ({"scaling": {"timing": {"scaleOutDatapoints": 5}}}, "scaleOutDatapoints"),
        ({"scaling": {"scheduledActions": [{"name": "x", "cron": "daily"}]}}, "5 fields"),
        ({"scaling": {"scheduledActions": [{"name": "x", "cron": "61 * * * *"}]}}, "5 fields"),
        ({"network": {"vpcId": "vpc-1"}}, "vpcId, publicSubnetIds and privateSubnetIds together"),
        ({"alarmEmail": "not-an-address"}, "alarmEmail"),
        (
            {"fleet": {"minSize": 0, "desiredCapacity": 0}, "scaling": {"scaleToZero": {"idleMinutes": 10}}},
            "scaling.scaleToZero.idleMinutes (10) must be at least scaling.timing.scaleInEvaluationPeriods (15)",
        ),
        ({"scaling": {"scaleToZero": {"idleMinutes": 2}}}, "scaling.scaleToZero.idleMinutes"),
    ],
)
def test_bad_values_are_refused_with_the_key_named(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match="invalid elastic-resnet configuration") as info:
        parse({"region": "us-east-1", **values})
    assert message in str(info.value)


def test_alb_idle_timeout_must_stay_below_the_service_keep_alive() -> None:
    """The ALB must close idle connections before the service does, or it reuses one the service has
    just closed and answers 502: the pair is checked against service/timeouts.py's KEEPALIVE_S."""
    below = cli({"loadBalancer": json.dumps({"albIdleTimeoutS": KEEPALIVE_S - 1})})
    assert below.load_balancer.alb_idle_timeout_s == KEEPALIVE_S - 1
    assert cli({}).load_balancer.alb_idle_timeout_s < KEEPALIVE_S  # the default pair
    for too_long in (KEEPALIVE_S, KEEPALIVE_S + 1, 4000):
        with pytest.raises(ConfigError, match=f"must be below the service's keep-alive \\({KEEPALIVE_S} s"):
            cli({"loadBalancer": json.dumps({"albIdleTimeoutS": too_long})})


def test_a_stack_file_is_read_the_way_pulumi_up_reads_it(tmp_path: Path) -> None:
    stack_file = tmp_path / "Pulumi.prod.yaml"
    stack_file.write_text(
        "config:\n  aws:region: us-west-2\n  elastic-resnet:launchInstances: false\n"
        "  elastic-resnet:tags:\n    CostCenter: 1234\n"
        "  elastic-resnet:fleet:\n    instanceType: g5.xlarge\n    warmPoolMinSize: 2\n"
    )
    region, values = stack_file_cli_values(stack_file)
    assert region == "us-west-2"
    assert values["launchInstances"] == "false" and values["tags"] == '{"CostCenter":1234}'
    config = load_stack_file(stack_file)
    assert (config.stack, config.region, config.asg_name) == ("prod", "us-west-2", "elastic-resnet-prod-gpu")
    assert config.fleet.instance_type == "g5.xlarge" and config.fleet.warm_pool_min_size == 2
    assert config.tags == {"CostCenter": "1234"}


def test_the_longest_ready_timeout_keeps_the_launch_hook_within_aws_bound() -> None:
    fleet = parse({"region": "us-east-1", "fleet": {"readyTimeoutS": 7080}}).fleet
    assert fleet.hook_timeout_s == 7200  # PutLifecycleHook's HeartbeatTimeout: 30-7200 s


def test_fifty_networks_fit_without_https_and_thirty_with_it() -> None:
    cidrs = [f"10.0.{i}.0/24" for i in range(50)]
    assert len(parse({"region": "us-east-1", "access": {"allowedCidrs": cidrs}}).access.allowed_cidrs) == 50
    https = {"certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/x"}
    config = parse({"region": "us-east-1", "loadBalancer": https, "access": {"allowedCidrs": cidrs[:30]}})
    assert len(config.access.allowed_cidrs) == 30


@pytest.mark.parametrize(
    ("instance_type", "root_volume_gb"),
    [("c7a.large", 34), ("c7i.large", 34), ("m7i.xlarge", 46)],  # 30 GiB + the RAM (4, 4, 16 GiB)
)
def test_a_cpu_type_takes_its_kinds_defaults(instance_type: str, root_volume_gb: int) -> None:
    """Issue 19: with a CPU type, what was unset follows the kind: the CPU AMI, a root volume with room for
    the RAM hibernation writes to it, the shorter ready timeout; the group is named -cpu."""
    config = cli({"fleet": json.dumps({"instanceType": instance_type})})
    fleet = config.fleet
    assert fleet.kind is CPU
    assert fleet.ami_ssm_parameter == CPU.ami_parameter != GPU.ami_parameter
    assert (fleet.root_volume_gb, fleet.ready_timeout_s, fleet.hook_timeout_s) == (root_volume_gb, 600, 720)
    assert config.asg_name == "elastic-resnet-dev-cpu"


def test_the_gpu_defaults_are_unchanged() -> None:
    fleet = cli({}).fleet
    assert fleet.kind is GPU and fleet.ami_ssm_parameter == GPU.ami_parameter
    assert (fleet.root_volume_gb, fleet.ready_timeout_s) == (100, 1200)
    assert cli({}).asg_name == "elastic-resnet-dev-gpu"  # renaming it would replace existing stacks' groups


def test_set_values_are_kept_whatever_the_kind() -> None:
    fleet = cli({"fleet": '{"instanceType":"c7a.xlarge","rootVolumeGb":"50","readyTimeoutS":900,'
                 '"amiSsmParameter":"/my/ami"}'}).fleet  # fmt: skip
    assert (fleet.root_volume_gb, fleet.ready_timeout_s, fleet.ami_ssm_parameter) == (50, 900, "/my/ami")


def test_a_changed_instance_type_takes_the_new_kinds_defaults() -> None:
    """The planner's variants (with_changes): a GPU stack changed to a CPU type must not keep the GPU AMI,
    disk and timeout; what the user set is kept."""
    gpu = cli({"fleet": '{"readyTimeoutS":1500}'})
    cpu = with_changes(gpu, "fleet", instance_type="c7i.large")
    assert (cpu.fleet.ami_ssm_parameter, cpu.fleet.root_volume_gb) == (CPU.ami_parameter, 34)
    assert cpu.fleet.ready_timeout_s == 1500 and cpu.asg_name == "elastic-resnet-dev-cpu"
    back = with_changes(cpu, "fleet", instance_type="g5.xlarge")
    assert (back.fleet.ami_ssm_parameter, back.fleet.root_volume_gb) == (GPU.ami_parameter, 100)
    # after a change to another section too (the planner chains them)
    rescaled = with_changes(with_changes(gpu, "scaling", scheduled_actions=[]), "fleet", instance_type="c7a.large")
    assert (rescaled.fleet.ami_ssm_parameter, rescaled.fleet.root_volume_gb) == (CPU.ami_parameter, 34)


@pytest.mark.parametrize(("given", "read_only"), [(None, True), ("true", True), ("false", False), (False, False)])
def test_container_read_only_is_a_fleet_key_defaulting_to_on(tmp_path: Path, given: object, read_only: bool) -> None:
    """fleet.containerReadOnly (issue 20): the GPU fallback for a toolkit that refuses a read-only root, through
    the CLI layer like every key (`pulumi config set --path` may store the boolean as a string)."""
    fleet = {} if given is None else {"containerReadOnly": given}
    assert cli({"fleet": json.dumps(fleet)}).fleet.container_read_only is read_only
    stack_file = tmp_path / "Pulumi.dev.yaml"
    key = "" if given is None else f"    containerReadOnly: {str(given).lower()}\n"
    stack_file.write_text("config:\n  aws:region: us-east-1\n  elastic-resnet:fleet:\n    minSize: 1\n" + key)
    assert load_stack_file(stack_file).fleet.container_read_only is read_only


def test_container_read_only_refuses_what_is_not_a_boolean() -> None:
    with pytest.raises(ConfigError, match=r"fleet\.containerReadOnly"):
        cli({"fleet": '{"containerReadOnly":"sometimes"}'})
