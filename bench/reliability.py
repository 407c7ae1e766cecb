"""Reliability under stop, overload, idle connections, a killed worker and a long mixed run (issue 10).

    python -m bench.reliability [--repo PATH] [--only stop,overload,keepalive,kill,soak]
        [--skip-keepalive] [--containerized] [--overload-clients 128] [--soak-requests 10000] [--weights PATH]

Each scenario starts its own `bentoml serve` of the checkout at --repo (this venv's packages, that
checkout's service code) on CPU, with seeded stand-in weights unless --weights is given. Prints one
table and writes it as JSON to --out (bench/results/). See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from bench import reliability_scenarios as scenarios
from bench.load import Upload
from bench.reliability_server import serve
from bench.sample_images import jpeg
from bench.servers import REPO
from service.model.weights import build_resnet18

SCENARIOS = ("stop", "overload", "keepalive", "kill", "soak")  # overload includes health under load


def seeded_weights(folder: Path) -> Path:
    """Random but fixed weights (as bench/__main__.py): ImageNet weights cannot be downloaded here."""
    torch.manual_seed(0)
    path = folder / "resnet18-reliability.pth"
    torch.save(build_resnet18(None).state_dict(), path)
    return path


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    if isinstance(value, dict):
        if {"p50_ms", "p99_ms", "max_ms"} <= value.keys():
            return f"p50 {_fmt(value['p50_ms'])} / p99 {_fmt(value['p99_ms'])} / max {_fmt(value['max_ms'])} ms"
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    return str(value)


def rows(name: str, result: dict[str, Any]) -> list[tuple[str, str]]:
    """(measure, value) lines of the table for one scenario's result."""
    if name == "stop":
        keys = [
            ("in flight at SIGTERM (sent, not answered)", "in_flight_at_signal"),
            ("sent after SIGTERM (server running)", "sent_after_signal"),
            ("  their latency", "sent_after_signal_latency"),
            ("sent after exit", "sent_after_exit"),
            ("/readyz every 100 ms after SIGTERM", "readyz_after_signal"),
            ("  its latency", "readyz_latency"),
            ("  first 503 after (s)", "readyz_first_503_s"),
            ("exited within wait", "exited"),
            ("exit code", "exit_code"),
            ("SIGTERM -> exit (s)", "signal_to_exit_s"),
        ]
        return [(label, _fmt(result[key])) for label, key in keys]
    if name == "overload":
        out: list[tuple[str, str]] = []
        for phase, clients in (("normal", result["normal_clients"]), ("overload", result["overload_clients"])):
            r = result[phase]
            out += [
                (f"{clients} clients: goodput (200/s)", _fmt(r["goodput_per_s"])),
                (f"{clients} clients: latency of 200s", _fmt(r)),
                (f"{clients} clients: statuses", _fmt(r["statuses"])),
                *[
                    (
                        f"  sent from {w['from_s']:.0f} s: p99 of 200s (ms), statuses",
                        f"{_fmt(w['p99_ms'])}; {_fmt(w['statuses'])}",
                    )
                    for w in r["windows"]
                ],
            ]
        out.append(("goodput ratio overload/normal", _fmt(result["goodput_ratio"])))
        retry = "waits Retry-After" if result.get("honor_retry_after") else "retries after 0.1 s"
        out.append(("load generator; after a 503 a client", f"{result.get('client', 'httpx')}; {retry}"))
        rec, first = result["recovery"], result["recovery_first_2s"]
        out += [
            (f"recovery ({result['normal_clients']} clients, 5 s): statuses", _fmt(rec["statuses"])),
            ("  latency of 200s", _fmt(rec)),
            ("  first 2 s: statuses", _fmt(first["statuses"])),
            ("  first 2 s: latency of 200s", _fmt(first)),
        ]
        for probe in ("livez", "readyz"):
            h = result["health_during_overload"][probe]
            out += [(f"/{probe} every 200 ms during overload", _fmt(h["statuses"])), ("  its latency", _fmt(h))]
        return out
    if name == "keepalive":
        keys = [
            ("idle (s)", "idle_s"),
            ("first request", "first"),
            ("second request, after idle", "second"),
            ("same connection (local port)", "same_connection"),
            ("server closed it after (s)", "server_closed_after_s"),
        ]
        return [(label, _fmt(result[key])) for label, key in keys]
    if name == "kill":
        keys = [
            ("in flight at SIGKILL", "in_flight_at_kill"),
            ("sent after, until the first 200", "sent_after_kill_until_first_200"),
            ("  their latency", "sent_after_kill_until_first_200_latency"),
            ("sent after the first 200", "sent_after_first_200"),
            ("failed requests in all", "failed_total"),
            ("SIGKILL -> first 200 (s)", "kill_to_first_200_s"),
            ("worker pid before -> after", "old_worker_pid"),
            ("arbiter exit code (-: running)", "arbiter_exit_code"),
            ("SIGKILL -> arbiter exit (s)", "kill_to_arbiter_exit_s"),
            ("/readyz afterwards", "readyz_after"),
        ]
        out = [(label, _fmt(result[key])) for label, key in keys]
        out[6] = (out[6][0], f"{result['old_worker_pid']} -> {result['new_worker_pids'] or 'none'}")
        return out
    if name == "soak":
        return [
            ("requests, concurrency", f"{result['requests']}, {result['concurrency']}"),
            ("statuses", _fmt(result["statuses"])),
            *[(f"  {kind}", _fmt(counts)) for kind, counts in result["by_input"].items()],
            ("5xx or exceptions", _fmt(result["server_errors"])),
            ("latency of 200s", _fmt(result["ok_latency"])),
            (
                "RSS start / max / end (MB)",
                " / ".join(_fmt(result[k]) for k in ("rss_start_mb", "rss_max_mb", "rss_end_mb")),
            ),
            ("RSS slope, last half (MB/1000 req)", _fmt(result["rss_slope_last_half_mb_per_1000"])),
        ]
    raise ValueError(name)


