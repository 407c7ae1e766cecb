"""schemathesis, a fuzzer that reads the service's own OpenAPI document, against a real `bentoml serve`:
every check it has, bounded in time, with a fixed seed. No 5xx, no status or content type the document
does not list, error bodies as documented, and the server still serving afterwards."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import Server
from tests.test_api import assert_still_serving

pytestmark = pytest.mark.server

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# positive_data_acceptance expects every schema-valid request to succeed, but OpenAPI cannot say "bytes
# that decode as an image": a schema-valid file of random bytes is rightly a 422.
EXCLUDED = "positive_data_acceptance"


def test_schemathesis_finds_nothing(server: Server, tmp_path: Path) -> None:
    command = [
        str(SCHEMATHESIS), "run", f"{server.url}/docs.json", "--checks", "all", "--exclude-checks", EXCLUDED,
        "--max-examples", "25", "--max-time", "60", "--seed", "1", "--workers", "1", "--request-timeout", "30",
        "--report-dir", str(tmp_path),
    ]  # fmt: skip
    # In tmp_path: schemathesis keeps a cache of what it found in its working directory.
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:]
    assert "Tested: 6" in result.stdout, result.stdout[-3000:]  # every operation of the document
    cases = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert cases and int(cases[1]) == int(cases[2]) > 1000, result.stdout[-3000:]
    assert_still_serving(server)
