"""The performance goals (issue 9), evaluated from the measured levels of one benchmark run.

Each goal in results.json names what it was computed from (a server's level at a concurrency, a field,
and what it is divided by), so a reader - and tests/test_bench.py - can recompute it from the same JSON.
"""

from __future__ import annotations

import math
import operator
from typing import Any

TARGET_CONCURRENCY = 32
# The in-process reference: plain eager fp32, the best of these batch sizes.
EAGER_BATCH_SIZES = (8, 16, 32)
OUTSIDE = "cpu_ms_per_image_outside_model"
OPERATORS = {">=": operator.ge, "<=": operator.le, "<": operator.lt}


def level(results: dict[str, Any], server: str, concurrency: int) -> dict[str, Any]:
    for entry in results["servers"]:
        if entry["name"] == server:
            for found in entry["levels"]:
                if found["concurrency"] == concurrency:
                    return dict(found)
    raise KeyError(f"no level at concurrency {concurrency} for {server!r}")


def reference_value(results: dict[str, Any], per: dict[str, Any] | None) -> float:
    """What a goal's measured value is divided by: 1, the eager in-process ceiling, or another server."""
    if per is None:
        return 1.0
    if per.get("raw") == "eager":
        return float(results["raw_eager_best"]["images_per_s"])
    return float(level(results, per["server"], per["concurrency"])[per["field"]])


def _goal(
    results: dict[str, Any], label: str, server: str, field: str, op: str, target: float, per: dict[str, Any] | None
) -> dict[str, Any]:
    measured = float(level(results, server, TARGET_CONCURRENCY)[field])
    value = measured / reference_value(results, per)
    return {
        "label": label,
        "server": server,
        "concurrency": TARGET_CONCURRENCY,
        "field": field,
        "per": per,
        "value": value,
        "op": op,
        "target": target,
        "met": math.isfinite(value) and OPERATORS[op](value, target),
    }


def evaluate(results: dict[str, Any], baseline: str) -> list[dict[str, Any]]:
    names = {entry["name"] for entry in results["servers"]}
    goals: list[dict[str, Any]] = []
    fp32 = "service (torch fp32)"
    if fp32 in names:
        goals += [
            _goal(results, "fp32 served / eager fp32 in-process", fp32, "images_per_s", ">=", 0.8, {"raw": "eager"}),
            _goal(results, "fp32 p99 (ms)", fp32, "p99_ms", "<=", 1200, None),
            _goal(results, "fp32 errors", fp32, "errors", "<=", 0, None),
            _goal(results, "fp32 CPU ms/image outside the model", fp32, OUTSIDE, "<=", 5, None),
        ]  # fmt: skip
    fast = next((n for n in ("service (openvino bf16)", "service (torch fp16)") if n in names), None)
    if fast:
        if baseline in names:
            per = {"server": baseline, "concurrency": TARGET_CONCURRENCY, "field": "images_per_s"}
            goals.append(_goal(results, f"{fast} / baseline", fast, "images_per_s", ">=", 3, per))
        goals += [
            _goal(results, f"{fast} p99 (ms)", fast, "p99_ms", "<", 1000, None),
            _goal(results, f"{fast} CPU ms/image outside the model", fast, OUTSIDE, "<=", 5, None),
        ]  # fmt: skip
    # Issue 18: the CPU runtimes against the served torch fp32 they replace, at the same load.
    per_fp32 = {"server": fp32, "concurrency": TARGET_CONCURRENCY, "field": "images_per_s"}
    int8 = "service (openvino int8)"
    if int8 in names and fp32 in names:
        goals += [
            _goal(results, "int8 served / torch fp32 served", int8, "images_per_s", ">=", 2.8, per_fp32),
            _goal(results, "int8 p99 (ms)", int8, "p99_ms", "<=", 1000, None),
            _goal(results, "int8 errors", int8, "errors", "<=", 0, None),
            _goal(results, "int8 CPU ms/image served", int8, "server_cpu_ms_per_image", "<=", 6.5, None),
        ]  # fmt: skip
    bf16 = "service (openvino bf16)"
    if bf16 in names and fp32 in names:
        goals.append(
            _goal(results, "CPU default (bf16) / torch fp32 served", bf16, "images_per_s", ">=", 1.8, per_fp32)
        )
    return goals
