"""The stack's configuration: typed, defaulted and validated before any resource is declared.

Shaped like the components: each component (network, load balancer, fleet, scaling) takes its own
section. In the stack file every key sits under the ``elastic-resnet:`` namespace, camelCase (see
Pulumi.dev.yaml and docs/deploy.md); with only ``aws:region`` set, the defaults make a working stack:
one g4dn.xlarge in service, one stopped and prewarmed in the warm pool, up to 10 under load.

One loader for everyone: :func:`from_cli_values` takes the values exactly as the Pulumi CLI hands them
to the program (a plain string for a scalar, JSON text for an object or a list); the Pulumi program
(``infra/__main__.py``), the planner and the tests all go through it, the latter two via
:func:`stack_file_cli_values`, which encodes a stack file the way the CLI does.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_origin

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from service.timeouts import KEEPALIVE_S

from .instance_types import DEFAULT_INSTANCE_TYPE, INSTANCE_TYPES, InstanceKind, InstanceType, refusal
from .signals import PERIOD_S, REFERENCE_THRESHOLD_KEY, SIGNALS

CONFIG_NAMESPACE = "elastic-resnet"
SERVICE_PORT = 3000  # bentoml serve's port in the container
READINESS_PATH = "/readyz"  # 200 only once the model is loaded and warmed up
MAX_HOOK_TIMEOUT_S = 7200  # AWS's bound on a lifecycle hook's HeartbeatTimeout (PutLifecycleHook: 30-7200 s)
LAUNCH_HOOK_MARGIN_S = 120  # the launch hook starts before the instance boots; its deadline counts from boot
SECURITY_GROUP_INBOUND_RULES = 60  # AWS's default quota of inbound rules per security group (adjustable)
RESERVED_KEYS = ("project", "stack", "region")  # from Pulumi itself and aws:region, never from our namespace


class ConfigError(ValueError):
    """A configuration value the stack cannot be built with; raised before any resource exists."""


class _Section(BaseModel):
    # camelCase in the stack file (Pulumi's convention), snake_case in Python; unknown keys are refused.
    # Numbers given as strings (`pulumi config set --path` may store them so) are accepted.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        coerce_numbers_to_str=True,
    )


class Thresholds(_Section):
    """Scale out when ANY signal passes its high mark; scale in when ALL are under ``scale_in_below``.

    Each signal is compared in its own unit; for the scale-in alarm each is normalised so that its
    scale-out mark reads as ``cpu_percent``'s (70 by default), which makes "all under 30" mean the same
    distance from every scale-out mark (infra/signals.py)."""

    cpu_percent: float = Field(70, gt=0, le=100)
    gpu_utilization_percent: float = Field(70, gt=0, le=100)
    gpu_memory_percent: float = Field(60, gt=0, le=100)  # the seed design's figure
    queue_length: float = Field(50, gt=0, description="in-flight requests per instance")
    scale_in_below: float = Field(30, gt=0, le=100, description="in the normalised unit, see above")

    def of(self, threshold_key: str) -> float:
        value = getattr(self, threshold_key)
        assert isinstance(value, float | int)
        return float(value)

    @property
    def reference(self) -> float:
        return self.of(REFERENCE_THRESHOLD_KEY)

    @model_validator(mode="after")
    def _scale_in_below_every_scale_out_mark(self) -> Thresholds:
        if self.scale_in_below >= self.reference:
            raise ValueError(
                f"scaleInBelow ({self.scale_in_below:g}) must be below cpuPercent ({self.reference:g}), "
                "or the fleet would scale in and out at the same load"
            )
        return self


class ScalingTiming(_Section):
    """How quickly alarms react, in one-minute CloudWatch periods (``signals.PERIOD_S``)."""

    scale_out_evaluation_periods: int = Field(3, ge=1)
    scale_out_datapoints: int = Field(2, ge=1)  # 2 of 3 minutes over: one noisy minute does not scale
    scale_in_evaluation_periods: int = Field(15, ge=1)
    scale_in_datapoints: int = Field(15, ge=1)  # 15 quiet minutes before a GPU is released
    instance_warmup_s: int = Field(180, ge=0, description="in service to useful metrics")
    scale_out_percent: int = Field(50, ge=1, description="capacity added per scale-out step (at least 1)")

    @property
    def scale_in_cooldown_s(self) -> int:
        """After a scale-in, the next one waits for a whole new quiet window."""
        return self.scale_in_evaluation_periods * PERIOD_S

    @model_validator(mode="after")
    def _datapoints_fit(self) -> ScalingTiming:
        if self.scale_out_datapoints > self.scale_out_evaluation_periods:
            raise ValueError("scaleOutDatapoints cannot exceed scaleOutEvaluationPeriods")
        if self.scale_in_datapoints > self.scale_in_evaluation_periods:
            raise ValueError("scaleInDatapoints cannot exceed scaleInEvaluationPeriods")
        return self


class ScheduledAction(_Section):
    """Prewarm for a known peak: set the group's size on a cron schedule."""

    name: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    cron: str = Field(description="Unix cron, 'min hour day month weekday', e.g. '0 8 * * MON-FRI'")
    min_size: int | None = Field(None, ge=0)
    max_size: int | None = Field(None, ge=0)
    desired_capacity: int | None = Field(None, ge=0)
    time_zone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _unix_cron(cls, value: str) -> str:
        # Auto Scaling's Recurrence is Unix cron with 5 fields; croniter reads the same dialect.
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"cron {value!r} must be 5 fields: minute hour day-of-month month day-of-week")
        return value


