"""Scaling: out when ANY load signal passes its high mark, in when ALL are low, plus prewarming.

Signals, per Auto Scaling group:
- CPU utilisation (AWS/EC2): decoding uploads is CPU work; a saturated CPU starves the GPU.
- GPU utilisation and GPU memory used (CloudWatch agent ``nvidia_gpu``, aggregated per group).
- Queue length: in-flight requests per in-service instance, from the service's own Prometheus gauge
  (``bentoml_service_request_in_progress``, scraped by the agent). Chosen over the ALB's
  RequestCountPerTarget because batching makes request *rate* a poor proxy for load: an instance keeps
  up with a high rate until its queue, which is what clients feel as latency, starts to grow.

CloudWatch composite alarms cannot trigger scaling policies, so each scale-out signal has its own
alarm on one shared step policy, and scale-in is ONE metric-math alarm on the largest normalised
signal. Missing data never scales: warm-pool instances are stopped and report nothing, and a gap in
metrics is no evidence of low load.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .config import ScalingTiming, ScheduledAction, Thresholds
from .user_data import AGENT_NAMESPACE, IN_FLIGHT_METRIC, SERVICE_NAMESPACE


@dataclass(frozen=True)
class ScalingArgs:
    name: str
    asg_name: pulumi.Input[str]
    thresholds: Thresholds
    timing: ScalingTiming
    scheduled_actions: list[ScheduledAction]
    predictive_scaling: str  # off | forecast-only | forecast-and-scale
    notification_topic_arn: pulumi.Input[str]
    tags: dict[str, str]


@dataclass(frozen=True)
class Signal:
    """One load signal: CloudWatch metrics of the group and a metric-math expression over them."""

    key: str
    description: str
    threshold: float
    metrics: dict[str, tuple[str, str, str]]  # query id -> (namespace, metric name, statistic)
    expression: str  # over the query ids, written as {id}

    def queries(
        self, asg_name: pulumi.Input[str], period: int, prefix: str = "", scale: float = 1.0
    ) -> list[aws.cloudwatch.MetricAlarmMetricQueryArgs]:
        """The metric queries and, last, the expression (times ``scale``) under the id ``{prefix}value``."""
        ids = {key: f"{prefix}{key}" for key in self.metrics}
        queries = [
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id=ids[key],
                return_data=False,
                metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=namespace,
                    metric_name=metric_name,
                    dimensions={"AutoScalingGroupName": asg_name},
                    stat=stat,
                    period=period,
                ),
            )
            for key, (namespace, metric_name, stat) in self.metrics.items()
        ]
        expression = self.expression.format(**ids)
        if scale != 1.0:
            expression = f"({expression}) * {scale:.6g}"
        queries.append(
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id=f"{prefix}value", expression=expression, label=self.description, return_data=not prefix
            )
        )
        return queries


def signals(thresholds: Thresholds) -> list[Signal]:
    return [
        Signal(
            "cpu",
            "CPU utilisation (%)",
            thresholds.cpu_percent,
            {"cpu": ("AWS/EC2", "CPUUtilization", "Average")},
            "{cpu}",
        ),
        Signal(
            "gpu-utilization",
            "GPU utilisation (%)",
            thresholds.gpu_utilization_percent,
            {"gpu": (AGENT_NAMESPACE, "nvidia_smi_utilization_gpu", "Average")},
            "{gpu}",
        ),
        Signal(
            "gpu-memory",
            "GPU memory used (%)",
            thresholds.gpu_memory_percent,
            {
                "used": (AGENT_NAMESPACE, "nvidia_smi_memory_used", "Average"),
                "total": (AGENT_NAMESPACE, "nvidia_smi_memory_total", "Average"),
            },
            "100 * {used} / {total}",
        ),
        Signal(
            "queue",
            "in-flight requests per in-service instance",
            thresholds.queue_length,
            {
                "inflight": (SERVICE_NAMESPACE, IN_FLIGHT_METRIC, "Sum"),
                "instances": ("AWS/AutoScaling", "GroupInServiceInstances", "Average"),
            },
            "IF({instances} > 0, {inflight} / {instances}, 0)",
        ),
    ]


def scale_in_queries(
    sigs: list[Signal], thresholds: Thresholds, asg_name: pulumi.Input[str], period: int
) -> list[aws.cloudwatch.MetricAlarmMetricQueryArgs]:
    """Every signal, normalised so that its scale-out mark reads as the CPU's, combined with MAX: the
    alarm's value is the busiest signal, so it is under ``scale_in_below`` only when all of them are."""
    queries: list[aws.cloudwatch.MetricAlarmMetricQueryArgs] = []
    for index, signal in enumerate(sigs):
        queries += signal.queries(
            asg_name, period, prefix=f"s{index}_", scale=thresholds.cpu_percent / signal.threshold
        )
    busiest = ", ".join(f"s{index}_value" for index in range(len(sigs)))
    queries.append(
        aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id="busiest", expression=f"MAX([{busiest}])", label="busiest signal, normalised", return_data=True
        )
    )
    return queries


