"""docs/deploy.md states the stack's numbers: its tables are checked against the code they describe, and
the tier tables are the planner's own output on the measured benchmark the docs quote."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.config import parse
from infra.instance_types import INSTANCE_TYPES
from infra.plan.capacity import instance_model, read_capacities
from infra.plan.recommend import DEFAULT_TARGET, best_per_tier, recommend
from infra.plan.report import TIER_COLUMNS, markdown, tier_rows
from infra.plan.traffic import PROFILES

REPO = Path(__file__).resolve().parents[2]
DEPLOY = (REPO / "docs" / "deploy.md").read_text()
# The measured benchmark the docs' figures come from (bench/measured/README.md says which run).
MEASURED = REPO / "bench" / "measured" / "cpu-2vcpu-epyc.json"
TIER_BLOCK = re.compile(r"<!-- tiers: (?P<profile>[a-z-]+) -->\n(?P<table>.*?)\n<!-- /tiers -->", re.S)


def test_the_instance_table_is_the_code() -> None:
    rows = re.findall(r"^\| `([a-z0-9.]+)` \| (GPU|CPU) \| [^|]+\| (\d+) \| ([\d.]+) \|", DEPLOY, re.M)
    assert [name for name, *_ in rows] == list(INSTANCE_TYPES)
    for name, kind, vcpus, price in rows:
        spec = INSTANCE_TYPES[name]
        assert (kind, int(vcpus), float(price)) == (spec.kind.name.upper(), spec.vcpus, spec.usd_per_hour)


PLANNER = (REPO / "docs" / "planner.md").read_text()


@pytest.mark.parametrize("profile", ["office-hours", "diurnal-week"])
def test_the_tier_tables_are_the_planners_output(profile: str) -> None:
    """`python -m infra.plan --profile P --recommend --benchmark bench/measured/...` prints these tables,
    in docs/deploy.md (choosing a type) and docs/planner.md (the planner's own page)."""
    traffic = PROFILES[profile]()
    _, candidates = recommend(traffic, parse({"region": "us-east-1"}), benchmarks=[MEASURED])
    planned = markdown(TIER_COLUMNS, tier_rows(best_per_tier(candidates, DEFAULT_TARGET), traffic.duration_s))
    for page in (DEPLOY, PLANNER):
        assert [m["table"] for m in TIER_BLOCK.finditer(page) if m["profile"] == profile] == [planned]


def test_the_timing_the_page_promises() -> None:
    config = parse({"region": "us-east-1"})
    assert f"for at most **{config.fleet.capacity_timeout.removesuffix('m')} minutes**" in DEPLOY
    assert f"`fleet.readyTimeoutS` {config.fleet.ready_timeout_s} s" in DEPLOY
    assert f"ABANDON after {config.fleet.hook_timeout_s} s" in DEPLOY
    cooldown = config.scaling.timing.scale_in_cooldown_s
    assert f"(15 x 60 s = {cooldown} s)" in DEPLOY
    for key in ("scaleOutEvaluationPeriods", "scaleOutDatapoints", "scaleInEvaluationPeriods", "scaleInDatapoints",
                "instanceWarmupS", "scaleOutPercent"):  # fmt: skip
        assert f"`{key}`" in DEPLOY


def test_the_gpu_types_measured_cpu_bound_the_docs_quote() -> None:
    """The g4dn.xlarge CPU-side bound the tier discussion leans on is the planner's, on the same file."""
    model = instance_model("g4dn.xlarge", measurements=read_capacities(MEASURED))
    bound = re.search(r"its measured CPU side would allow (\d+)/s", model.source)
    assert bound is not None, model.source
    assert f"near {bound[1]} images/s" in DEPLOY
    assert f"CPU-side bound ({bound[1]} images/s)" in PLANNER