class NetworkConfig(_Section):
    cidr: str = "10.42.0.0/16"
    availability_zones: int = Field(2, ge=2, le=4)
    vpc_id: str | None = None
    public_subnet_ids: list[str] = Field(default_factory=list)
    private_subnet_ids: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _existing_network_complete(self) -> NetworkConfig:
        existing = [self.vpc_id, self.public_subnet_ids, self.private_subnet_ids]
        if any(existing) and not all(existing):
            raise ValueError("an existing network needs vpcId, publicSubnetIds and privateSubnetIds together")
        if self.vpc_id and (len(self.public_subnet_ids) < 2 or len(self.private_subnet_ids) < 2):
            raise ValueError("an existing network needs at least two public and two private subnets (two AZs)")
        return self


class LoadBalancerConfig(_Section):
    certificate_arn: str | None = None
    alb_idle_timeout_s: int = Field(60, ge=1, le=4000)
    deregistration_delay_s: int = Field(30, ge=0, le=3600)

    @field_validator("alb_idle_timeout_s")
    @classmethod
    def _below_the_service_keep_alive(cls, value: int) -> int:
        # The server must keep an idle connection open longer than the ALB, or the ALB reuses one the
        # server has just closed and answers 502 (service/timeouts.py).
        if value >= KEEPALIVE_S:
            raise ValueError(
                f"albIdleTimeoutS ({value}) must be below the service's keep-alive ({KEEPALIVE_S} s, "
                "service/timeouts.py), or the load balancer answers 502 on connections the service closed"
            )
        return value


