"""`podman stop` of the running service container while clients keep requests in flight: prints what
every request got (before and after the stop began), how long the stop took and how the container
exited. A measurement, not a test: the stop contract itself is issue 10's.

python container/stop_under_load.py NAME URL [--clients 16] [--warmup-s 5]
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import subprocess
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

CONTAINERS_CONF = Path(__file__).with_name("containers.conf")


def jpeg(width: int = 500, height: int = 375) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((width, height), 64).convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name")
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    args = parser.parse_args()
    body = jpeg()
    outcomes: dict[str, collections.Counter[str]] = {"before": collections.Counter(), "after": collections.Counter()}
    stop_sent = threading.Event()
    done = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not done.is_set():
                phase = "after" if stop_sent.is_set() else "before"
                try:
                    outcome = str(http.post(f"{args.url}/predict", files={"image": ("x.jpg", body)}).status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with lock:
                    outcomes[phase][outcome] += 1
                if outcome != "200" and phase == "after":
                    time.sleep(0.05)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    time.sleep(args.warmup_s)
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    started = time.monotonic()
    stop_sent.set()
    subprocess.run(["podman", "stop", args.name], env=env, check=True, capture_output=True)
    stop_s = time.monotonic() - started
    done.set()
    for thread in threads:
        thread.join(timeout=35)
    state = subprocess.run(
        ["podman", "inspect", "--format", "{{.State.ExitCode}} {{.State.OOMKilled}}", args.name],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    print(f"podman stop under load ({args.clients} closed-loop clients, 500x375 JPEG on /predict)")
    print(f"  stop took {stop_s:.1f} s; container exit code {state[0]} (137 = SIGKILL after the stop timeout)")
    for phase, counter in outcomes.items():
        summary = ", ".join(f"{outcome}: {count}" for outcome, count in sorted(counter.items())) or "none"
        print(f"  requests sent {phase} the stop began: {summary}")


if __name__ == "__main__":
    main()
