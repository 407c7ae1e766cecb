"""The benchmark tool works end to end (its numbers are read from its own table, never asserted here)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.load import _percentile
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
        sys.executable, "-m", "bench", "--out", str(tmp_path), "--concurrency", "1", "4", "--requests", "8",
        "--warmup", "2", "--images", "6", "--large-images", "1", "--raw-seconds", "0.2",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Raw model ceiling" in result.stdout and "service (fp32)" in result.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    names = [server["name"] for server in results["servers"]]
    assert names[0] == "baseline (Flask, fp32)" and "service (fp32)" in names
    for server in results["servers"]:
        assert [level["concurrency"] for level in server["levels"]] == [1, 4]
        for level in server["levels"]:
            assert level["requests"] == 8 and level["ok"] + level["errors"] == 8
            assert level["images_per_s"] > 0
    assert {ratio["target"] for ratio in results["ratios"]} == {">= 5", ">= 0.6"}
    assert (tmp_path / "throughput.png").stat().st_size > 10_000
