"""Replay traffic through the stack's own scaling configuration before `pulumi up`.

    python -m infra.plan --profile diurnal-week --out plan/
    python -m infra.plan --traffic my-traffic.csv --variant no-warm-pool --variant thresholds:60/20 --out plan/
    python -m infra.plan --profile diurnal-week --recommend --out plan/
    python -m infra.plan --profile office-hours --recommend --benchmark bench/measured/cpu-2vcpu-epyc.json --out plan/

The configuration is the stack's own (Pulumi.<stack>.yaml read by infra.config's loader, exactly as
`pulumi up` reads it) and the scaling signals are infra/signals.py, so the plan and the deployed stack
cannot drift. Writes plan.json and plan.png to --out
and prints the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..config import CONFIG_NAMESPACE, ConfigError, StackConfig, from_cli_values, load_stack_file
from . import report
from .capacity import InstanceModel, instance_for, instance_model, read_capacities
from .recommend import DEFAULT_TARGET, TIERS, best_per_tier, recommend, tier_stack
from .simulator import Result, ServiceLevel, simulate
from .traffic import PROFILES, from_csv
from .variants import apply

REPO = Path(__file__).resolve().parents[2]


def load_stack(stack_file: Path | None) -> StackConfig:
    if stack_file is None:
        return from_cli_values({}, CONFIG_NAMESPACE, "plan", "us-east-1")
    return load_stack_file(stack_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.plan", description=__doc__.split("\n")[1])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--profile", choices=sorted(PROFILES), help="a built-in traffic profile")
    source.add_argument("--traffic", type=Path, help="CSV with header timestamp,rps")
    parser.add_argument(
        "--stack-file", type=Path, default=None, help="e.g. Pulumi.dev.yaml (default: the stack defaults)"
    )
    parser.add_argument(
        "--variant", action="append", default=[], help="compare a variant (repeatable), see infra/plan/variants.py"
    )
    parser.add_argument(
        "--benchmark",
        type=Path,
        action="append",
        default=[],
        help="bench/results/capacity.json (make bench), gpu_check.json (a GPU) or bench/measured/*.json, repeatable: "
        "each type's capacity from the measurements that apply to it (docs/planner.md)",
    )
    parser.add_argument("--capacity", type=float, help="images/s per instance within the latency target")
    parser.add_argument("--latency-target-ms", type=float, default=500.0)
    parser.add_argument(
        "--recommend", action="store_true", help="search tiers, min size and warm pool for the cheapest"
    )
    parser.add_argument(
        "--target", type=float, default=DEFAULT_TARGET, help="share of requests within the latency target"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    try:
        stack = load_stack(args.stack_file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    traffic = PROFILES[args.profile]() if args.profile else from_csv(args.traffic)
    level = ServiceLevel(latency_target_s=args.latency_target_ms / 1000)

    def model_of(config: StackConfig) -> InstanceModel:
        return instance_for(
            config.fleet.instance_type,
            config.fleet.root_volume_gb,
            stack.fleet.instance_type,
            args.capacity,
            args.benchmark,
            config.fleet.service_env,
        )

    variants: dict[str, Result] = {}
    for name in ["default", *args.variant]:
        config = apply(stack, name)
        variants[name] = simulate(traffic, config, model_of(config), level)

    recommendation = None
    if args.recommend:
        best, candidates = recommend(traffic, stack, args.target, level, args.benchmark, args.capacity)
        tiers = report.tier_rows(best_per_tier(candidates, args.target), traffic.duration_s)
        recommendation = {
            "target_within_slo": args.target,
            "best": best.as_dict() if best else None,
            "candidates": [candidate.as_dict() for candidate in candidates],
        }
        if best is not None:
            variants["recommended"] = best.result

    default_instance = model_of(stack)
    header = (
        f"Traffic: {traffic.name}, {traffic.duration_s / 86400:.1f} days, peak {traffic.peak:,.0f} req/s. "
        f"Stack: {stack.fleet.instance_type} ({default_instance.capacity_rps:.0f} img/s each, "
        f"{default_instance.source}), min {stack.fleet.min_size}, max {stack.fleet.max_size}, "
        f"warm pool {stack.fleet.warm_pool_min_size}. Latency target {args.latency_target_ms:.0f} ms."
    )
    measurements = [m for path in args.benchmark for m in read_capacities(path)]
    if measurements:
        names = ", ".join(path.name for path in args.benchmark)
        print(f"Capacity per instance from {names}:")
        lines: dict[str, str] = {}  # the stack's own type first, then the tiers --recommend compares
        for config in [stack, *(tier_stack(stack, tier) for tier in TIERS)]:
            model = instance_model(
                config.fleet.instance_type, measurements=measurements, service_env=config.fleet.service_env
            )
            label = f"{model.instance_type} ({model.runtime} {model.precision})"
            lines.setdefault(label, f"  {label:<30} {model.capacity_rps:>8.0f} images/s  {model.source}")
        print("\n".join(lines.values()))
    print(report.table(header, variants))
    if recommendation is not None:
        best = recommendation["best"]
        if best is None:
            print(f"\nNothing meets {args.target:.1%} within the latency target; add capacity or relax --target.")
        else:
            print(
                f"\nRecommended for >= {args.target:.1%} within the latency target: {best['instance_type']} "
                f"({best['runtime']} {best['precision']}), minSize {best['min_size']}, warmPoolMinSize "
                f"{best['warm_pool']}, maxSize at least {best['max_size']} ({best['cost_usd']} USD for the period)"
            )
        print(f"\nEach tier's cheapest shape for >= {args.target:.1%} within {args.latency_target_ms:.0f} ms "
              f"(USD per month at this traffic):")  # fmt: skip
        print(report.markdown(report.TIER_COLUMNS, tiers))
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"traffic": traffic.name, "duration_s": traffic.duration_s, "peak_rps": traffic.peak,
            "instance_type": stack.fleet.instance_type, "latency_target_ms": args.latency_target_ms}  # fmt: skip
    report.write_json(report.plan_json(meta, variants, recommendation), args.out / "plan.json")
    report.plot(header, variants, args.out / "plan.png")
    print(f"\nwrote {args.out / 'plan.json'} and {args.out / 'plan.png'} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