def table(title: str, results: dict[str, dict[str, Any]]) -> str:
    lines = [title]
    for name, result in results.items():
        lines.append(f"\n[{name}]")
        if "error" in result:
            lines.append(f"  FAILED: {result['error']}")
            continue
        lines += [f"  {label:<42} {value}" for label, value in rows(name, result)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose service to serve")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated, of {','.join(SCENARIOS)}")
    parser.add_argument("--skip-keepalive", action="store_true", help="skip the 65 s idle connection")
    parser.add_argument("--overload-clients", type=int, default=128, help="8x the 16 normal clients")
    parser.add_argument(
        "--overload-client",
        choices=("raw", "httpx"),
        default="raw",
        help="the overload's load generator: bare asyncio sockets (cheap) or httpx (as the other scenarios)",
    )
    parser.add_argument(
        "--ignore-retry-after",
        action="store_true",
        help="overload: clients retry 0.1 s after a 503 instead of waiting its Retry-After (a retry storm)",
    )
    parser.add_argument("--phase-seconds", type=float, default=20, help="normal and overload phases")
    parser.add_argument("--soak-requests", type=int, default=10_000)
    parser.add_argument("--soak-concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=30, help="client timeout per request (s)")
    parser.add_argument(
        "--containerized", action="store_true", help="set BENTOML_CONTAINERIZED=true, as the container image does"
    )
    parser.add_argument("--weights", type=Path, default=None, help="a .pth state dict; default: seeded")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--label", default=None, help="name of the JSON file; default: the checkout's commit")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    if args.skip_keepalive and "keepalive" in chosen:
        chosen.remove("keepalive")
    repo = args.repo.resolve()
    commit = subprocess.run(
        ["git", "-C", str(repo), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    args.out.mkdir(parents=True, exist_ok=True)
    uploads = [Upload.of("image", jpeg(500, 375, seed=seed)) for seed in range(16)]

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as scratch, Progress() as progress:
        weights = args.weights or seeded_weights(Path(scratch))
        runs: dict[str, Callable[[Any], Any]] = {
            "stop": lambda s: asyncio.run(scenarios.stop_under_load(s, uploads, progress, args.timeout)),
            "overload": lambda s: asyncio.run(
                scenarios.overload(
                    s,
                    uploads,
                    progress,
                    args.overload_clients,
                    args.phase_seconds,
                    5,
                    args.timeout,
                    args.overload_client,
                    not args.ignore_retry_after,
                )
            ),
            "keepalive": lambda s: scenarios.idle_keepalive(s, progress),
            "kill": lambda s: asyncio.run(scenarios.worker_killed(s, uploads, progress, args.timeout)),
            "soak": lambda s: asyncio.run(
                scenarios.soak(s, progress, args.soak_requests, args.soak_concurrency, args.timeout)
            ),
        }
        for name in chosen:
            progress.console.print(f"{name}: starting a fresh `bentoml serve` of {repo}")
            try:
                env = {"BENTOML_CONTAINERIZED": "true"} if args.containerized else {}
                with serve(repo, weights, args.out / f"reliability-{name}.log", env) as served:
                    results[name] = runs[name](served)
            except Exception as exc:  # one scenario's failure is a finding, not the end of the run
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            time.sleep(1)

    where = ", BENTOML_CONTAINERIZED=true" if args.containerized else ""
    title = (
        f"reliability of {repo} ({commit}) on {os.cpu_count()} CPU cores ({platform.machine()}), CPU fp32, "
        f"seeded weights{where}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(table(title, results))
    path = args.out / f"reliability-{args.label or commit or 'run'}.json"
    path.write_text(
        json.dumps(
            {"title": title, "args": vars(args) | {"repo": str(repo)}, "results": results}, indent=1, default=str
        )
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
