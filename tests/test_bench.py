"""The benchmark tool works end to end. Its figures are never compared with targets here (that is what
the benchmark reports); the test checks they exist, are finite and follow from the levels they cite."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import goals
from bench.__main__ import AGREEMENT_PHOTOS, default_runtime
from bench.load import _percentile
from infra.plan.capacity import read_capacities
from tests.server import REPO


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (_percentile(values, 50), _percentile(values, 95), _percentile(values, 99)) == (50.0, 95.0, 99.0)
    assert _percentile([7.0], 99) == 7.0


def test_gpu_check_script_is_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert shellcheck
    result = subprocess.run([shellcheck, str(REPO / "bench" / "gpu_check.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.server
def test_benchmark_runs_and_writes_its_table_json_and_plot(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "bench", "--out", str(tmp_path), "--concurrency", "1", str(goals.TARGET_CONCURRENCY),
        "--requests", "40", "--warmup", "2", "--images", "6", "--large-images", "1", "--raw-seconds", "0.2",
        "--calibration-photos", "200",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    runtime, precision = default_runtime("cpu")
    default = f"service ({runtime} {precision})"
    names = [server["name"] for server in results["servers"]]
    served = ["service (torch fp32)", "service (openvino fp32)", default, "service (openvino int8)"]
    assert names == ["baseline (Flask, fp32)", *dict.fromkeys(served)]  # fp32 is the default without native bf16
    for server in results["servers"]:
        assert [level["concurrency"] for level in server["levels"]] == [1, goals.TARGET_CONCURRENCY]
        for level in server["levels"]:
            assert level["requests"] == 40 and level["ok"] + level["errors"] == 40
            for field in ("images_per_s", "server_cpu_ms_per_image", "model_cpu_ms_per_image"):
                assert math.isfinite(level[field]) and level[field] > 0, (field, level[field])
            outside = level["server_cpu_ms_per_image"] - level["model_cpu_ms_per_image"]
            assert level["cpu_ms_per_image_outside_model"] == pytest.approx(outside)
    service = next(s for s in results["servers"] if s["name"] == "service (torch fp32)")
    assert all(level["mean_batch_size"] >= 1 for level in service["levels"])  # read from BentoML's metrics

    # Every goal is recomputed from the levels it names, in the same JSON.
    labels = {goal["label"] for goal in results["goals"]}
    assert {"fp32 served / eager fp32 in-process", "fp32 CPU ms/image outside the model"} <= labels
    assert {"int8 served / torch fp32 served", "int8 CPU ms/image served"} <= labels
    assert {a["precision"] for a in results["agreement"]} >= {"int8"}
    for agreement in results["agreement"]:
        assert 0 <= agreement["rate"] <= 1 and agreement["images"] == AGREEMENT_PHOTOS
    for goal in results["goals"]:
        measured = goals.level(results, goal["server"], goal["concurrency"])[goal["field"]]
        assert goal["value"] == pytest.approx(measured / goals.reference_value(results, goal["per"]))
        assert math.isfinite(goal["value"])
        assert goal["met"] == goals.OPERATORS[goal["op"]](goal["value"], goal["target"])

    # The planner's interface: exactly these keys, one object per served configuration, figures taken from
    # that server's levels; `capacity` is the default configuration's; capacity.json holds just them.
    capacities = results["capacities"]
    assert [f"service ({c['runtime']} {c['precision']})" for c in capacities] == list(dict.fromkeys(served))
    assert results["capacity"] == next(c for c in capacities if (c["runtime"], c["precision"]) == (runtime, precision))
    for capacity in capacities:
        assert set(capacity) == {
            "device", "gpu_name", "runtime", "precision", "cpu_ms_per_image_outside_model", "cpu_ms_per_image",
            "model_ceiling_images_per_s", "base_latency_ms", "cpus", "cpu_model", "threads_per_core", "cpu_features",
            "measured",
        }  # fmt: skip
        name = f"service ({capacity['runtime']} {capacity['precision']})"
        level = goals.level(results, name, goals.TARGET_CONCURRENCY)
        assert capacity["cpu_ms_per_image"] == level["server_cpu_ms_per_image"]
        assert capacity["cpu_ms_per_image_outside_model"] == level["cpu_ms_per_image_outside_model"]
        assert capacity["base_latency_ms"] == goals.level(results, name, 1)["p50_ms"]
        model = "openvino" if capacity["runtime"] == "openvino" else "service"
        assert capacity["model_ceiling_images_per_s"] == max(
            r["images_per_s"] for r in results["raw"] if r["precision"] == capacity["precision"] and r["model"] == model
        )
    kept = json.loads((tmp_path / "capacity.json").read_text())
    assert kept["capacities"] == capacities
    planned = read_capacities(tmp_path / "capacity.json")  # what `python -m infra.plan --benchmark` reads
    assert [(m.runtime, m.precision, m.cpu_ms_per_image) for m in planned] == [
        (c["runtime"], c["precision"], c["cpu_ms_per_image"]) for c in capacities
    ]
    assert (tmp_path / "throughput.png").stat().st_size > 10_000


@pytest.mark.server
def test_frontend_ceiling_serves_the_real_front_end_with_a_no_op_model(tmp_path: Path) -> None:
    """`python -m bench.frontend`: the service's HTTP, parsing, decoding and batching, no model; its answers
    say so, and the table has the event loop's CPU per image of every worker (docs/performance.md)."""
    command = [
        sys.executable, "-m", "bench.frontend", "--out", str(tmp_path), "--workers", "1", "2",
        "--concurrency", "4", "--requests", "24", "--warmup", "4",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    levels = json.loads((tmp_path / "frontend.json").read_text())["levels"]
    assert [(level["workers"], level["workers_seen"]) for level in levels] == [(1, 1), (2, 2)]
    split = json.loads((tmp_path / "frontend.json").read_text())["requests_per_worker"]
    assert sum(split["1"].values()) == 28 and sum(split["2"].values()) == 28  # 24 measured + 4 warm-up
    for level in levels:
        assert level["ok"] == 24 and level["errors"] == 0
        assert level["event_loop_ms_per_image"] > 0 and level["server_cpu_ms_per_image"] > 0
