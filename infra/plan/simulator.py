"""Replays a traffic profile through the stack's scaling configuration, step by step.

What is modelled, and how:
- Instances: cold launch (``cold_start_s`` until in service), warm-pool start (``warm_start_s``),
  in service, preparing for the warm pool (a cold start, then stopped), stopped in the pool,
  terminated. The group reconciles to its desired capacity every step, warm pool first, and keeps the
  pool at ``max(warm_pool_min_size, warm_pool_max_prepared - desired)`` as AWS does; scale-in returns
  instances to the pool (reuse on scale-in).
- Serving: the load balancer spreads requests evenly over in-service instances. Each instance serves up
  to ``capacity_rps``; above that a backlog builds, its waiting time adds to latency, and whatever would
  wait longer than ``max_latency_s`` is shed (the service's admission); with no instance in service
  every request is refused. Below capacity, latency follows an M/M/1 queue per instance (its tail gives the
  share of requests over the latency target).
- Metrics: per in-service instance, the signals its kind has (infra/instance_types.py). On a GPU type,
  GPU utilisation tracks load, CPU follows it (the API process decodes and serves HTTP) and GPU memory
  stays flat; on a CPU type CPU utilisation is the load. In-flight requests follow Little's law; stopped
  instances report nothing. Per period they become datapoints (Average over the group), evaluated by
  :mod:`infra.plan.cloudwatch` exactly as the stack's alarms are configured.
- Policies: the step scale-out policy (+``scale_out_percent``%, at least one) runs every period an
  out-alarm is in ALARM, but not again while the instances it launched are within their warm-up (a
  repeat of the same step adds nothing in AWS); the simple scale-in policy removes one instance when
  the all-low alarm is in ALARM, then waits out its cooldown (one quiet window). Scheduled actions apply
  at their cron minute (croniter, the Unix cron dialect of Auto Scaling's Recurrence).
The signals (names, thresholds, normalisation) are the stack's own: infra/signals.py.
The profile starts on a Monday at 00:00 UTC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from ..config import StackConfig
from ..instance_types import kind_of
from ..signals import (
    PERIOD_S,
    WAKE_DATAPOINTS,
    WAKE_EVALUATION_PERIODS,
    normalised,
    signals_for,
    step_for,
    wake_steps,
)
from .capacity import InstanceModel
from .cloudwatch import Alarm, State, aggregate
from .traffic import Traffic

START = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday
GPU_MEMORY_PERCENT = 12.0  # ResNet18 fp16 + allocator cache on a 16-24 GB GPU: flat, far from any threshold
COLD, WARMING, IN_SERVICE, PREPARING, STOPPED = "cold", "warming", "in_service", "preparing", "stopped"


@dataclass
class Instance:
    state: str
    ready_at: float
    launched_at: float


@dataclass(frozen=True)
class Sample:
    """One period of the timeline, for the picture."""

    t: float
    offered_rps: float
    capacity_rps: float
    in_service: int
    warm_pool: int
    p99_s: float


@dataclass
class Result:
    offered: float = 0.0
    served_within_slo: float = 0.0
    served_over_slo: float = 0.0
    shed: float = 0.0
    cost_usd: float = 0.0
    static_peak_cost_usd: float = 0.0
    static_peak_instances: int = 0
    min_always_on_cost_usd: float = 0.0
    scaling_actions: int = 0
    time_under_capacity_s: float = 0.0
    peak_in_service: int = 0
    timeline: list[Sample] = field(default_factory=list)
    actions: list[tuple[float, str, int]] = field(default_factory=list)  # (t, what, desired after)
    empty_fleet_requests: float = 0.0  # arrived with no instance in service: the ALB's 503 (also in shed)
    wake_times_s: list[float] = field(default_factory=list)  # first request at an empty fleet -> in service

    @property
    def within_slo_fraction(self) -> float:
        return self.served_within_slo / self.offered if self.offered else 1.0

    @property
    def cost_per_million_usd(self) -> float:
        served = self.served_within_slo + self.served_over_slo
        return 1e6 * self.cost_usd / served if served else float("nan")

    def summary(self) -> dict[str, float | int]:
        return {
            "offered": round(self.offered),
            "served_within_slo": round(self.served_within_slo),
            "served_over_slo": round(self.served_over_slo),
            "shed": round(self.shed),
            "within_slo_fraction": round(self.within_slo_fraction, 6),
            "cost_usd": round(self.cost_usd, 2),
            "cost_per_million_images_usd": round(self.cost_per_million_usd, 4),
            "static_peak_cost_usd": round(self.static_peak_cost_usd, 2),
            "static_peak_instances": self.static_peak_instances,
            "min_always_on_cost_usd": round(self.min_always_on_cost_usd, 2),
            "saving_vs_static_peak": round(1 - self.cost_usd / self.static_peak_cost_usd, 4)
            if self.static_peak_cost_usd
            else 0.0,
            "scaling_actions": self.scaling_actions,
            "time_under_capacity_s": round(self.time_under_capacity_s),
            "peak_in_service": self.peak_in_service,
            "met_empty_fleet": round(self.empty_fleet_requests),
            "wake_ups": len(self.wake_times_s),
            "longest_wake_s": round(max(self.wake_times_s, default=0.0)),
        }


@dataclass(frozen=True)
class ServiceLevel:
    latency_target_s: float = 0.5
    static_utilisation: float = 0.7  # a static fleet "sized for the peak" runs at most this busy


def alarms_for(stack: StackConfig) -> tuple[dict[str, Alarm], Alarm]:
    """The stack's alarms as the planner evaluates them: one per signal (by key), and the scale-in one."""
    thresholds, timing = stack.scaling.thresholds, stack.scaling.timing
    out_alarms = {
        signal.key: Alarm(signal.key, thresholds.of(signal.threshold_key), "GreaterThanThreshold",
                          timing.scale_out_evaluation_periods, timing.scale_out_datapoints, "notBreaching")
        for signal in signals_for(kind_of(stack.fleet.instance_type))  # only what exists on the instance
    }  # fmt: skip
    in_alarm = Alarm("all-low", thresholds.scale_in_below, "LessThanThreshold", timing.scale_in_evaluation_periods,
                     timing.scale_in_datapoints, "notBreaching")  # fmt: skip
    return out_alarms, in_alarm


