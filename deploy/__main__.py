"""python -m deploy --stack dev   (make deploy STACK=dev): a stack from a clone to a live endpoint.

Preflight checks first (each printed, with its fix when it fails), then bento, image, ECR push, `pulumi
up` and a smoke test of the endpoint; a step whose result exists is skipped, so re-running resumes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from .commands import CommandError, Runner, SubprocessRunner
from .preflight import PreflightFailed, preflight
from .smoke import SmokeFailed
from .steps import Deployment, Options
from .target import REPO, TargetError, load_target


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.split("\n")[0])
    p.add_argument("--stack", required=True, help="the Pulumi stack; its configuration is Pulumi.<stack>.yaml")
    p.add_argument("--stack-file", type=Path, help="the stack's configuration file (default: Pulumi.<stack>.yaml)")
    p.add_argument(
        "--allow-untrained", action="store_true", help="deploy untrained weights (random predictions: smoke tests only)"
    )
    p.add_argument("--engine", choices=["docker", "podman"], help="container engine (default: docker, else podman)")
    p.add_argument(
        "--containerize-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to the image build as `--opt KEY=VALUE` (e.g. isolation=chroot for podman in a sandbox)",
    )
    p.add_argument(
        "--smoke-timeout", type=float, default=900.0, help="seconds the endpoint has to become ready (default 900)"
    )
    p.add_argument("--smoke-image", type=Path, help="a JPEG for the smoke test's /predict (default: one made here)")
    return p


def main(argv: list[str] | None = None, runner: Runner | None = None, out: TextIO = sys.stdout) -> int:
    args = parser().parse_args(argv)
    runner = runner or SubprocessRunner(out)
    start = time.monotonic()
    try:
        target = load_target(args.stack, args.stack_file, REPO)
    except TargetError as exc:
        print(f"error: {exc}", file=out)
        return 2
    print(f"preflight: stack {args.stack}, {target.stack_file.name}", file=out)
    try:
        findings = preflight(runner, target, out, args.allow_untrained, args.engine)
    except PreflightFailed as exc:
        print(f"error: {exc}; nothing was built or changed", file=out)
        return 2
    options = Options(
        allow_untrained=args.allow_untrained,
        engine=findings.engine,
        containerize_opts=args.containerize_opt,
        smoke_timeout_s=args.smoke_timeout,
        smoke_image=args.smoke_image,
    )
    deployment = Deployment(runner, target, findings, options, out)
    try:
        endpoint = deployment.run()
    except (CommandError, SmokeFailed, RuntimeError) as exc:
        print(f"error: {exc}", file=out)
        print("re-run the same command to resume: finished steps are skipped", file=out)
        return 1
    instance = target.instance
    minimum = target.config.fleet.min_size
    print(
        f"\nlive: {endpoint} (image {deployment.image_tag}) in {time.monotonic() - start:.0f} s\n"
        + "".join(f"  {name:<9} {seconds:7.1f} s  {note}\n" for name, seconds, note in deployment.timings.steps)
        + f"left running: {minimum} x {instance.name} at ${instance.usd_per_hour:g}/h (on-demand, us-east-1 price) "
        f"= ${minimum * instance.usd_per_hour * 730:,.0f}/month, plus the load balancer, NAT gateway and warm pool "
        f"(docs/deploy.md, cost); remove it all with `pulumi destroy --stack {args.stack}`",
        file=out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