class FleetConfig(_Section):
    """The instances. ``amiSsmParameter``, ``rootVolumeGb`` and ``readyTimeoutS`` default to the instance
    type's kind (infra/instance_types.py): unset, they follow ``instanceType`` (a CPU type gets the CPU
    AMI, a root volume with room for its RAM, a shorter timeout); set, they are kept and checked."""

    instance_type: str = DEFAULT_INSTANCE_TYPE
    min_size: int = Field(1, ge=0)
    max_size: int = Field(10, ge=1)
    desired_capacity: int = Field(1, ge=0, description="initial size only: later, scaling owns it")
    warm_pool_min_size: int = Field(1, ge=0, description="stopped, prewarmed instances kept ready")
    # AWS's MaxGroupPreparedCapacity: a cap on the whole group (in service + pool), not on the pool; the
    # pool holds max(warmPoolMinSize, warmPoolMaxPrepared - desired). None: warmPoolMinSize, so the pool
    # holds exactly warmPoolMinSize stopped instances (AWS's own default, maxSize, keeps maxSize - desired
    # stopped; the planner shows they add EBS cost and no latency gain: docs/planner.md).
    warm_pool_max_prepared: int | None = Field(None, ge=0)
    ami_id: str | None = Field(None, pattern=r"^ami-[0-9a-f]+$", description="pin an AMI (recommended)")
    # Unset (None), these three take the instance kind's default (_kind_defaults): typed as what they hold
    # once validated, which is all the stack and the planner ever read.
    ami_ssm_parameter: str = Field(None, description="default: the kind's public SSM parameter")  # type: ignore[assignment]
    root_volume_gb: int = Field(None, ge=8, description="GiB; default: the kind's, + RAM if it hibernates")  # type: ignore[assignment]
    health_check_grace_s: int = Field(300, ge=0)
    ready_timeout_s: int = Field(  # type: ignore[assignment]
        None,
        ge=300,
        le=MAX_HOOK_TIMEOUT_S - LAUNCH_HOOK_MARGIN_S,  # the launch hook's timeout must stay within AWS's bound
        description="boot to /readyz, else the instance is abandoned",
    )
    instance_refresh_min_healthy_percent: int = Field(100, ge=0, le=100)
    image_uri: str | None = Field(None, description="a full image URI; default: this stack's ECR repository")
    service_env: dict[str, str] = Field(default_factory=dict, description="RESNET18_* settings for the container")
    log_retention_days: int = 30
    # The hardened container runs with a read-only root (infra/container.py). false: the documented fallback
    # for an NVIDIA container toolkit that refuses one (1.20.0): no --read-only, all else hardened as before;
    # `pulumi up` warns while it is off.
    container_read_only: bool = Field(True, description="false: the container's root is writable (GPU fallback)")

    @field_validator("instance_type")
    @classmethod
    def _supported_instance(cls, value: str) -> str:
        reason = refusal(value)
        if reason is not None:
            raise ValueError(reason)
        return value

    @field_validator("service_env")
    @classmethod
    def _service_settings_only(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key.startswith("RESNET18_") or not key.replace("_", "").isalnum() or not key.isupper():
                raise ValueError(f"serviceEnv key {key!r}: only RESNET18_* settings are passed to the container")
        return value

    @model_validator(mode="after")
    def _kind_defaults(self) -> FleetConfig:
        """Fill what was left unset from the instance type's kind; check a set root volume against it."""
        kind, instance = self.kind, self.instance
        defaults = {
            "ami_ssm_parameter": kind.ami_parameter,
            "root_volume_gb": instance.root_volume_gb,
            "ready_timeout_s": kind.ready_timeout_s,
        }
        for field, value in defaults.items():
            if getattr(self, field) is None:
                object.__setattr__(self, field, value)  # frozen model; the field stays out of fields_set
        if self.root_volume_gb < instance.min_root_volume_gb:
            room = f"{kind.min_root_volume_gb} GiB"
            if kind.hibernates:
                room += f" + {instance.memory_gib} GiB of RAM, which hibernation writes to the encrypted root volume"
            raise ValueError(
                f"rootVolumeGb ({self.root_volume_gb}) is too small for {self.instance_type}: it needs at least "
                f"{instance.min_root_volume_gb} GiB ({room})"
            )
        return self

    @property
    def instance(self) -> InstanceType:
        return INSTANCE_TYPES[self.instance_type]

    @property
    def kind(self) -> InstanceKind:
        """GPU or CPU: what differs between the two fleets (infra/instance_types.py)."""
        return self.instance.kind

    @model_validator(mode="after")
    def _sizes(self) -> FleetConfig:
        if not self.min_size <= self.desired_capacity <= self.max_size:
            raise ValueError(
                f"need minSize <= desiredCapacity <= maxSize, got {self.min_size}/{self.desired_capacity}/"
                f"{self.max_size}"
            )
        return self

    @property
    def hook_timeout_s(self) -> int:
        """The launch lifecycle hook's timeout: the instance's own deadline (counted from boot) plus the
        time from the hook starting to the instance booting."""
        return self.ready_timeout_s + LAUNCH_HOOK_MARGIN_S

    @property
    def capacity_timeout(self) -> str:
        """How long `pulumi up` waits for the group's instances (the provider's wait_for_capacity_timeout,
        default 10m): a cold instance may use its whole hook timeout, plus a replacement's boot."""
        return f"{math.ceil((self.hook_timeout_s + 300) / 60)}m"


class AccessConfig(_Section):
    """Who may call the endpoint (docs/security.md). Defaults keep a first deploy easy and are public:
    `pulumi up` warns until API keys or an allow-list close it."""

    api_keys_parameter: str | None = Field(
        None,
        pattern=r"^/[A-Za-z0-9_.\-/]{1,1010}$",
        description="SSM Parameter Store SecureString (full name, starting with /) holding the API keys",
    )
    api_keys_kms_key_arn: str | None = Field(
        None, pattern=r"^arn:aws[a-z-]*:kms:", description="the customer-managed key the parameter is encrypted with"
    )
    allowed_cidrs: list[str] = Field(default_factory=lambda: ["0.0.0.0/0"], min_length=1, max_length=50)
    internal: bool = Field(False, description="an internal load balancer: callers inside the VPC only")
    expose_docs: bool = Field(False, description="serve the OpenAPI document and docs UI through the load balancer")
    rate_limit_per_5min: int | None = Field(
        None, ge=10, le=2_000_000_000, description="AWS WAF: requests per client IP per 5 minutes (off when unset)"
    )
    monthly_budget_usd: float | None = Field(None, gt=0, description="AWS Budgets alert on the stack's tag")
    budget_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", description="default: alarmEmail")

    @field_validator("allowed_cidrs")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                network = ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"allowedCidrs: {cidr!r} is not a network in CIDR notation ({exc})") from None
            if network.version != 4:
                raise ValueError(f"allowedCidrs: {cidr} is IPv6; the load balancer is IPv4 only")
        return value

    @property
    def public(self) -> bool:
        """Reachable by anyone on the internet without a key."""
        return not self.internal and "0.0.0.0/0" in self.allowed_cidrs and self.api_keys_parameter is None