def zero_alarms_for(stack: StackConfig) -> tuple[Alarm, Alarm]:
    """minSize 0: the wake-up alarm (requests meeting a group sized zero) and the idle one."""
    idle = stack.scaling.scale_to_zero.idle_minutes
    wake = Alarm("wake", 1, "GreaterThanOrEqualToThreshold", WAKE_EVALUATION_PERIODS, WAKE_DATAPOINTS, "notBreaching")
    return wake, Alarm("idle", 1, "LessThanThreshold", idle, idle, "notBreaching")


def simulate(
    traffic: Traffic, stack: StackConfig, instance: InstanceModel, level: ServiceLevel | None = None
) -> Result:
    level = level or ServiceLevel()
    dt, period = traffic.step_s, PERIOD_S
    if period % dt:
        raise ValueError("the metric period must be a whole number of simulation steps")
    capacity = instance.capacity_rps
    thresholds, timing = stack.scaling.thresholds, stack.scaling.timing
    min_size, desired, warm_min, prepared_cap = stack.fleet_sizes  # as infra/fleet.py sets the group
    max_size = stack.fleet.max_size

    out_alarms, in_alarm = alarms_for(stack)
    model_on_cpu = kind_of(stack.fleet.instance_type).load_signal == "cpu"
    schedules = [(a.cron, ZoneInfo(a.time_zone), a) for a in stack.scaling.scheduled_actions]
    last_scale_in = last_to_zero = -math.inf
    # minSize 0: the load balancer's arrivals wake the group, an idle fleet goes back to zero (signals.py).
    zero = stack.scaling.scale_to_zero
    wake_alarm, idle_alarm = zero_alarms_for(stack)
    steps = wake_steps(zero.requests_per_instance_per_minute, zero.max_wake_instances)
    period_arrivals, period_desired_max, period_in_service_min = 0.0, desired, math.inf
    waiting_since: float | None = None

    result = Result()
    fleet: list[Instance] = [Instance(IN_SERVICE, 0.0, 0.0) for _ in range(desired)]
    backlog = 0.0
    samples: dict[str, list[float]] = {name: [] for name in out_alarms}
    period_peak_p99, last_ready = 0.0, -math.inf

    for step, rps in enumerate(traffic.rps):
        t = step * dt
        moment = START + timedelta(seconds=t)
        if t % 60 == 0:
            for cron, zone, action in schedules:
                if croniter.match(cron, moment.astimezone(zone).replace(tzinfo=None)):
                    min_size = action.min_size if action.min_size is not None else min_size
                    max_size = action.max_size if action.max_size is not None else max_size
                    if action.desired_capacity is not None:
                        desired = action.desired_capacity
                    desired = min(max_size, max(min_size, desired))
                    result.actions.append((t, f"schedule {action.name}", desired))

        # Instances finishing their start-up.
        for node in fleet:
            if node.ready_at <= t and node.state in (COLD, WARMING):
                node.state = IN_SERVICE
                last_ready = t
            elif node.ready_at <= t and node.state == PREPARING:
                node.state = STOPPED
        _reconcile(fleet, desired, max(warm_min, prepared_cap - desired), t, instance)

        # Serving.
        in_service = sum(1 for node in fleet if node.state == IN_SERVICE)
        result.peak_in_service = max(result.peak_in_service, in_service)
        arrivals = rps * dt
        result.offered += arrivals
        fleet_capacity = in_service * capacity
        if fleet_capacity < rps:
            result.time_under_capacity_s += dt
        period_arrivals += arrivals
        period_desired_max = max(period_desired_max, desired)
        period_in_service_min = min(period_in_service_min, in_service)
        if in_service == 0:
            if arrivals > 0:
                result.empty_fleet_requests += arrivals
                waiting_since = t if waiting_since is None else waiting_since
            result.shed += arrivals + backlog
            backlog, p99 = 0.0, (math.inf if arrivals > 0 else 0.0)
        else:
            if waiting_since is not None:
                result.wake_times_s.append(t - waiting_since)
                waiting_since = None
            before = backlog
            total = backlog + arrivals
            served = min(total, fleet_capacity * dt)
            backlog = total - served
            shed = max(0.0, backlog - fleet_capacity * instance.max_latency_s)
            backlog -= shed
            result.shed += shed
            per_instance = rps / in_service
            if before > 0 or backlog > 0:
                wait = (before + backlog) / 2 / fleet_capacity
                p99 = instance.base_latency_s + wait + 1 / capacity
                over = served if p99 > level.latency_target_s else 0.0
            else:
                tail_rate = capacity - per_instance  # M/M/1 sojourn time ~ Exp(capacity - arrival rate)
                slack = max(0.0, level.latency_target_s - instance.base_latency_s)
                over = served * math.exp(-tail_rate * slack)
                p99 = instance.base_latency_s + math.log(100) / tail_rate
            result.served_over_slo += over
            result.served_within_slo += served - over
            utilisation = min(1.0, served / dt / fleet_capacity + (1.0 if backlog > 0 else 0.0))
            in_flight = per_instance * (instance.base_latency_s + min(p99, instance.max_latency_s)) / 2
            load = {
                "gpu-utilization": 95.0 * utilisation,
                "cpu": 5.0 + (90.0 if model_on_cpu else 75.0) * utilisation,
                "gpu-memory": GPU_MEMORY_PERCENT,
                "queue": in_flight + backlog / in_service,
            }
            for name in samples:
                samples[name].append(load[name])
        period_peak_p99 = max(period_peak_p99, p99)

        # Cost of this step.
        running = sum(1 for node in fleet if node.state != STOPPED)
        result.cost_usd += (running * instance.usd_per_hour + len(fleet) * instance.ebs_usd_per_hour) * dt / 3600

        # Period boundary: datapoints, alarms, policies.
        if (t + dt) % period == 0:
            points = {name: aggregate(values, "Average") for name, values in samples.items()}
            states = {name: alarm.evaluate(points[name]) for name, alarm in out_alarms.items()}
            scaled = [  # each signal scaled so its scale-out mark reads as the reference's (signals.py)
                normalised(point, out_alarms[name].threshold, thresholds.reference)
                for name, point in points.items()
                if point is not None
            ]
            busiest = max(scaled) if scaled else None
            if stack.scales_to_zero and busiest is not None and period_in_service_min <= 1:
                busiest = 100.0  # the load signals' scale-in stops at one instance
            in_state = in_alarm.evaluate(busiest)
            # Launched capacity still pending, or within its warm-up after entering service, already
            # counts: repeating the same step adds nothing until it has had its effect.
            pending = any(node.state in (COLD, WARMING) for node in fleet)
            warming_up = pending or t + dt - last_ready < timing.instance_warmup_s
            if State.ALARM in states.values():
                if not warming_up and desired < max_size:
                    desired = min(max_size, desired + max(1, int(desired * timing.scale_out_percent / 100)))
                    result.scaling_actions += 1
                    result.actions.append((t + dt, "scale out", desired))
            elif (
                in_state == State.ALARM
                and not warming_up
                and desired > min_size
                and t + dt - last_scale_in >= timing.scale_in_cooldown_s
            ):
                desired -= 1
                last_scale_in = t + dt
                result.scaling_actions += 1
                result.actions.append((t + dt, "scale in", desired))
            if stack.scales_to_zero:
                wake_value = period_arrivals if period_desired_max < 1 else 0.0
                if wake_alarm.evaluate(wake_value) == State.ALARM and desired < max_size:
                    desired = min(max_size, desired + step_for(wake_value, wake_alarm.threshold, steps))
                    result.scaling_actions += 1
                    result.actions.append((t + dt, "wake", desired))
                idle_value = period_arrivals if period_in_service_min >= 1 else 1.0
                if (
                    idle_alarm.evaluate(idle_value) == State.ALARM
                    and desired > min_size
                    and t + dt - last_to_zero >= zero.idle_minutes * PERIOD_S
                ):
                    desired, last_to_zero = min_size, t + dt  # ExactCapacity 0, held at a scheduled minimum
                    result.scaling_actions += 1
                    result.actions.append((t + dt, "idle: to zero", desired))
            period_arrivals, period_desired_max, period_in_service_min = 0.0, desired, math.inf
            result.timeline.append(
                Sample(t + dt, rps, fleet_capacity, in_service, sum(1 for n in fleet if n.state == STOPPED),
                       period_peak_p99)
            )  # fmt: skip
            samples = {name: [] for name in out_alarms}
            period_peak_p99 = 0.0

    result.served_over_slo += backlog  # still queued at the end: served after the window
    hours = traffic.duration_s / 3600
    per_instance_hour = instance.usd_per_hour + instance.ebs_usd_per_hour
    result.static_peak_instances = max(1, math.ceil(traffic.peak / (capacity * level.static_utilisation)))
    result.static_peak_cost_usd = result.static_peak_instances * per_instance_hour * hours
    result.min_always_on_cost_usd = max(stack.fleet.min_size, 1) * per_instance_hour * hours
    return result


