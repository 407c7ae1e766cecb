"""The scaling signals: one definition read by the Pulumi program (alarms), the instances' user data
(what the CloudWatch agent publishes), the dashboard and the planner (infra/plan/simulator.py).

Pure data, no Pulumi import, so the planner and the deployed stack cannot disagree on a metric name, a
threshold key or the scale-in normalisation.

Every signal is published by the CloudWatch agent on the instance, and the agent runs only while the
instance is ``InService`` (user data gates it on the instance metadata's
``autoscaling/target-lifecycle-state``): an instance warming up for the warm pool (image pull, model
warm-up) never moves a signal. That is why CPU comes from the agent too, not from AWS/EC2, whose
per-group CPUUtilization includes every running instance of the group, warm-pool ones included.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.routes import CLIENT_ROUTES

from .instance_types import KINDS, InstanceKind

AGENT_NAMESPACE = "CWAgent"  # CPU and GPU, from the agent's cpu and nvidia_gpu plugins
SERVICE_NAMESPACE = "ElasticResnet"  # the service's own metrics, scraped from its /metrics
GROUP_DIMENSION = "AutoScalingGroupName"  # every signal is aggregated per Auto Scaling group
PERIOD_S = 60  # CloudWatch period of every scaling alarm (the agent publishes at this interval)

# The service's in-flight gauge carries one series per (service, endpoint): a request to /classify is
# in flight in the API service and again in the model service behind it. Only the client-facing
# endpoints of the API service count, so each request is counted once.
IN_FLIGHT_METRIC = "bentoml_service_request_in_progress"
CLIENT_ENDPOINTS = CLIENT_ROUTES
# Scraped several times per period so a one-minute datapoint is an average, not one instant; the
# per-instance average is then Sum / (scrapes per period x instances in service).
SCRAPE_INTERVAL_S = 15
SCRAPES_PER_PERIOD = PERIOD_S // SCRAPE_INTERVAL_S


@dataclass(frozen=True)
class Metric:
    namespace: str
    name: str
    statistic: str


@dataclass(frozen=True)
class Signal:
    """One load signal: metrics of the group and a metric-math expression over them."""

    key: str  # alarm names, query ids, the planner's samples
    description: str
    threshold_key: str  # the field of config.Thresholds that holds its scale-out mark
    metrics: dict[str, Metric]  # query id -> metric
    expression: str  # over the query ids, written as {id}


SIGNALS: tuple[Signal, ...] = (
    Signal(
        "cpu",
        "CPU utilisation (%)",
        "cpu_percent",
        {"cpu": Metric(AGENT_NAMESPACE, "cpu_usage_active", "Average")},
        "{cpu}",
    ),
    Signal(
        "gpu-utilization",
        "GPU utilisation (%)",
        "gpu_utilization_percent",
        {"gpu": Metric(AGENT_NAMESPACE, "nvidia_smi_utilization_gpu", "Average")},
        "{gpu}",
    ),
    Signal(
        "gpu-memory",
        "GPU memory used (%)",
        "gpu_memory_percent",
        {
            "used": Metric(AGENT_NAMESPACE, "nvidia_smi_memory_used", "Average"),
            "total": Metric(AGENT_NAMESPACE, "nvidia_smi_memory_total", "Average"),
        },
        "100 * {used} / {total}",
    ),
    Signal(
        "queue",
        "in-flight requests per in-service instance",
        "queue_length",
        {
            "inflight": Metric(SERVICE_NAMESPACE, IN_FLIGHT_METRIC, "Sum"),
            "instances": Metric("AWS/AutoScaling", "GroupInServiceInstances", "Average"),
        },
        f"IF({{instances}} > 0, {{inflight}} / ({SCRAPES_PER_PERIOD} * {{instances}}), 0)",
    ),
)

# What the agent collects on an instance (user data), derived from the signals above: the agent's plugin
# and measurements behind each signal's agent metrics (the queue comes from the service's /metrics).
AGENT_CPU_MEASUREMENTS = ["usage_active"]
AGENT_PLUGINS: dict[str, tuple[str, list[str]]] = {
    "cpu": ("cpu", AGENT_CPU_MEASUREMENTS),
    "gpu-utilization": ("nvidia_gpu", ["utilization_gpu"]),
    "gpu-memory": ("nvidia_gpu", ["memory_used", "memory_total"]),
}


def signals_for(kind: InstanceKind) -> tuple[Signal, ...]:
    """The signals that exist on this kind of instance, in SIGNALS' order: alarms, the scale-in term, the
    agent's plugins, the dashboard and the planner all read this, so a CPU fleet has no GPU signal."""
    return tuple(signal for signal in SIGNALS if signal.key in kind.signals)


