"""The hardened run flags and the image agree: what the image writes lies on the one writable tmpfs, and
the engine waits for the service's drain bound before it kills. Pure: no image needed."""

from __future__ import annotations

from infra import container
from service.timeouts import DRAIN_TIMEOUT_S


def test_bentoml_home_is_on_the_writable_tmpfs() -> None:
    flags = container.hardened_run_flags()
    assert f"BENTOML_HOME={container.BENTOML_HOME}" in flags
    tmpfs = flags[flags.index("--tmpfs") + 1]
    assert tmpfs.split(":")[0] == container.SCRATCH_DIR
    assert container.BENTOML_HOME.startswith(container.SCRATCH_DIR + "/")


def test_stop_timeout_covers_the_drain_bound() -> None:
    flags = container.hardened_run_flags()
    assert int(flags[flags.index("--stop-timeout") + 1]) == container.STOP_TIMEOUT_S > DRAIN_TIMEOUT_S


def test_podman_runs_it_as_docker_does() -> None:
    docker, podman = container.hardened_run_flags("docker"), container.hardened_run_flags("podman")
    assert [flag for flag in podman if flag != "--read-only-tmpfs=false"] == docker
    assert {"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"} <= set(docker)
