"""How the service container is run: one hardened set of `docker run` / `podman run` flags, used by the
instances' user data and by the local image check (container/run.sh), so both run the image the same way.

- read-only root filesystem; the one writable place is a tmpfs at /tmp. BENTOML_HOME is moved into it:
  BentoML creates its stores, Prometheus multiprocess files and task database there at every start (the
  bento itself, code and model, stays read-only at /home/bentoml/bento). Starlette spools uploads over
  1 MiB to /tmp too. The variable is set here, not in bentofile.yaml: BentoML 1.4.40's Dockerfile sets
  ``ENV BENTOML_HOME=/home/bentoml/`` before the bentofile's envs, and a Dockerfile ENV shadows the
  ``ARG`` those envs are declared with, so a bentofile value never reaches the image.
- no Linux capabilities and no privilege gain (setuid binaries) inside the container.
- a stop timeout that gives the service its drain bound, plus a grace for the processes to exit, before
  the engine sends SIGKILL.

The fallback (``read_only=False``, chosen by ``fleet.containerReadOnly: false``, never silently: `pulumi up`
warns): the same flags without ``--read-only``, for a GPU host whose NVIDIA container toolkit refuses a
read-only container. Toolkit 1.20.0 added a createContainer hook (update-application-profile) that creates
/etc/nvidia/nvidia-application-profiles-rc.d in the container's root and aborts the container's creation when
that is read-only (NVIDIA/nvidia-container-toolkit#2026, fixed by #2028: the hook now ignores a read-only
file system; KServe turned readOnlyRootFilesystem off for GPU containers, kserve/kserve#5711). The tmpfs,
BENTOML_HOME, the dropped capabilities, no-new-privileges and the stop timeout stay.

Pure: no Pulumi imports (``python -m infra.container`` prints the flags for shell scripts).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Literal

from service.timeouts import STOP_BOUND_S

Engine = Literal["docker", "podman"]

CONTAINER_PORT = 3000  # BentoML's port inside the image
SCRATCH_DIR = "/tmp"  # the only writable path
BENTOML_HOME = f"{SCRATCH_DIR}/bentoml"
# After the service's own bound (drain, then closing connections): the interpreter and the circus
# arbiter exit and the log driver flushes.
EXIT_GRACE_S = 5
STOP_TIMEOUT_S = STOP_BOUND_S + EXIT_GRACE_S


def hardened_run_flags(engine: Engine = "docker", read_only: bool = True) -> list[str]:
    """The security and lifecycle flags of the service container (not the name, ports, service settings or
    image). ``read_only=False``: the fallback above, everything but the read-only root."""
    flags = [
        *(["--read-only"] if read_only else []),
        # tmpfs size left at the kernel default (half the host's memory): uploads in flight are bounded
        # by the service's admission limits, and a full tmpfs would turn them into errors.
        "--tmpfs",
        f"{SCRATCH_DIR}:rw,nosuid,nodev,noexec,mode=1777",
        "--env",
        f"BENTOML_HOME={BENTOML_HOME}",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--stop-timeout",
        str(STOP_TIMEOUT_S),
    ]
    if engine == "podman" and read_only:
        # podman adds tmpfs on /tmp, /var/tmp and /run to a --read-only container by default; Docker
        # does not. Turned off, so the local check runs the image exactly as the instances do.
        flags.insert(1, "--read-only-tmpfs=false")
    return flags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.container", description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=["docker", "podman"], default="docker")
    parser.add_argument("--lines", action="store_true", help="one flag per line (for bash mapfile)")
    parser.add_argument(
        "--writable-root",
        action="store_true",
        help="the fallback set of fleet.containerReadOnly: false (no --read-only; everything else stays)",
    )
    args = parser.parse_args(argv)
    flags = hardened_run_flags(args.engine, read_only=not args.writable_root)
    print("\n".join(flags) if args.lines else shlex.join(flags))
    return 0


if __name__ == "__main__":
    sys.exit(main())
