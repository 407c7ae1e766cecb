"""Named changes to the stack's configuration, to compare side by side (``--variant``).

- ``default``: the stack as configured;
- ``no-warm-pool``: no stopped instances (every scale-out is a cold start);
- ``warm:N``: a warm pool of exactly N stopped instances;
- ``min:N``: N instances in service at least;
- ``type:INSTANCE``: another instance type (its own capacity and price);
- ``thresholds:OUT/IN``: scale out at OUT% CPU and GPU utilisation, in when all are under IN;
- ``scheduled-prewarm``: on weekdays at least 4 instances from 06:45 to 20:00 UTC.
"""

from __future__ import annotations

from ..config import ScheduledAction, StackConfig


def apply(stack: StackConfig, variant: str) -> StackConfig:
    name, _, argument = variant.partition(":")
    if name == "default":
        return stack
    if name == "no-warm-pool":
        return stack.model_copy(update={"warm_pool_min_size": 0, "warm_pool_max_prepared": 0})
    if name == "warm":
        size = int(argument)
        return stack.model_copy(update={"warm_pool_min_size": size, "warm_pool_max_prepared": size})
    if name == "min":
        size = int(argument)
        return stack.model_copy(
            update={
                "min_size": size,
                "desired_capacity": max(size, stack.desired_capacity),
                "max_size": max(size, stack.max_size),
            }
        )
    if name == "type":
        return StackConfig.model_validate({**stack.model_dump(), "instance_type": argument})
    if name == "thresholds":
        high, low = (float(part) for part in argument.split("/"))
        thresholds = stack.thresholds.model_copy(
            update={"cpu_percent": high, "gpu_utilization_percent": high, "scale_in_below": low}
        )
        return stack.model_copy(update={"thresholds": thresholds})
    if name == "scheduled-prewarm":
        prewarm = [
            ScheduledAction(name="prewarm", cron="45 6 * * MON-FRI", min_size=4),
            ScheduledAction(name="release", cron="0 20 * * MON-FRI", min_size=stack.min_size),
        ]
        return stack.model_copy(update={"scheduled_actions": [*stack.scheduled_actions, *prewarm]})
    raise ValueError(f"unknown variant {variant!r} (see `python -m infra.plan --help`)")
