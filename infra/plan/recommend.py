"""Pick the cheapest instance type and fleet shape that meets the latency target for a traffic profile,
across both tiers: CPU types (OpenVINO on the instance's cores) and GPU types."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import StackConfig, with_changes
from ..instance_types import kind_of
from ..signals import SIGNALS
from .capacity import HOURS_PER_MONTH, InstanceModel, instance_for
from .simulator import Result, ServiceLevel, simulate
from .traffic import Traffic
from .variants import apply


@dataclass(frozen=True)
class Tier:
    instance_type: str
    precision: str | None = None  # RESNET18_PRECISION for the tier; None: what the stack's serviceEnv runs


# The cheapest per image of each family the planner knows (docs/deploy.md, "Choosing an instance type"):
# the CPU tier as the stack runs it by default (OpenVINO bf16 on c7a) and in INT8 (needs the INT8 import:
# README), the Intel CPU in INT8, and three GPUs.
TIERS = (
    Tier("c7a.large"),
    Tier("c7a.large", "int8"),
    Tier("c7i.large", "int8"),
    Tier("g4dn.xlarge"),
    Tier("g5.xlarge"),
    Tier("p4d.24xlarge"),
)
MIN_SIZES = (0, 1, 2)  # 0 only for traffic with idle periods (scaleToZero.idleMinutes without a request)
WARM_POOLS = (0, 1, 2, 4)
# Three nines: the seed claim's 99% would let the morning ramp shed a percent of the day's requests.
DEFAULT_TARGET = 0.999


@dataclass(frozen=True)
class Candidate:
    tier: Tier
    min_size: int
    warm_pool: int
    max_size: int
    instance: InstanceModel
    result: Result

    @property
    def instance_type(self) -> str:
        return self.tier.instance_type

    def monthly_usd(self, duration_s: float) -> float:
        return self.result.cost_usd * HOURS_PER_MONTH * 3600 / duration_s

    def as_dict(self) -> dict[str, object]:
        return {
            "instance_type": self.instance_type,
            "runtime": self.instance.runtime,
            "precision": self.instance.precision,
            "capacity_rps": round(self.instance.capacity_rps, 1),
            "capacity_source": self.instance.source,
            "min_size": self.min_size,
            "warm_pool": self.warm_pool,
            "max_size": self.max_size,
            **self.result.summary(),
        }


def tier_stack(stack: StackConfig, tier: Tier) -> StackConfig:
    shaped = apply(stack, f"type:{tier.instance_type}")
    return apply(shaped, f"precision:{tier.precision}") if tier.precision else shaped


def recommend(
    traffic: Traffic,
    stack: StackConfig,
    target: float = DEFAULT_TARGET,
    level: ServiceLevel | None = None,
    benchmarks: Sequence[Path] = (),
    capacity_rps: float | None = None,
    tiers: Sequence[Tier] = TIERS,
) -> tuple[Candidate | None, list[Candidate]]:
    """Every candidate simulated; the cheapest meeting ``target`` (share of requests within the latency
    target), or None when no candidate does."""
    candidates: list[Candidate] = []
    idle = traffic.has_idle_period(stack.scaling.scale_to_zero.idle_minutes)
    for tier in tiers:
        typed = tier_stack(stack, tier)
        instance = instance_for(
            tier.instance_type,
            typed.fleet.root_volume_gb,
            stack.fleet.instance_type,
            capacity_rps,
            benchmarks,
            typed.fleet.service_env,
        )
        # Room for the peak at the scale-out mark of the signal that tracks load, plus one instance.
        load_signal = next(s for s in SIGNALS if s.key == kind_of(tier.instance_type).load_signal)
        utilisation = typed.scaling.thresholds.of(load_signal.threshold_key) / 100
        max_size = math.ceil(traffic.peak / (instance.capacity_rps * utilisation)) + 1
        for min_size in (size for size in MIN_SIZES if size > 0 or idle):
            for warm in WARM_POOLS:
                shaped = apply(apply(typed, f"min:{min_size}"), f"warm:{warm}")
                shaped = with_changes(
                    shaped, "fleet", max_size=max(max_size, shaped.fleet.min_size), desired_capacity=min_size
                )
                result = simulate(traffic, shaped, instance, level)
                candidates.append(Candidate(tier, min_size, warm, shaped.fleet.max_size, instance, result))
    best = cheapest(candidates, target)
    return best, candidates


def cheapest(candidates: Sequence[Candidate], target: float) -> Candidate | None:
    meeting = [c for c in candidates if c.result.within_slo_fraction >= target]
    return min(meeting, key=lambda c: c.result.cost_usd) if meeting else None


def best_per_tier(candidates: Sequence[Candidate], target: float) -> list[tuple[Candidate, bool]]:
    """Per tier, in order: its cheapest shape meeting ``target`` (True), else its best share (False)."""
    rows: list[tuple[Candidate, bool]] = []
    for tier in dict.fromkeys(c.tier for c in candidates):
        own = [c for c in candidates if c.tier == tier]
        best = cheapest(own, target)
        if best is not None:
            rows.append((best, True))
        else:
            rows.append((max(own, key=lambda c: (c.result.within_slo_fraction, -c.result.cost_usd)), False))
    return rows
