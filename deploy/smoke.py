"""The live endpoint's smoke test: ``GET /readyz`` until it answers 200, then one ``POST /predict`` with a
real JPEG (multipart field ``image``; README, "POST /predict"), with an API key when the stack uses them."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

READY_POLL_S = 5.0
REQUEST_TIMEOUT_S = 30.0


class SmokeFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class SmokeResult:
    ready_after_s: float
    status: int
    label: str
    score: float
    latency_s: float


def photo_jpeg() -> bytes:
    """A real JPEG made here: a colour gradient with shapes (what it shows does not matter)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 240))
    pixels = image.load()
    assert pixels is not None
    for y in range(240):
        for x in range(320):
            pixels[x, y] = (x * 255 // 320, y * 255 // 240, 128)
    draw = ImageDraw.Draw(image)
    draw.ellipse((90, 50, 230, 190), fill=(200, 120, 40))
    draw.rectangle((20, 160, 80, 220), fill=(30, 30, 160))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def wait_ready(url: str, timeout_s: float, on_wait: Callable[[float, str], None]) -> float:
    start = time.monotonic()
    last = ""
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=REQUEST_TIMEOUT_S) as answer:
                if answer.status == 200:
                    return time.monotonic() - start
                last = f"status {answer.status}"
        except urllib.error.HTTPError as exc:
            last = f"status {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        elapsed = time.monotonic() - start
        if elapsed > timeout_s:
            raise SmokeFailed(
                f"{url}/readyz did not answer 200 within {timeout_s:.0f} s (last: {last}). If the instances are "
                "not ready, see their logs (stack output log_group); if the address is unreachable from here, "
                "access.allowedCidrs may not include this machine"
            )
        on_wait(elapsed, last)
        time.sleep(READY_POLL_S)


def predict(url: str, jpeg: bytes, api_key: str | None) -> tuple[int, dict[str, object], float]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="smoke.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + jpeg
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{url}/predict",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", **_headers(api_key)},
    )
    start = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as answer:
            return answer.status, json.loads(answer.read()), time.monotonic() - start
    except urllib.error.HTTPError as exc:
        raise SmokeFailed(f"POST {url}/predict answered {exc.code}: {exc.read()[:300]!r}") from None


def smoke_test(
    url: str,
    api_key: str | None,
    timeout_s: float,
    on_wait: Callable[[float, str], None],
    image: Path | None = None,
) -> SmokeResult:
    url = url.rstrip("/")
    ready_after = wait_ready(url, timeout_s, on_wait)
    status, answer, latency = predict(url, image.read_bytes() if image else photo_jpeg(), api_key)
    if "label" not in answer or "score" not in answer:
        raise SmokeFailed(f"POST {url}/predict answered {status} without a label and score: {answer}")
    return SmokeResult(ready_after, status, str(answer["label"]), float(str(answer["score"])), latency)
