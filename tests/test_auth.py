"""API keys (RESNET18_API_KEYS_FILE) against a real `bentoml serve`, and the key file's rules."""

from __future__ import annotations

import hmac
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from service import auth
from service.config import ConfigError
from tests import images
from tests.server import Server, bentoml_serve

KEYS = [secrets.token_urlsafe(32), secrets.token_urlsafe(32)]


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "api-keys"
    path.write_text(f"# team A\n{KEYS[0]}\n\n{KEYS[1]}  # team B, rotated 2026-11\n")
    return path


@pytest.fixture(scope="module")
def keyed_server(
    model_store: tuple[Path, str], keys_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    home, _ = model_store
    env = {
        "BENTOML_HOME": str(home),
        "RESNET18_DEVICE": "cpu",
        "RESNET18_API_KEYS_FILE": str(keys_file),
        "RESNET18_MAX_REQUEST_BYTES": str(1024 * 1024),
    }
    with bentoml_serve(env, tmp_path_factory.mktemp("logs") / "keyed.log") as running:
        yield running


def predict(server: Server, key: str | None, **headers: str) -> httpx.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(f"{server.url}/predict", files={"image": ("a.jpg", images.jpeg())}, headers=headers, timeout=60)


def assert_unauthorized(response: httpx.Response, error: str | None) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "key" in response.json()["error"]
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="elastic-resnet"')
    assert (f'error="{error}"' in challenge) if error else ("error=" not in challenge)


@pytest.mark.server
def test_requests_without_a_valid_key_are_refused(keyed_server: Server) -> None:
    assert_unauthorized(predict(keyed_server, None), None)
    assert_unauthorized(predict(keyed_server, "not-one-of-the-keys-at-all"), "invalid_token")
    assert_unauthorized(predict(keyed_server, KEYS[0][:-1]), "invalid_token")  # a near miss is a miss
    assert_unauthorized(predict(keyed_server, None, Authorization=f"Basic {KEYS[0]}"), None)  # wrong scheme
    files = [("images", ("a.jpg", images.jpeg()))]
    assert_unauthorized(httpx.post(f"{keyed_server.url}/classify", files=files, timeout=60), None)
    assert_unauthorized(httpx.get(f"{keyed_server.url}/docs.json", timeout=10), None)  # deny by default


@pytest.mark.server
def test_each_key_in_the_file_is_accepted_on_both_endpoints(keyed_server: Server) -> None:
    assert predict(keyed_server, KEYS[0]).status_code == 200
    files = [("images", ("a.jpg", images.jpeg())), ("images", ("b.png", images.png_with_alpha()))]
    response = httpx.post(
        f"{keyed_server.url}/classify", files=files, headers={"Authorization": f"bearer {KEYS[1]}"}, timeout=60
    )
    assert response.status_code == 200, response.text
    assert len(response.json()) == 2


@pytest.mark.server
def test_health_checks_and_metrics_stay_open_and_never_show_a_key(keyed_server: Server) -> None:
    for path in ("/livez", "/readyz"):
        assert httpx.get(f"{keyed_server.url}{path}", timeout=10).status_code == 200
    metrics = httpx.get(f"{keyed_server.url}/metrics", timeout=10)
    assert metrics.status_code == 200 and "bentoml_" in metrics.text
    assert predict(keyed_server, KEYS[0]).status_code == 200
    assert predict(keyed_server, "a-wrong-key-that-should-not-be-logged").status_code == 401
    texts = {"metrics": httpx.get(f"{keyed_server.url}/metrics", timeout=10).text, "log": keyed_server.log_text()}
    for where, text in texts.items():
        for secret in (*KEYS, "a-wrong-key-that-should-not-be-logged"):
            assert secret not in text, f"a key appears in the {where}"
    assert "API keys required" in texts["log"]


@pytest.mark.server
def test_a_request_without_a_key_is_refused_before_its_body_is_read(keyed_server: Server) -> None:
    """401 for a body the server would otherwise refuse as too large (413) or malformed (400): nothing
    past the headers was looked at. The declared 50 MB are never sent; the answer comes anyway."""
    address = urlsplit(keyed_server.url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 50000000\r\n\r\nnot even multipart"
        )
        head = sock.recv(65536).decode(errors="replace")
    assert head.startswith("HTTP/1.1 401"), head
    assert httpx.post(f"{keyed_server.url}/predict", content=b"{}", timeout=10).status_code == 401


@pytest.mark.server
def test_keys_rotate_without_a_restart(keyed_server: Server, keys_file: Path) -> None:
    new_key = secrets.token_urlsafe(32)
    original = keys_file.read_text()
    try:
        keys_file.write_text(f"{KEYS[0]}\n{new_key}\n")  # KEYS[1] revoked, new_key added
        deadline = time.monotonic() + 4 * auth.RELOAD_CHECK_S
        while predict(keyed_server, new_key).status_code != 200:
            assert time.monotonic() < deadline, "the new key was never accepted"
            time.sleep(0.5)
        assert predict(keyed_server, KEYS[1]).status_code == 401
        assert predict(keyed_server, KEYS[0]).status_code == 200
        keys_file.write_text("")  # an emptied file would lock everyone out: the keys in force stay
        time.sleep(auth.RELOAD_CHECK_S + 1)
        assert predict(keyed_server, new_key).status_code == 200
        assert "keeping the previous keys" in keyed_server.log_text()
    finally:
        keys_file.write_text(original)


@pytest.mark.server
def test_an_open_service_says_so_loudly(server: Server) -> None:
    assert predict(server, None).status_code == 200
    assert "RESNET18_API_KEYS_FILE is not set" in server.log_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("# only comments\n\n", "holds no key"),
        ("short-key\n", "line 1"),
        (f"{KEYS[0]}\nhas a space in the middle of it\n", "line 2"),
    ],
)
def test_a_bad_keys_file_stops_start_up_without_showing_a_key(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keys"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as raised:
        auth.KeyFile.read(path)
    for line in content.splitlines():
        if line.strip() and not line.startswith("#"):
            assert line.strip() not in str(raised.value)


def test_a_missing_keys_file_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        auth.KeyFile.read(tmp_path / "absent")


def test_the_comparison_takes_the_same_path_whichever_key_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Constant time by construction: every stored digest is compared, with hmac.compare_digest, whether
    the presented key is the first, the last or none of them (no early exit a caller could time)."""
    path = tmp_path / "keys"
    path.write_text("\n".join(KEYS) + "\n")
    keys = auth.KeyFile.read(path)
    compared: list[int] = []
    compare = hmac.compare_digest

    def counting_compare(a: bytes, b: bytes) -> bool:
        compared.append(len(a))
        return compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting_compare)
    for presented, expected in ((KEYS[0], True), (KEYS[1], True), ("x" * 43, False)):
        compared.clear()
        assert keys.accepts(presented.encode()) is expected
        assert compared == [32, 32]  # SHA-256 digests, both of them, every time
