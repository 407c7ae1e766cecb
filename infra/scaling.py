"""Scaling: out when ANY load signal passes its high mark, in when ALL are low, plus prewarming.

The signals (what is measured, where, and how the scale-in alarm normalises them) are defined once in
infra/signals.py, which the planner reads too; this module turns those that exist on the fleet's kind of
instance (``signals_for``: no GPU alarm or scale-in term on a CPU fleet) into CloudWatch alarms and Auto
Scaling policies.

CloudWatch composite alarms cannot trigger scaling policies, so each scale-out signal has its own
alarm on one shared step policy, and scale-in is ONE metric-math alarm on the largest normalised
signal. Missing data never scales: warm-pool instances publish nothing, and a gap in metrics is no
evidence of low load.

An alarm invokes its Auto Scaling action again every minute it stays in ALARM. Scale-out is a step
policy: while launched instances warm up, a repeat of the same step adds nothing. Scale-in is a SIMPLE
policy with a cooldown of one quiet window (step scaling has no cooldown and would remove one
instance per minute): one instance per ``scaleInEvaluationPeriods`` quiet minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .config import ScalingConfig, Thresholds
from .signals import (
    ALB_DIMENSION,
    ARRIVALS,
    GROUP_DESIRED,
    GROUP_DIMENSION,
    GROUP_IN_SERVICE,
    IDLE_EXPRESSION,
    PERIOD_S,
    SCALE_IN_FLOOR_EXPRESSION,
    WAKE_DATAPOINTS,
    WAKE_EVALUATION_PERIODS,
    WAKE_EXPRESSION,
    Metric,
    Signal,
    scale_in_factor,
    wake_steps,
)


@dataclass(frozen=True)
class ScalingArgs:
    name: str
    asg_name: pulumi.Input[str]
    config: ScalingConfig
    signals: tuple[Signal, ...]  # those that exist on the fleet's kind of instance (signals.signals_for)
    notification_topic_arn: pulumi.Input[str]
    tags: dict[str, str]
    load_balancer: pulumi.Input[str]  # the ALB's arn suffix: its metrics' LoadBalancer dimension
    scales_to_zero: bool  # minSize 0: declare the wake-up path (StackConfig.scales_to_zero)
    # launchInstances false: nothing may launch an instance, neither a schedule nor a forecast
    launches_instances: bool


def signal_queries(
    signal: Signal, asg_name: pulumi.Input[str], prefix: str = "", scale: float = 1.0
) -> list[aws.cloudwatch.MetricAlarmMetricQueryArgs]:
    """The signal's metric queries and, last, its expression (times ``scale``) as ``{prefix}value``."""
    ids = {key: f"{prefix}{key}" for key in signal.metrics}
    queries = [_metric_query(ids[key], metric, GROUP_DIMENSION, asg_name) for key, metric in signal.metrics.items()]
    expression = signal.expression.format(**ids)
    if scale != 1.0:
        expression = f"({expression}) * {scale:.6g}"
    queries.append(
        aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id=f"{prefix}value", expression=expression, label=signal.description, return_data=not prefix
        )
    )
    return queries


def scale_in_queries(
    thresholds: Thresholds, signals: tuple[Signal, ...], asg_name: pulumi.Input[str], floor_at_one: bool = False
) -> list[aws.cloudwatch.MetricAlarmMetricQueryArgs]:
    """Every signal, normalised so that its scale-out mark reads as the reference's, combined with MAX:
    the alarm's value is the busiest signal, so it is under ``scale_in_below`` only when all of them are.
    ``floor_at_one`` (scale to zero): never below one instance on these signals; the idle alarm does that."""
    queries: list[aws.cloudwatch.MetricAlarmMetricQueryArgs] = []
    for index, signal in enumerate(signals):
        factor = scale_in_factor(thresholds.of(signal.threshold_key), thresholds.reference)
        queries += signal_queries(signal, asg_name, prefix=f"s{index}_", scale=factor)
    busiest = ", ".join(f"s{index}_value" for index in range(len(signals)))
    label = "busiest signal, normalised"
    queries.append(
        aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id="busiest", expression=f"MAX([{busiest}])", label=label, return_data=not floor_at_one
        )
    )
    if floor_at_one:
        queries.append(_metric_query("in_service", GROUP_IN_SERVICE, GROUP_DIMENSION, asg_name))
        queries.append(
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="floored",
                expression=SCALE_IN_FLOOR_EXPRESSION.format(in_service="in_service", busiest="busiest"),
                label=f"{label}, while more than one instance serves",
                return_data=True,
            )
        )
    return queries


def _metric_query(
    query_id: str, metric: Metric, dimension: str, value: pulumi.Input[str]
) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(
        id=query_id,
        return_data=False,
        metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
            namespace=metric.namespace,
            metric_name=metric.name,
            dimensions={dimension: value},
            stat=metric.statistic,
            period=PERIOD_S,
        ),
    )


def arrival_queries(
    expression: str, group_metric_id: str, group_metric: Metric, asg_name: pulumi.Input[str], alb: pulumi.Input[str]
) -> list[aws.cloudwatch.MetricAlarmMetricQueryArgs]:
    """The load balancer's arrivals and one group metric, combined by ``expression`` (signals.py)."""
    queries = [_metric_query(key, metric, ALB_DIMENSION, alb) for key, metric in ARRIVALS.items()]
    queries.append(_metric_query(group_metric_id, group_metric, GROUP_DIMENSION, asg_name))
    ids = {key: key for key in ARRIVALS} | {group_metric_id: group_metric_id}
    queries.append(
        aws.cloudwatch.MetricAlarmMetricQueryArgs(id="value", expression=expression.format(**ids), return_data=True)
    )
    return queries


