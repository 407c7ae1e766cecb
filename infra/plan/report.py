"""The planner's outputs: a table on the terminal, plan.json and plan.png."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .simulator import Result

if TYPE_CHECKING:
    from .recommend import Candidate

ROWS = [
    ("requests offered", "offered", "{:,.0f}"),
    ("served within latency target", "served_within_slo", "{:,.0f}"),
    ("served over latency target", "served_over_slo", "{:,.0f}"),
    ("shed (503)", "shed", "{:,.0f}"),
    ("share within target", "within_slo_fraction", "{:.4%}"),
    ("cost, elastic (USD)", "cost_usd", "{:,.2f}"),
    ("cost per million images (USD)", "cost_per_million_images_usd", "{:.3f}"),
    ("cost, static fleet for the peak (USD)", "static_peak_cost_usd", "{:,.2f}"),
    ("  its size (instances)", "static_peak_instances", "{}"),
    ("saving vs static fleet", "saving_vs_static_peak", "{:.1%}"),
    ("cost, minimum always on (USD)", "min_always_on_cost_usd", "{:,.2f}"),
    ("scaling actions", "scaling_actions", "{}"),
    ("time under capacity (min)", "time_under_capacity_s", "{}"),
    ("most instances in service", "peak_in_service", "{}"),
    ("requests that met an empty fleet (503)", "met_empty_fleet", "{:,.0f}"),
    ("wake-ups from zero", "wake_ups", "{}"),
    ("longest wake: first request -> served (s)", "longest_wake_s", "{}"),
]


def table(header: str, variants: dict[str, Result]) -> str:
    names = list(variants)
    width = max(18, *(len(name) + 2 for name in names))
    lines = [header, f"{'':<40}" + "".join(f"{name:>{width}}" for name in names)]
    summaries = {name: result.summary() for name, result in variants.items()}
    for label, key, pattern in ROWS:
        cells = []
        for name in names:
            value = summaries[name][key]
            if key == "time_under_capacity_s":
                value = round(float(value) / 60)
            cells.append(pattern.format(value))
        lines.append(f"{label:<40}" + "".join(f"{cell:>{width}}" for cell in cells))
    return "\n".join(lines)


def plan_json(
    meta: dict[str, Any], variants: dict[str, Result], recommendation: dict[str, Any] | None
) -> dict[str, Any]:
    default = next(iter(variants.values())).summary()
    return {
        **meta,
        **default,
        "variants": {name: result.summary() for name, result in variants.items()},
        "recommendation": recommendation,
        "actions": [
            {"t_s": t, "action": what, "desired": desired} for t, what, desired in next(iter(variants.values())).actions
        ],
    }


def write_json(data: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(data, indent=2))


def plot(title: str, variants: dict[str, Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (load, fleet, latency) = plt.subplots(3, 1, figsize=(12, 8.5), sharex=True)
    for index, (name, result) in enumerate(variants.items()):
        hours = [sample.t / 3600 for sample in result.timeline]
        style = {"linewidth": 1.2 if index == 0 else 0.9, "alpha": 1.0 if index == 0 else 0.75}
        if index == 0:
            load.plot(hours, [s.offered_rps for s in result.timeline], color="black", linewidth=1, label="offered load")
        load.plot(hours, [s.capacity_rps for s in result.timeline], label=f"capacity: {name}", **style)
        fleet.step(hours, [s.in_service for s in result.timeline], where="post", label=f"in service: {name}", **style)
        if any(s.warm_pool for s in result.timeline):
            fleet.step(hours, [s.warm_pool for s in result.timeline], where="post", linestyle=":",
                       label=f"warm pool: {name}", **style)  # fmt: skip
        latency.plot(hours, [min(s.p99_s, 10.0) for s in result.timeline], label=name, **style)
    load.set_ylabel("requests/s")
    fleet.set_ylabel("instances")
    latency.set_ylabel("p99 latency (s)")
    latency.set_yscale("log")
    latency.set_xlabel("hours since Monday 00:00 UTC")
    for axis in (load, fleet, latency):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="upper right")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


TIER_COLUMNS = (
    "instance",
    "images/s each",
    "shape (min/warm/max)",
    "within target",
    "USD/month",
    "USD per M images",
    "first answer after idle",
    "capacity from",
)


def tier_rows(rows: Sequence[tuple[Candidate, bool]], duration_s: float) -> list[list[str]]:
    """One row per tier (recommend.best_per_tier): the cheapest shape meeting the target, or a shape that
    does not (its share in bold)."""
    table: list[list[str]] = []
    for candidate, meets in rows:
        summary, instance = candidate.result.summary(), candidate.instance
        share = f"{summary['within_slo_fraction']:.2%}"
        wake = f"{summary['longest_wake_s']} s (min 0)" if candidate.min_size == 0 else "at once (min >= 1)"
        table.append(
            [
                f"{candidate.instance_type} ({instance.runtime} {instance.precision})",
                f"{instance.capacity_rps:.0f}",
                f"{candidate.min_size}/{candidate.warm_pool}/{candidate.max_size}",
                share if meets else f"**{share}** (misses)",
                f"{candidate.monthly_usd(duration_s):,.0f}",
                f"{summary['cost_per_million_images_usd']:.2f}",
                wake,
                instance.basis,
            ]
        )
    return table


def markdown(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
