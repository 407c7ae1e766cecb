"""Named changes to the stack's configuration, to compare side by side (``--variant``).

- ``default``: the stack as configured;
- ``no-warm-pool``: no stopped instances (every scale-out is a cold start);
- ``warm:N``: a warm pool of exactly N stopped instances;
- ``min:N``: N instances in service at least (``min:0``: scale to zero, woken by the load balancer's
  requests, as the stack does with ``fleet.minSize: 0``);
- ``type:INSTANCE``: another instance type (its own kind, capacity and price);
- ``precision:P``: the service's RESNET18_PRECISION (``int8`` on a CPU type: the INT8 model, README);
- ``thresholds:OUT/IN``: scale out at OUT% CPU and GPU utilisation, in when all are under IN;
- ``scheduled-prewarm``: on weekdays at least 4 instances from 06:45 to 20:00 UTC.
"""

from __future__ import annotations

from ..config import ScheduledAction, StackConfig, with_changes


def apply(stack: StackConfig, variant: str) -> StackConfig:
    name, _, argument = variant.partition(":")
    fleet = stack.fleet
    if name == "default":
        return stack
    if name == "no-warm-pool":
        return with_changes(stack, "fleet", warm_pool_min_size=0, warm_pool_max_prepared=0)
    if name == "warm":
        size = int(argument)
        return with_changes(stack, "fleet", warm_pool_min_size=size, warm_pool_max_prepared=size)
    if name == "min":
        size = int(argument)
        return with_changes(
            stack,
            "fleet",
            min_size=size,
            desired_capacity=max(size, fleet.desired_capacity),
            max_size=max(size, fleet.max_size),
        )
    if name == "type":
        return with_changes(stack, "fleet", instance_type=argument)
    if name == "precision":
        return with_changes(stack, "fleet", service_env={**fleet.service_env, "RESNET18_PRECISION": argument})
    if name == "thresholds":
        high, low = (float(part) for part in argument.split("/"))
        thresholds = stack.scaling.thresholds.model_dump()
        thresholds.update(cpu_percent=high, gpu_utilization_percent=high, scale_in_below=low)
        return with_changes(stack, "scaling", thresholds=thresholds)
    if name == "scheduled-prewarm":
        prewarm = [
            ScheduledAction(name="prewarm", cron="45 6 * * MON-FRI", min_size=4),
            ScheduledAction(name="release", cron="0 20 * * MON-FRI", min_size=fleet.min_size),
        ]
        actions = [action.model_dump() for action in [*stack.scaling.scheduled_actions, *prewarm]]
        return with_changes(stack, "scaling", scheduled_actions=actions)
    raise ValueError(f"unknown variant {variant!r} (see `python -m infra.plan --help`)")
