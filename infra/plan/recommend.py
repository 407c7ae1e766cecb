"""Pick the cheapest instance tier and fleet shape that meets the latency target for a traffic profile."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..config import StackConfig, with_changes
from .capacity import instance_for
from .simulator import Result, ServiceLevel, simulate
from .traffic import Traffic
from .variants import apply

TIERS = ("g4dn.xlarge", "g5.xlarge", "p4d.24xlarge")  # T4, A10G, A100 (docs/deploy.md, "Choosing an instance type")
MIN_SIZES = (0, 1, 2)  # 0 only for traffic with idle periods (scaleToZero.idleMinutes without a request)
WARM_POOLS = (0, 1, 2, 4)
# Three nines: the seed claim's 99% would let the morning ramp shed a percent of the day's requests.
DEFAULT_TARGET = 0.999


@dataclass(frozen=True)
class Candidate:
    instance_type: str
    min_size: int
    warm_pool: int
    max_size: int
    result: Result

    def as_dict(self) -> dict[str, object]:
        return {
            "instance_type": self.instance_type,
            "min_size": self.min_size,
            "warm_pool": self.warm_pool,
            "max_size": self.max_size,
            **self.result.summary(),
        }


def recommend(
    traffic: Traffic,
    stack: StackConfig,
    target: float = DEFAULT_TARGET,
    level: ServiceLevel | None = None,
    benchmark: Path | None = None,
    capacity_rps: float | None = None,
) -> tuple[Candidate | None, list[Candidate]]:
    """Every candidate simulated; the cheapest meeting ``target`` (share of requests within the latency
    target), or None when no candidate does."""
    candidates: list[Candidate] = []
    for instance_type in TIERS:
        instance = instance_for(
            instance_type, stack.fleet.root_volume_gb, stack.fleet.instance_type, capacity_rps, benchmark
        )
        # Room for the peak at the scale-out mark, plus one instance of headroom.
        utilisation = stack.scaling.thresholds.gpu_utilization_percent / 100
        max_size = math.ceil(traffic.peak / (instance.capacity_rps * utilisation)) + 1
        idle = traffic.has_idle_period(stack.scaling.scale_to_zero.idle_minutes)
        for min_size in (size for size in MIN_SIZES if size > 0 or idle):
            for warm in WARM_POOLS:
                shaped = apply(apply(apply(stack, f"type:{instance_type}"), f"min:{min_size}"), f"warm:{warm}")
                shaped = with_changes(
                    shaped, "fleet", max_size=max(max_size, shaped.fleet.min_size), desired_capacity=min_size
                )
                result = simulate(traffic, shaped, instance, level)
                candidates.append(Candidate(instance_type, min_size, warm, shaped.fleet.max_size, result))
    meeting = [c for c in candidates if c.result.within_slo_fraction >= target]
    best = min(meeting, key=lambda c: c.result.cost_usd) if meeting else None
    return best, candidates
