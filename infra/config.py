"""The stack's configuration: typed, defaulted and validated before any resource is declared.

Every key lives under the ``elastic-resnet:`` namespace of the stack file (see Pulumi.dev.yaml); with
only ``aws:region`` set, the defaults below make a working stack: one g4dn.xlarge in service, one
stopped and prewarmed in the warm pool, up to 10 under load.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .instance_types import GPU_INSTANCE_TYPES, UNSUPPORTED_FAMILIES

CONFIG_NAMESPACE = "elastic-resnet"
SERVICE_PORT = 3000  # bentoml serve's port in the container
READINESS_PATH = "/readyz"  # 200 only once the model is loaded and warmed up on the GPU
DEFAULT_AMI_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"


class ConfigError(ValueError):
    """A configuration value the stack cannot be built with; raised before any resource exists."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Thresholds(_Strict):
    """Scale out when ANY signal passes its high mark; scale in when ALL are under ``scale_in_below``.

    Each signal is compared in its own unit; for the scale-in alarm each is normalised so that its
    scale-out mark reads as ``cpu_percent``'s (70 by default), which makes "all under 30" mean the same
    distance from every scale-out mark."""

    cpu_percent: float = Field(70, gt=0, le=100)
    gpu_utilization_percent: float = Field(70, gt=0, le=100)
    gpu_memory_percent: float = Field(60, gt=0, le=100)  # the seed design's figure
    queue_length: float = Field(50, gt=0, description="in-flight requests per instance")
    scale_in_below: float = Field(30, gt=0, le=100, description="in the normalised unit, see above")

    @model_validator(mode="after")
    def _scale_in_below_every_scale_out_mark(self) -> Thresholds:
        if self.scale_in_below >= self.cpu_percent:
            raise ValueError(
                f"scale_in_below ({self.scale_in_below}) must be below cpu_percent ({self.cpu_percent}), "
                "or the fleet would scale in and out at the same load"
            )
        return self


class ScalingTiming(_Strict):
    """How quickly alarms react, in 60-second CloudWatch periods."""

    period_s: int = Field(60, ge=10)
    scale_out_evaluation_periods: int = Field(3, ge=1)
    scale_out_datapoints: int = Field(2, ge=1)  # 2 of 3 minutes over: one noisy minute does not scale
    scale_in_evaluation_periods: int = Field(15, ge=1)
    scale_in_datapoints: int = Field(15, ge=1)  # 15 quiet minutes before a GPU is released
    instance_warmup_s: int = Field(180, ge=0, description="boot-to-useful, for metrics and step scaling")
    scale_out_percent: int = Field(50, ge=1, description="capacity added per scale-out step (at least 1)")

    @model_validator(mode="after")
    def _datapoints_fit(self) -> ScalingTiming:
        if self.scale_out_datapoints > self.scale_out_evaluation_periods:
            raise ValueError("scale_out_datapoints cannot exceed scale_out_evaluation_periods")
        if self.scale_in_datapoints > self.scale_in_evaluation_periods:
            raise ValueError("scale_in_datapoints cannot exceed scale_in_evaluation_periods")
        return self


class ScheduledAction(_Strict):
    """Prewarm for a known peak: set the group's size on a cron schedule."""

    name: str
    cron: str = Field(description="'min hour day month weekday', e.g. '0 8 * * MON-FRI'")
    min_size: int | None = Field(None, ge=0)
    max_size: int | None = Field(None, ge=0)
    desired_capacity: int | None = Field(None, ge=0)
    time_zone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"cron {value!r} must have 5 fields: minute hour day-of-month month day-of-week")
        return value