class ScaleToZero(_Section):
    """Used when ``fleet.minSize`` is 0: the load balancer's metrics wake the group, an idle fleet goes
    back to zero (infra/signals.py)."""

    idle_minutes: int = Field(30, ge=5, le=1440, description="no request for this long: back to zero")
    requests_per_instance_per_minute: int = Field(6000, ge=1, description="a wake-up adds one instance per this many")
    max_wake_instances: int = Field(4, ge=1, description="the most instances one wake-up starts")


class ScalingConfig(_Section):
    thresholds: Thresholds = Thresholds()  # frozen models: a shared default is safe
    timing: ScalingTiming = ScalingTiming()
    scale_to_zero: ScaleToZero = ScaleToZero()
    scheduled_actions: list[ScheduledAction] = Field(default_factory=list)
    predictive_scaling: Literal["off", "forecast-only", "forecast-and-scale"] = "off"


class StackConfig(_Section):
    project: str = Field("elastic-resnet", pattern=r"^[a-z][a-z0-9-]{1,20}$")
    stack: str = Field("dev", pattern=r"^[a-zA-Z0-9-]{1,20}$")
    region: str

    # The keys set with `pulumi config set` on every release stay scalars at the top.
    launch_instances: bool = Field(
        True, description="false: build everything but launch no instance (first deploy, before the image is pushed)"
    )
    image_tag: str = "latest"
    alarm_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    tags: dict[str, str] = Field(default_factory=dict)  # keys kept as written (`CostCenter` stays `CostCenter`)

    # One section per component.
    fleet: FleetConfig = FleetConfig()
    network: NetworkConfig = NetworkConfig()
    load_balancer: LoadBalancerConfig = LoadBalancerConfig()
    scaling: ScalingConfig = ScalingConfig()
    access: AccessConfig = AccessConfig()

    @model_validator(mode="after")
    def _budget_has_a_recipient(self) -> StackConfig:
        if self.access.monthly_budget_usd is not None and self.budget_emails == []:
            raise ValueError("access.monthlyBudgetUsd needs access.budgetEmail or alarmEmail to send its alerts to")
        return self

    @model_validator(mode="after")
    def _inbound_rules_fit(self) -> StackConfig:
        """The ALB's security group takes one inbound rule per listener port per allowed network."""
        ports = 2 if self.load_balancer.certificate_arn else 1  # HTTPS adds 443 beside 80 (the redirect)
        if len(self.access.allowed_cidrs) * ports > SECURITY_GROUP_INBOUND_RULES:
            raise ValueError(
                f"access.allowedCidrs: {len(self.access.allowed_cidrs)} networks x {ports} listener ports is more "
                f"than the {SECURITY_GROUP_INBOUND_RULES} inbound rules AWS allows a security group by default: "
                f"at most {SECURITY_GROUP_INBOUND_RULES // ports} networks (merge them into wider CIDRs)"
            )
        return self

    @property
    def budget_emails(self) -> list[str]:
        email = self.access.budget_email or self.alarm_email
        return [email] if email else []

    @model_validator(mode="after")
    def _scale_to_zero_coherent(self) -> StackConfig:
        if self.fleet.min_size == 0:
            idle, window = self.scaling.scale_to_zero.idle_minutes, self.scaling.timing.scale_in_evaluation_periods
            if idle < window:
                raise ValueError(
                    f"with minSize 0, scaling.scaleToZero.idleMinutes ({idle}) must be at least "
                    f"scaling.timing.scaleInEvaluationPeriods ({window}): the last instance leaves no sooner "
                    "than the others"
                )
        return self

    @property
    def scales_to_zero(self) -> bool:
        """The wake-up path is declared: minSize 0 on a stack that launches instances."""
        return self.launch_instances and self.fleet.min_size == 0

    @property
    def name(self) -> str:
        """Prefix of physical names: project and stack, so two stacks never collide."""
        return f"{self.project}-{self.stack}"

    @property
    def fleet_sizes(self) -> tuple[int, int, int, int]:
        """(min, desired, warm pool min, warm pool max prepared), all zero while instances are held back."""
        if not self.launch_instances:
            return 0, 0, 0, 0
        fleet = self.fleet
        prepared = fleet.warm_pool_max_prepared
        return (
            fleet.min_size,
            fleet.desired_capacity,
            fleet.warm_pool_min_size,
            prepared if prepared is not None else fleet.warm_pool_min_size,
        )

    @property
    def asg_name(self) -> str:
        # Fixed, not auto-named: the instances' user data and the CloudWatch agent need it before the
        # group exists. Named after the kind: "-gpu" as it always was (renaming it would replace an existing
        # stack's group), "-cpu" for a CPU fleet. Changing instanceType across kinds replaces the group.
        return f"{self.name}-{self.fleet.kind.name}"