def agent_measurements(signals: tuple[Signal, ...]) -> dict[str, list[str]]:
    """The CloudWatch agent's plugins and measurements these signals need (nothing for the queue)."""
    plugins: dict[str, list[str]] = {}
    for signal in signals:
        if signal.key in AGENT_PLUGINS:
            plugin, measurements = AGENT_PLUGINS[signal.key]
            plugins.setdefault(plugin, []).extend(measurements)
    return plugins


# Every kind names signals that exist; the agent's plugins cover every agent metric of SIGNALS.
assert all(set(kind.signals) <= {signal.key for signal in SIGNALS} for kind in KINDS.values()), "instance_types.py"
assert {s.key for s in SIGNALS if any(m.namespace == AGENT_NAMESPACE for m in s.metrics.values())} == set(AGENT_PLUGINS)

# The scale-in alarm compares the busiest signal, each rescaled so that its scale-out mark reads as
# this one's, with ``scale_in_below``: "all under 30" means the same distance from every mark.
REFERENCE_THRESHOLD_KEY = "cpu_percent"


def scale_in_factor(threshold: float, reference: float) -> float:
    """Multiplier that maps a signal whose scale-out mark is ``threshold`` onto the reference scale."""
    return reference / threshold


def normalised(value: float, threshold: float, reference: float) -> float:
    return value * scale_in_factor(threshold, reference)


# --- Scale to zero (fleet.minSize 0) -------------------------------------------------------------------
# With no instance in service nothing above reports. The load balancer's own metrics still do: requests
# it routed to a target, and those it answered itself with 503 because no target was there. The group's
# metrics (AWS/AutoScaling) are published every minute whatever its size, so the expressions below
# always have datapoints; FILL turns "no request this minute" (the ALB publishes nothing) into 0.
ALB_NAMESPACE = "AWS/ApplicationELB"
ALB_DIMENSION = "LoadBalancer"
ARRIVALS = {
    "refused": Metric(ALB_NAMESPACE, "HTTPCode_ELB_503_Count", "Sum"),  # no target: the ALB's own 503
    "routed": Metric(ALB_NAMESPACE, "RequestCount", "Sum"),  # only requests it could route to a target
}
GROUP_DESIRED = Metric("AWS/AutoScaling", "GroupDesiredCapacity", "Maximum")
GROUP_IN_SERVICE = Metric("AWS/AutoScaling", "GroupInServiceInstances", "Minimum")
_ARRIVED = "FILL({refused}, 0) + FILL({routed}, 0)"
# Requests that met a group sized zero in the minute: >= 1 wakes it (WAKE_STEPS say how many instances).
WAKE_EXPRESSION = f"IF({{desired}} < 1, {_ARRIVED}, 0)"
# 1 datapoint out of the last 2, not 1 of 1: CloudWatch's metric-math documentation warns that an alarm on
# FILL can stay stuck when the newest minute is published late (FILL makes it 0 at every evaluation) and
# advises M out of N. Requests in either of the last two minutes wake the group, so it wakes no later.
WAKE_EVALUATION_PERIODS, WAKE_DATAPOINTS = 2, 1
# Requests in the minute while an instance serves (1 while none does, so a wake-up is never undone):
# under 1 for scaleToZero.idleMinutes sends the group back to zero.
IDLE_EXPRESSION = f"IF({{in_service}} >= 1, {_ARRIVED}, 1)"
# The load signals' scale-in stops at one instance: only an idle fleet goes to zero.
SCALE_IN_FLOOR_EXPRESSION = "IF({in_service} > 1, {busiest}, 100)"


def wake_steps(requests_per_instance: int, max_instances: int) -> list[tuple[float, float | None, int]]:
    """The wake-up policy's steps: (lower, upper, instances to add), bounds relative to the alarm's
    threshold of 1 request, as Auto Scaling's step adjustments read them: fewer than
    ``requests_per_instance`` requests in the minute wake one instance, up to that many again two, ...,
    and ``max_instances`` for anything above."""
    steps: list[tuple[float, float | None, int]] = []
    for count in range(1, max_instances + 1):
        lower = 0.0 if count == 1 else (count - 1) * requests_per_instance - 1.0
        upper = None if count == max_instances else count * requests_per_instance - 1.0
        steps.append((lower, upper, count))
    return steps


def step_for(value: float, threshold: float, steps: list[tuple[float, float | None, int]]) -> int:
    """The adjustment Auto Scaling applies for a breaching ``value`` (lower bound inclusive)."""
    above = value - threshold
    for lower, upper, adjustment in steps:
        if above >= lower and (upper is None or above < upper):
            return adjustment
    return 0
