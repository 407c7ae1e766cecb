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

AGENT_NAMESPACE = "CWAgent"  # CPU and GPU, from the agent's cpu and nvidia_gpu plugins
SERVICE_NAMESPACE = "ElasticResnet"  # the service's own metrics, scraped from its /metrics
GROUP_DIMENSION = "AutoScalingGroupName"  # every signal is aggregated per Auto Scaling group
PERIOD_S = 60  # CloudWatch period of every scaling alarm (the agent publishes at this interval)

# The service's in-flight gauge carries one series per (service, endpoint): a request to /classify is
# in flight in the API service and again in the model service behind it. Only the client-facing
# endpoints of the API service count, so each request is counted once.
IN_FLIGHT_METRIC = "bentoml_service_request_in_progress"
CLIENT_ENDPOINTS = ("/classify", "/predict")
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

# What the agent collects on an instance (user data), derived from the signals above.
AGENT_CPU_MEASUREMENTS = ["usage_active"]
AGENT_GPU_MEASUREMENTS = ["utilization_gpu", "memory_used", "memory_total"]

# The scale-in alarm compares the busiest signal, each rescaled so that its scale-out mark reads as
# this one's, with ``scale_in_below``: "all under 30" means the same distance from every mark.
REFERENCE_THRESHOLD_KEY = "cpu_percent"


def scale_in_factor(threshold: float, reference: float) -> float:
    """Multiplier that maps a signal whose scale-out mark is ``threshold`` onto the reference scale."""
    return reference / threshold


def normalised(value: float, threshold: float, reference: float) -> float:
    return value * scale_in_factor(threshold, reference)
