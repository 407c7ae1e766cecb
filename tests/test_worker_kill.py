"""A worker process killed under load (OOM killer, a crash in native code) against a real `bentoml serve`.

The contract (issue 10): it costs at most the requests that worker held at that moment; the server
restarts it and serves again, and /readyz comes back to 200. Both ways the service runs: a plain
`bentoml serve`, and with ``BENTOML_CONTAINERIZED`` set as the container image sets it (BentoML then
builds its watchers without respawn; service/respawn.py). How long recovery takes is measured by
``python -m bench.reliability --only kill``, not asserted here.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from bench.load import Upload
from bench.reliability_load import Sample, closed_loop, httpx_posts, pooled_client
from bench.reliability_server import gone, workers
from tests import images
from tests.server import Server, bentoml_serve

pytestmark = pytest.mark.server

CLIENTS = 16
SAFETY_S = 180  # a safety net for a hang, not a bound under test: a respawn loads and warms the model


async def _kill_under_load(server: Server, uploads: list[Upload]) -> tuple[list[Sample], float, int]:
    """Closed-loop load; SIGKILL the worker once every client has had answers; keep the load on until
    ``CLIENTS`` x 3 requests sent after the first post-kill 200 are answered. Returns the samples, when
    the worker was dead, and its pid."""
    samples: list[Sample] = []
    finished = False
    deadline = time.monotonic() + SAFETY_S
    async with pooled_client(CLIENTS, timeout_s=SAFETY_S) as client:
        load = asyncio.create_task(
            closed_loop(httpx_posts(client, f"{server.url}/predict"), uploads, CLIENTS, lambda: finished, samples)
        )
        while sum(s.ok for s in samples) < 3 * CLIENTS and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        (victim,) = workers(server.process.pid)
        victim.kill()
        dead_at = await gone(victim)

        def answered_after_recovery() -> int:
            first = min((s.done for s in samples if s.ok and s.sent >= dead_at), default=None)
            return 0 if first is None else sum(1 for s in samples if s.sent >= first)

        while answered_after_recovery() < 3 * CLIENTS and server.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        finished = True
        await load
    return samples, dead_at, victim.pid


def _ready(url: str) -> str:
    """/readyz's status once it answers 200 (or the last outcome when the safety net runs out)."""
    deadline, outcome = time.monotonic() + SAFETY_S, "none"
    while time.monotonic() < deadline:
        try:
            outcome = str(httpx.get(f"{url}/readyz", timeout=10).status_code)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        if outcome == "200":
            break
        time.sleep(0.2)
    return outcome


@pytest.mark.parametrize("containerized", [False, True], ids=["bentoml-serve", "containerized"])
def test_a_killed_worker_costs_only_the_requests_it_held(
    tmp_path: Path, model_store: tuple[Path, str], containerized: bool
) -> None:
    home, _ = model_store
    env = {"BENTOML_HOME": str(home), "RESNET18_DEVICE": "cpu", "RESNET18_PRECISION": "fp32"}
    if containerized:
        env["BENTOML_CONTAINERIZED"] = "true"
    uploads = [Upload.of("image", images.jpeg(seed=seed)) for seed in range(4)]

    with bentoml_serve(env, tmp_path / "server.log") as server:
        samples, dead_at, old_pid = asyncio.run(_kill_under_load(server, uploads))
        arbiter_exit = server.process.poll()
        assert arbiter_exit is None, (
            f"`bentoml serve` exited with {arbiter_exit} after its worker was killed:\n{server.log_text()[-3000:]}"
        )
        new_workers = [w.pid for w in workers(server.process.pid)]
        readyz = _ready(server.url)

    failed = [s for s in samples if not s.ok]
    sent_after = [s for s in samples if s.sent >= dead_at]
    first_ok = min((s.done for s in sent_after if s.ok), default=None)
    assert first_ok is not None, f"no 200 after the kill: {[s.outcome for s in sent_after][:50]}"
    # Only requests the worker held can fail: every failure was sent before it died, and every request
    # sent after it died (queued at the arbiter's listening socket until the new worker accepts) is answered.
    assert [s.outcome for s in failed if s.sent >= dead_at] == []
    assert len([s for s in samples if s.sent >= first_ok]) >= 3 * CLIENTS
    assert len(failed) <= CLIENTS, [s.outcome for s in failed]  # at most one in flight per client
    assert new_workers and old_pid not in new_workers
    assert readyz == "200"