def _reconcile(fleet: list[Instance], desired: int, pool_target: int, t: float, instance: InstanceModel) -> None:
    """The Auto Scaling group converging on ``desired``, warm pool first, and refilling the pool."""
    active = [node for node in fleet if node.state in (IN_SERVICE, COLD, WARMING)]
    pool = [node for node in fleet if node.state in (STOPPED, PREPARING)]
    if len(active) < desired:
        for _ in range(desired - len(active)):
            stopped = next((node for node in pool if node.state == STOPPED), None)
            if stopped is not None:
                stopped.state, stopped.ready_at = WARMING, t + instance.warm_start_s
                pool.remove(stopped)
            else:
                fleet.append(Instance(COLD, t + instance.cold_start_s, t))
    elif len(active) > desired:
        # Pending launches go first, then the newest in service; with reuse on scale-in they return to
        # the pool (stopped) while it has room, else they are terminated.
        order = sorted(active, key=lambda node: (node.state == IN_SERVICE, -node.launched_at))
        for node in order[: len(active) - desired]:
            if len(pool) < pool_target and node.state == IN_SERVICE:
                node.state = STOPPED
                pool.append(node)
            else:
                fleet.remove(node)
    if len(pool) < pool_target:
        for _ in range(pool_target - len(pool)):
            fleet.append(Instance(PREPARING, t + instance.cold_start_s, t))
    elif len(pool) > pool_target:
        for node in sorted(pool, key=lambda node: node.state == STOPPED)[: len(pool) - pool_target]:
            fleet.remove(node)
