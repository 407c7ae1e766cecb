"""Overload against a real `bentoml serve`: latency-bounded admission, health that never queues, recovery.

The figures (goodput, admitted p99 against the target) are measured by ``python -m bench.reliability``;
this checks the contract: nothing but 200 and 503 + Retry-After under any load, probes answered
throughout, and full service again as soon as the load drops.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from pathlib import Path

import httpx
import pytest

from bench.load import Upload
from tests import images
from tests.server import bentoml_serve

pytestmark = pytest.mark.server

CLIENTS = 128
SECONDS = 8.0


async def _closed_loop(url: str, uploads: list[Upload], clients: int, seconds: float) -> list[httpx.Response]:
    answers: list[httpx.Response] = []
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:

        async def client(index: int) -> None:
            while time.monotonic() < deadline:
                upload = uploads[index % len(uploads)]
                index += 1
                answers.append(
                    await http.post(
                        f"{url}/predict", content=upload.body, headers={"content-type": upload.content_type}
                    )
                )

        await asyncio.gather(*(client(i) for i in range(clients)))
    return answers


def test_overload_is_shed_at_the_door_and_probes_keep_answering(tmp_path: Path, model_store: tuple[Path, str]) -> None:
    home, _ = model_store
    # A latency target one CPU batch cannot meet: admission must shed everything past one full batch.
    env = {"BENTOML_HOME": str(home), "RESNET18_DEVICE": "cpu", "RESNET18_MAX_LATENCY_MS": "100"}
    uploads = [Upload.of("image", images.jpeg(seed=seed)) for seed in range(4)]
    probes: collections.Counter[str] = collections.Counter()
    loaded = threading.Event()

    def probe(url: str) -> None:
        with httpx.Client(timeout=5) as http:  # its own connection, as the load balancer's checker
            while not loaded.is_set():
                for path in ("/livez", "/readyz"):
                    try:
                        probes[f"{path} {http.get(url + path).status_code}"] += 1
                    except httpx.HTTPError as exc:
                        probes[f"{path} {type(exc).__name__}"] += 1
                time.sleep(0.2)

    with bentoml_serve(env, tmp_path / "server.log") as server:
        prober = threading.Thread(target=probe, args=(server.url,), daemon=True)
        prober.start()
        answers = asyncio.run(_closed_loop(server.url, uploads, CLIENTS, SECONDS))
        loaded.set()
        prober.join(timeout=30)
        after = [
            httpx.post(f"{server.url}/predict", files={"image": ("a.jpg", images.jpeg())}, timeout=30) for _ in range(3)
        ]
        log = server.log_text()

    statuses = collections.Counter(answer.status_code for answer in answers)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] > 0 and statuses[503] > 0, statuses
    shed = [answer for answer in answers if answer.status_code == 503]
    assert all(answer.headers["retry-after"] == "1" for answer in shed)
    reasons = collections.Counter(answer.json()["error"].split(":")[0] for answer in shed)
    assert set(reasons) == {"overloaded"}, reasons
    # Shed at admission (before the body is read), not after decoding by the batching's backstop.
    assert any("in flight" in answer.json()["error"] for answer in shed)
    assert set(probes) == {"/livez 200", "/readyz 200"}, probes  # a busy instance stays live and ready
    assert [answer.status_code for answer in after] == [200, 200, 200]  # recovery at once
    # Admission's sheds are answered in front of BentoML's access log (service/middleware_order.py):
    # only admitted requests are logged there, the batching backstop's 503s among them.
    at_the_door = [answer for answer in shed if "in flight" in answer.json()["error"]]
    assert "status=200" in log and log.count("status=503") == len(shed) - len(at_the_door)
