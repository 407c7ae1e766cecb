"""BentoML bugs met while building the image, worked around here, in one place. Seen on bentoml 1.4.40
(requirements.lock.txt); re-check when it is upgraded. (The service's own: service/upstream.py.)

- A bento built with ``docker.dockerfile_template`` (bentofile.yaml, container/Dockerfile.j2) cannot be
  containerized: ``construct_containerfile``, behind ``bentoml containerize``, copies the bento into
  ``tempfile.TemporaryDirectory()`` and re-renders the template from that copy through
  ``resolve_user_filepath(..., secure=True)`` (bentoml/_internal/container/generate.py), which refuses every
  path outside the working directory: ``ValueError: Accessing file outside of current working directory is
  not allowed: /tmp/tmp.../env/docker/Dockerfile.template``. A regression of 1.4.36, open upstream as
  bentoml/BentoML#5566. Workaround: Python's temporary directory under the working directory, for the
  ``bentoml`` process only (the podman it starts keeps the system's). The working directory must not be
  under a hidden (dot) directory: the same check refuses those.

``python -m container.upstream ARGS...`` is the ``bentoml`` command with these workarounds
(container/build.sh); tests/test_bento.py uses :func:`containerize_tempdir`.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

BENTOML_VERSION_SEEN = "1.4.40"
# Relative to the working directory; under build/, which git ignores.
TEMP_DIR = Path("build") / "tmp"


@contextlib.contextmanager
def containerize_tempdir() -> Iterator[Path]:
    """Python's temporary files go under ``./build/tmp`` while inside (BentoML bentoml/BentoML#5566)."""
    directory = Path.cwd() / TEMP_DIR
    directory.mkdir(parents=True, exist_ok=True)
    previous = tempfile.tempdir
    tempfile.tempdir = str(directory)
    try:
        yield directory
    finally:
        tempfile.tempdir = previous


def main(argv: list[str]) -> None:
    from bentoml_cli.cli import cli

    with containerize_tempdir():
        cli.main(args=argv, prog_name="bentoml")  # exits with the command's status


if __name__ == "__main__":
    main(sys.argv[1:])
