"""docs/deploy.md states the stack's numbers: the tables are checked against the code they describe."""

from __future__ import annotations

import re
from pathlib import Path

from infra.config import parse
from infra.instance_types import INSTANCE_TYPES
from infra.plan.capacity import ASSUMED_CAPACITY
from infra.plan.recommend import TIERS

DEPLOY = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()


def test_the_instance_table_is_the_planners() -> None:
    rows = re.findall(r"^\| `([a-z0-9.]+)`[^|]*\| [^|]+\| (\d+) \| ([\d.]+) \|$", DEPLOY, re.M)
    assert [name for name, _, _ in rows] == list(TIERS)
    for name, capacity, price in rows:
        assert float(capacity) == ASSUMED_CAPACITY[name]
        assert float(price) == INSTANCE_TYPES[name].usd_per_hour


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