# Every signal's threshold key must be a Thresholds field: checked once, at import.
assert {signal.threshold_key for signal in SIGNALS} <= set(Thresholds.model_fields), "signals.py vs Thresholds"


def parse(values: Mapping[str, Any]) -> StackConfig:
    """Validate configuration values; every problem is reported at once, by key."""
    try:
        return StackConfig.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'config'}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"invalid {CONFIG_NAMESPACE} configuration: {problems}") from None


def _structured(key: str) -> bool:
    """Whether the CLI passes this key's value as JSON text: sections, maps and lists."""
    for name, field in StackConfig.model_fields.items():
        if key in (name, field.alias):
            annotation = field.annotation
            return get_origin(annotation) in (dict, list) or (
                isinstance(annotation, type) and issubclass(annotation, BaseModel)
            )
    return False


def from_cli_values(values: Mapping[str, str], project: str, stack: str, region: str) -> StackConfig:
    """The ``elastic-resnet:`` keys (namespace stripped) as the Pulumi CLI passes them -> StackConfig."""
    decoded: dict[str, Any] = {}
    for key, text in values.items():
        if key in RESERVED_KEYS:
            raise ConfigError(f"{CONFIG_NAMESPACE}:{key} cannot be set: it comes from Pulumi (or aws:region)")
        if _structured(key):
            try:
                decoded[key] = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{CONFIG_NAMESPACE}:{key}: expected an object or a list, got {text!r}") from exc
        else:
            decoded[key] = text
    return parse({"project": project, "stack": stack, "region": region, **decoded})


def cli_encoding(value: Any) -> str:
    """A stack-file value as the Pulumi CLI hands it to the program: scalars as their plain text (YAML
    ``true`` is ``"true"``, ``1`` is ``"1"``), objects and lists as compact JSON with sorted keys (Go's
    encoding/json)."""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def stack_file_cli_values(path: Path) -> tuple[str | None, dict[str, str]]:
    """(aws:region, our namespace's keys) of a stack file, encoded as the CLI passes them."""
    config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    prefix = f"{CONFIG_NAMESPACE}:"
    values = {key.removeprefix(prefix): cli_encoding(value) for key, value in config.items() if key.startswith(prefix)}
    region = config.get("aws:region")
    return (str(region) if region is not None else None), values


def load_stack_file(path: Path, project: str = CONFIG_NAMESPACE, default_region: str = "us-east-1") -> StackConfig:
    """A stack file (``Pulumi.<stack>.yaml``) read as `pulumi up` would read it (the planner's way in)."""
    region, values = stack_file_cli_values(path)
    return from_cli_values(values, project, path.stem.removeprefix("Pulumi."), region or default_region)


def with_changes(config: StackConfig, section: str, **changes: Any) -> StackConfig:
    """A copy of ``config`` with fields of one section changed, validated like a stack file (the
    planner's variants)."""
    current = getattr(config, section)
    assert isinstance(current, BaseModel), f"{section} is not a section"
    # Only fields that were set, in every section: a default that follows the instance type (FleetConfig)
    # must follow a changed instanceType, not keep the old type's value, however many changes came before.
    unset_dropped = config.model_dump(exclude_unset=True)
    return StackConfig.model_validate({**unset_dropped, section: {**unset_dropped.get(section, {}), **changes}})