class Scaling(pulumi.ComponentResource):
    scale_out_policy_arn: pulumi.Output[str]
    scale_in_policy_arn: pulumi.Output[str]
    alarm_arns: pulumi.Output[list[str]]

    def __init__(self, name: str, args: ScalingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("elastic-resnet:scaling:Scaling", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        timing, thresholds = args.timing, args.thresholds

        scale_out = aws.autoscaling.Policy(
            f"{name}-out",
            autoscaling_group_name=args.asg_name,
            policy_type="StepScaling",
            adjustment_type="PercentChangeInCapacity",
            min_adjustment_magnitude=1,
            metric_aggregation_type="Maximum",
            estimated_instance_warmup=timing.instance_warmup_s,
            step_adjustments=[
                aws.autoscaling.PolicyStepAdjustmentArgs(
                    metric_interval_lower_bound="0", scaling_adjustment=timing.scale_out_percent
                )
            ],
            opts=child,
        )
        scale_in = aws.autoscaling.Policy(
            f"{name}-in",
            autoscaling_group_name=args.asg_name,
            policy_type="StepScaling",
            adjustment_type="ChangeInCapacity",  # one GPU at a time: scale-in is never urgent
            metric_aggregation_type="Maximum",
            step_adjustments=[
                aws.autoscaling.PolicyStepAdjustmentArgs(metric_interval_upper_bound="0", scaling_adjustment=-1)
            ],
            opts=child,
        )

        alarms: list[aws.cloudwatch.MetricAlarm] = []
        sigs = signals(thresholds)
        for signal in sigs:
            alarms.append(
                aws.cloudwatch.MetricAlarm(
                    f"{name}-{signal.key}-high",
                    name=f"{args.name}-{signal.key}-high",
                    alarm_description=f"Scale out: {signal.description} above {signal.threshold:g}",
                    comparison_operator="GreaterThanThreshold",
                    threshold=signal.threshold,
                    evaluation_periods=timing.scale_out_evaluation_periods,
                    datapoints_to_alarm=timing.scale_out_datapoints,
                    metric_queries=signal.queries(args.asg_name, timing.period_s),
                    treat_missing_data="notBreaching",
                    alarm_actions=[scale_out.arn, args.notification_topic_arn],
                    ok_actions=[args.notification_topic_arn],
                    tags=args.tags,
                    opts=child,
                )
            )
        alarms.append(
            aws.cloudwatch.MetricAlarm(
                f"{name}-all-low",
                name=f"{args.name}-all-signals-low",
                alarm_description=(
                    f"Scale in: every signal under {thresholds.scale_in_below:g} "
                    f"(normalised so each scale-out mark reads {thresholds.cpu_percent:g})"
                ),
                comparison_operator="LessThanThreshold",
                threshold=thresholds.scale_in_below,
                evaluation_periods=timing.scale_in_evaluation_periods,
                datapoints_to_alarm=timing.scale_in_datapoints,
                metric_queries=scale_in_queries(sigs, thresholds, args.asg_name, timing.period_s),
                treat_missing_data="notBreaching",
                alarm_actions=[scale_in.arn],
                tags=args.tags,
                opts=child,
            )
        )

        for action in args.scheduled_actions:
            aws.autoscaling.Schedule(
                f"{name}-schedule-{action.name}",
                scheduled_action_name=action.name,
                autoscaling_group_name=args.asg_name,
                recurrence=action.cron,
                time_zone=action.time_zone,
                min_size=action.min_size if action.min_size is not None else -1,  # -1: leave unchanged
                max_size=action.max_size if action.max_size is not None else -1,
                desired_capacity=action.desired_capacity if action.desired_capacity is not None else -1,
                opts=child,
            )
        if args.predictive_scaling != "off":
            aws.autoscaling.Policy(
                f"{name}-predictive",
                autoscaling_group_name=args.asg_name,
                policy_type="PredictiveScaling",
                predictive_scaling_configuration=aws.autoscaling.PolicyPredictiveScalingConfigurationArgs(
                    mode="ForecastOnly" if args.predictive_scaling == "forecast-only" else "ForecastAndScale",
                    # Launch forecast capacity 10 minutes ahead: enough to leave the warm pool and warm up.
                    scheduling_buffer_time="600",
                    metric_specification=aws.autoscaling.PolicyPredictiveScalingConfigurationMetricSpecificationArgs(
                        target_value=thresholds.cpu_percent,
                        predefined_metric_pair_specification=aws.autoscaling.PolicyPredictiveScalingConfigurationMetricSpecificationPredefinedMetricPairSpecificationArgs(
                            predefined_metric_type="ASGCPUUtilization"
                        ),
                    ),
                ),
                opts=child,
            )

        self.scale_out_policy_arn = scale_out.arn
        self.scale_in_policy_arn = scale_in.arn
        self.alarm_arns = pulumi.Output.all(*[alarm.arn for alarm in alarms])
        self.register_outputs({"alarm_arns": self.alarm_arns})