class Scaling(pulumi.ComponentResource):
    scale_out_policy_arn: pulumi.Output[str]
    scale_in_policy_arn: pulumi.Output[str]
    alarm_arns: pulumi.Output[list[str]]

    def __init__(self, name: str, args: ScalingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("elastic-resnet:scaling:Scaling", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        timing, thresholds = args.config.timing, args.config.thresholds

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
            policy_type="SimpleScaling",
            adjustment_type="ChangeInCapacity",
            scaling_adjustment=-1,  # one instance at a time: scale-in is never urgent
            cooldown=timing.scale_in_cooldown_s,  # then a whole new quiet window before the next
            opts=child,
        )

        alarms: list[aws.cloudwatch.MetricAlarm] = []
        for signal in args.signals:
            threshold = thresholds.of(signal.threshold_key)
            alarms.append(
                aws.cloudwatch.MetricAlarm(
                    f"{name}-{signal.key}-high",
                    name=f"{args.name}-{signal.key}-high",
                    alarm_description=f"Scale out: {signal.description} above {threshold:g}",
                    comparison_operator="GreaterThanThreshold",
                    threshold=threshold,
                    evaluation_periods=timing.scale_out_evaluation_periods,
                    datapoints_to_alarm=timing.scale_out_datapoints,
                    metric_queries=signal_queries(signal, args.asg_name),
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
                    f"(normalised so each scale-out mark reads {thresholds.reference:g})"
                ),
                comparison_operator="LessThanThreshold",
                threshold=thresholds.scale_in_below,
                evaluation_periods=timing.scale_in_evaluation_periods,
                datapoints_to_alarm=timing.scale_in_datapoints,
                metric_queries=scale_in_queries(
                    thresholds, args.signals, args.asg_name, floor_at_one=args.scales_to_zero
                ),
                treat_missing_data="notBreaching",
                alarm_actions=[scale_in.arn],
                tags=args.tags,
                opts=child,
            )
        )

        if args.scales_to_zero:
            alarms += self._scale_to_zero(name, args, child)

        for action in args.config.scheduled_actions if args.launches_instances else []:
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
        if args.config.predictive_scaling != "off" and args.launches_instances:
            aws.autoscaling.Policy(
                f"{name}-predictive",
                autoscaling_group_name=args.asg_name,
                policy_type="PredictiveScaling",
                predictive_scaling_configuration=aws.autoscaling.PolicyPredictiveScalingConfigurationArgs(
                    mode="ForecastOnly" if args.config.predictive_scaling == "forecast-only" else "ForecastAndScale",
                    # Launch forecast capacity 10 minutes ahead: enough to leave the warm pool and warm up.
                    scheduling_buffer_time="600",
                    metric_specification=aws.autoscaling.PolicyPredictiveScalingConfigurationMetricSpecificationArgs(
                        target_value=thresholds.reference,
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

    def _scale_to_zero(
        self, name: str, args: ScalingArgs, child: pulumi.ResourceOptions
    ) -> list[aws.cloudwatch.MetricAlarm]:
        """minSize 0: requests meeting an empty group wake it; an idle fleet goes back to zero."""
        zero = args.config.scale_to_zero
        wake = aws.autoscaling.Policy(
            f"{name}-wake",
            autoscaling_group_name=args.asg_name,
            policy_type="StepScaling",
            adjustment_type="ChangeInCapacity",
            metric_aggregation_type="Maximum",
            estimated_instance_warmup=args.config.timing.instance_warmup_s,
            step_adjustments=[
                aws.autoscaling.PolicyStepAdjustmentArgs(
                    metric_interval_lower_bound=f"{lower:g}",
                    metric_interval_upper_bound=None if upper is None else f"{upper:g}",
                    scaling_adjustment=count,
                )
                for lower, upper, count in wake_steps(zero.requests_per_instance_per_minute, zero.max_wake_instances)
            ],
            opts=child,
        )
        to_zero = aws.autoscaling.Policy(
            f"{name}-to-zero",
            autoscaling_group_name=args.asg_name,
            policy_type="SimpleScaling",
            adjustment_type="ExactCapacity",
            scaling_adjustment=0,  # Auto Scaling keeps a scheduled minimum above it
            cooldown=zero.idle_minutes * PERIOD_S,
            opts=child,
        )
        wake_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-wake",
            name=f"{args.name}-wake",
            alarm_description="Wake up: requests reached the load balancer while the group was sized zero",
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
            evaluation_periods=WAKE_EVALUATION_PERIODS,
            datapoints_to_alarm=WAKE_DATAPOINTS,
            metric_queries=arrival_queries(
                WAKE_EXPRESSION, "desired", GROUP_DESIRED, args.asg_name, args.load_balancer
            ),
            treat_missing_data="notBreaching",
            alarm_actions=[wake.arn],
            tags=args.tags,
            opts=child,
        )
        idle_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-idle",
            name=f"{args.name}-idle",
            alarm_description=f"Back to zero: no request for {zero.idle_minutes} minutes",
            comparison_operator="LessThanThreshold",
            threshold=1,
            evaluation_periods=zero.idle_minutes,
            datapoints_to_alarm=zero.idle_minutes,
            metric_queries=arrival_queries(
                IDLE_EXPRESSION, "in_service", GROUP_IN_SERVICE, args.asg_name, args.load_balancer
            ),
            treat_missing_data="notBreaching",
            alarm_actions=[to_zero.arn],
            tags=args.tags,
            opts=child,
        )
        return [wake_alarm, idle_alarm]
