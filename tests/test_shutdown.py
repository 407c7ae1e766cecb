"""Stopping under load: SIGTERM to a real `bentoml serve`, as `docker stop` sends it (service/drain.py)."""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import socket
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bench.load import Upload
from service import drain
from service.load import LOAD
from service.timeouts import CLOSE_TIMEOUT_S
from tests import images
from tests.server import Server, bentoml_serve

pytestmark = pytest.mark.server

CLIENTS = 16
# What a request sent after the signal may get: an answer, or a refused connection (never a hang, a
# reset after the request was sent, or a 5xx other than 503).
REFUSED = "ConnectError"


def _serve_env(model_store: tuple[Path, str], workers: int = 1) -> dict[str, str]:
    home, _ = model_store
    return {
        "BENTOML_HOME": str(home),
        "RESNET18_DEVICE": "cpu",
        "RESNET18_PRECISION": "fp32",
        "RESNET18_API_WORKERS": str(workers),
    }


def _outcome(call: Callable[[], httpx.Response]) -> tuple[str, httpx.Response | None]:
    try:
        response = call()
    except httpx.HTTPError as exc:
        return type(exc).__name__, None
    return str(response.status_code), response


@pytest.mark.parametrize("workers", [1, 2], ids=["one worker", "two workers (GPU shape)"])
def test_sigterm_under_load_answers_every_admitted_request(
    tmp_path: Path, model_store: tuple[Path, str], workers: int
) -> None:
    body = images.jpeg(seed=3)
    before: collections.Counter[str] = collections.Counter()
    after: collections.Counter[str] = collections.Counter()
    answers: list[httpx.Response] = []
    signalled, stop = threading.Event(), threading.Event()
    lock = threading.Lock()

    def client(server: Server) -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                sent_after = signalled.is_set()
                outcome, response = _outcome(
                    lambda: http.post(f"{server.url}/predict", files={"image": ("a.jpg", body)})
                )
                with lock:
                    (after if sent_after else before)[outcome] += 1
                    if response is not None:
                        answers.append(response)
                if sent_after:
                    time.sleep(0.02)

    with bentoml_serve(_serve_env(model_store, workers), tmp_path / "server.log") as server:
        threads = [threading.Thread(target=client, args=(server,), daemon=True) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        while sum(before.values()) < 3 * CLIENTS:  # every client has had answers: requests are in flight
            time.sleep(0.05)
        signalled.set()
        server.process.send_signal(signal.SIGTERM)
        readiness = [_outcome(lambda: httpx.get(f"{server.url}/readyz", timeout=5))[0] for _ in range(5)]
        exit_code = server.process.wait(timeout=90)  # safety net; the bound is DRAIN_TIMEOUT_S + CLOSE_TIMEOUT_S
        stop.set()
        for thread in threads:
            thread.join(timeout=35)
        log = server.log_text()

    assert exit_code == 0, log[-2000:]
    # A request whose upload began just before the signal may reach the server after it: then it is not
    # admitted, and gets the drain's 503. Whatever was admitted got its normal answer: nothing else.
    assert before["200"] > 0 and set(before) <= {"200", "503"}, before
    assert set(after) <= {"200", "503", REFUSED}, after  # no reset, timeout or 500 after the signal
    assert set(readiness) <= {"503", REFUSED} and readiness[0] == "503", readiness
    for response in answers:
        if response.status_code == 503:
            assert response.headers["retry-after"] == "1" and response.headers["connection"] == "close"
            assert response.json()["error"] == drain.DRAINING_MESSAGE
    assert log.count("drained in") == workers
    assert log.count("listening socket shut down") == 1  # by the one worker that closes the door


def test_a_request_still_uploading_at_the_signal_is_answered(tmp_path: Path, model_store: tuple[Path, str]) -> None:
    """Admitted = its headers arrived: the rest of its body may come after the signal, and it still gets
    its answer, while a request that arrives meanwhile gets 503 at once."""
    upload = Upload.of("image", images.jpeg(seed=4))
    head = (
        f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: {upload.content_type}\r\n"
        f"Content-Length: {len(upload.body)}\r\n\r\n"
    ).encode()
    with bentoml_serve(_serve_env(model_store), tmp_path / "server.log") as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
            slow.sendall(head + upload.body[: len(upload.body) // 2])
            time.sleep(0.5)  # admitted: the middleware counts it once its headers are parsed
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            meanwhile = httpx.post(f"{server.url}/predict", files={"image": ("b.jpg", images.jpeg())}, timeout=10)
            assert server.process.poll() is None  # still draining: the slow request holds it
            slow.sendall(upload.body[len(upload.body) // 2 :])
            answer = _read_response(slow)
        exit_code = server.process.wait(timeout=90)
    assert meanwhile.status_code == 503 and "shutting down" in meanwhile.json()["error"]
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert "model" in json.loads(answer.partition(b"\r\n\r\n")[2])
    assert exit_code == 0


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_the_drain_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that never finishes (a client that stops sending its body) cannot hold the stop past
    DRAIN_TIMEOUT_S: then uvicorn's own shutdown runs with CLOSE_TIMEOUT_S, after which it cancels."""
    monkeypatch.setattr(drain, "DRAIN_TIMEOUT_S", 0.3)
    monkeypatch.setattr(drain, "DRAIN", drain.DrainState())
    monkeypatch.setattr(LOAD, "in_flight", 1)  # never answered
    exits: list[int] = []
    server = types.SimpleNamespace(
        should_exit=False,
        config=types.SimpleNamespace(timeout_graceful_shutdown=None),
        servers=[],
        server_state=types.SimpleNamespace(connections=[types.SimpleNamespace(cycle=None)]),  # never speaks
    )
    drain.DRAIN.begin()
    started = time.monotonic()
    asyncio.run(
        drain._drain_then_exit(
            server,  # type: ignore[arg-type]
            lambda srv, sig, frame: exits.append(sig),
            signal.SIGTERM,
            None,
            workers=2,
        )
    )
    assert exits == [signal.SIGTERM]
    # the drain's bound, and nothing after it: a silent new connection is not waited for past the bound
    assert 0.3 <= time.monotonic() - started < 0.3 + drain.HEAR_OUT_S
    assert server.config.timeout_graceful_shutdown == CLOSE_TIMEOUT_S


def test_a_second_signal_stops_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drain, "DRAIN", drain.DrainState())
    calls: list[int] = []
    monkeypatch.setattr(drain.uvicorn.Server, "handle_exit", lambda self, sig, frame: calls.append(sig))
    drain.install(workers=1)
    server = drain.uvicorn.Server.__new__(drain.uvicorn.Server)
    drain.DRAIN.begin()  # the first signal already started the drain
    drain.uvicorn.Server.handle_exit(server, signal.SIGTERM, None)
    assert calls == [signal.SIGTERM]


def test_bentoml_serve_exits_with_code_zero_when_idle(tmp_path: Path, model_store: tuple[Path, str]) -> None:
    with bentoml_serve(_serve_env(model_store), tmp_path / "server.log") as server:
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=90) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/livez", timeout=5)


def test_connections_queued_at_the_end_of_the_drain_get_503_then_new_ones_are_refused() -> None:
    """The last step of the drain on real sockets: what the kernel queued is answered, not reset."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = types.SimpleNamespace(servers=[types.SimpleNamespace(sockets=[listener], close=lambda: None)])
    queued = socket.create_connection(("127.0.0.1", port), timeout=10)  # never accepted by a server
    queued.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello")
    with queued:
        asyncio.run(_refuse_after_the_client_closes(server, queued))
    with listener, pytest.raises(ConnectionRefusedError):  # still open here, as in the arbiter: shut down
        socket.create_connection(("127.0.0.1", port), timeout=10)


async def _refuse_after_the_client_closes(server: types.SimpleNamespace, client: socket.socket) -> None:
    refusing = asyncio.create_task(drain._refuse_new_connections(server))  # type: ignore[arg-type]
    answer = await asyncio.to_thread(_read_response, client)
    client.close()  # as a client does after `connection: close`: ends the lingering close
    await refusing
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert answer.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in head and b"connection: close" in head
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"error": drain.DRAINING_MESSAGE}