class StackConfig(_Strict):
    project: str = Field("elastic-resnet", pattern=r"^[a-z][a-z0-9-]{1,20}$")
    stack: str = Field("dev", pattern=r"^[a-zA-Z0-9-]{1,20}$")
    region: str

    # The fleet
    launch_instances: bool = Field(
        True, description="false: build everything but launch no instance (first deploy, before the image is pushed)"
    )
    instance_type: str = "g4dn.xlarge"
    min_size: int = Field(1, ge=0)
    max_size: int = Field(10, ge=1)
    desired_capacity: int = Field(1, ge=0)
    warm_pool_min_size: int = Field(1, ge=0, description="stopped, prewarmed instances kept ready")
    # None: the pool holds exactly warm_pool_min_size stopped instances. (AWS's own default, max_size,
    # keeps max_size - desired instances stopped; the planner shows they add EBS cost and no latency gain
    # for the default traffic: docs/planner.md.)
    warm_pool_max_prepared: int | None = Field(None, ge=0, description="default: warm_pool_min_size")
    ami_ssm_parameter: str = DEFAULT_AMI_PARAMETER
    ami_id: str | None = Field(None, pattern=r"^ami-[0-9a-f]+$", description="pins an AMI instead of the SSM one")
    root_volume_gb: int = Field(100, ge=60)
    health_check_grace_s: int = Field(300, ge=0)
    instance_refresh_min_healthy_percent: int = Field(100, ge=0, le=100)

    # The container
    image_tag: str = "latest"
    image_uri: str | None = Field(None, description="a full image URI; default: this stack's ECR repository")
    service_env: dict[str, str] = Field(default_factory=dict, description="RESNET18_* settings for the container")

    # Network and endpoint
    vpc_cidr: str = "10.42.0.0/16"
    availability_zones: int = Field(2, ge=2, le=4)
    vpc_id: str | None = None
    public_subnet_ids: list[str] = Field(default_factory=list)
    private_subnet_ids: list[str] = Field(default_factory=list)
    certificate_arn: str | None = None
    alb_idle_timeout_s: int = Field(60, ge=1, le=4000)
    deregistration_delay_s: int = Field(30, ge=0, le=3600)

    # Scaling
    thresholds: Thresholds = Thresholds()  # frozen models: a shared default is safe
    timing: ScalingTiming = ScalingTiming()
    scheduled_actions: list[ScheduledAction] = Field(default_factory=list)
    predictive_scaling: Literal["off", "forecast-only", "forecast-and-scale"] = "off"

    # Operations
    alarm_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    log_retention_days: int = 30
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("instance_type")
    @classmethod
    def _gpu_instance(cls, value: str) -> str:
        family = value.split(".")[0]
        if family in UNSUPPORTED_FAMILIES:
            raise ValueError(f"{value}: {UNSUPPORTED_FAMILIES[family]}")
        if value not in GPU_INSTANCE_TYPES:
            known = ", ".join(GPU_INSTANCE_TYPES)
            raise ValueError(f"{value} is not a supported GPU instance type (supported: {known})")
        return value

    @field_validator("service_env")
    @classmethod
    def _service_settings_only(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.fullmatch(r"RESNET18_[A-Z_]+", key):
                raise ValueError(f"service_env key {key!r}: only RESNET18_* settings are passed to the container")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> StackConfig:
        if not self.min_size <= self.desired_capacity <= self.max_size:
            raise ValueError(
                f"need min_size <= desired_capacity <= max_size, got {self.min_size}/{self.desired_capacity}/"
                f"{self.max_size}"
            )
        existing = [self.vpc_id, self.public_subnet_ids, self.private_subnet_ids]
        if any(existing) and not all(existing):
            raise ValueError("an existing network needs vpc_id, public_subnet_ids and private_subnet_ids together")
        if self.vpc_id and (len(self.public_subnet_ids) < 2 or len(self.private_subnet_ids) < 2):
            raise ValueError("an existing network needs at least two public and two private subnets (two AZs)")
        return self

    @property
    def name(self) -> str:
        """Prefix of physical names: project and stack, so two stacks never collide."""
        return f"{self.project}-{self.stack}"

    @property
    def fleet_sizes(self) -> tuple[int, int, int, int | None]:
        """(min, desired, warm pool min, warm pool max prepared), all zero while instances are held back."""
        if not self.launch_instances:
            return 0, 0, 0, 0
        return self.min_size, self.desired_capacity, self.warm_pool_min_size, self.warm_pool_max_prepared

    @property
    def asg_name(self) -> str:
        # Fixed, not auto-named: the instances' user data and the CloudWatch agent need it before the
        # group exists.
        return f"{self.name}-gpu"


def parse(values: dict[str, Any]) -> StackConfig:
    """Validate raw configuration; every problem is reported at once, by key."""
    try:
        return StackConfig.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'config'}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"invalid {CONFIG_NAMESPACE} configuration: {problems}") from None


# Stack-file keys are camelCase as Pulumi's convention; the model's fields are snake_case.
def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _snake_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {_snake(k) if not k.startswith("RESNET18_") else k: _snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake_keys(v) for v in value]
    return value


def from_stack_values(values: dict[str, Any], project: str, stack: str, region: str) -> StackConfig:
    """Stack-file values (camelCase keys, as ``pulumi config`` stores them) -> StackConfig."""
    return parse({"project": project, "stack": stack, "region": region, **_snake_keys(values)})
