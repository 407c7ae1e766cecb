"""Docs that hold (issue 21): every command README.md and docs/*.md show is checked against what it calls.

A make target must dry-run, a ``python -m`` module's own parser must accept the arguments (run parse-only:
the process stops right after parsing), a ``pulumi config set`` key must be in the config model and its
value accepted, a script must exist and pass shellcheck (tests/docs_commands.py says how). Commands that need
the cloud or a daemon (aws, curl, docker, pulumi up) are counted, not checked: test_coverage prints the
numbers. The extraction and each check are themselves tested on commands that must fail.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests import docs_commands as docs
from tests.docs_commands import Command, Outcome, PulumiState

COMMANDS = docs.documented_commands()


def _outcomes(commands: list[Command], parses: dict[tuple[str, ...], Any]) -> dict[Command, Outcome]:
    """Each command's outcome; `pulumi config set` in a fenced block applies to the block's later ones."""
    states: dict[tuple[str, int], PulumiState] = {}
    outcomes = {}
    for command in commands:
        key = (command.file, command.block)
        state = states.setdefault(key, PulumiState.shipped()) if command.block >= 0 else PulumiState.shipped()
        outcomes[command] = docs.check(command, parses, state)
    return outcomes


@pytest.fixture(scope="module")
def outcomes() -> dict[Command, Outcome]:
    return _outcomes(COMMANDS, docs.parse_only_runs(docs.all_invocations(COMMANDS)))


def _report(command: Command, outcome: Outcome) -> str:
    return f"{command.where}: `{command.text}`: " + "; ".join(outcome.problems)


@pytest.mark.parametrize("command", COMMANDS, ids=[command.id for command in COMMANDS])
def test_documented_command_holds(command: Command, outcomes: dict[Command, Outcome]) -> None:
    outcome = outcomes[command]
    for note in outcome.notes:
        print(f"{command.where}: `{command.text}`: not fully checked: {note}")
    assert not outcome.problems, _report(command, outcome)


def test_coverage(outcomes: dict[Command, Outcome]) -> None:
    """Printed, not asserted beyond a floor: how many documented commands were checked, by kind."""
    checked = Counter(outcome.kind for outcome in outcomes.values() if outcome.checked)
    unchecked = Counter(outcome.kind for outcome in outcomes.values() if not outcome.checked)
    print(f"\ndocumented commands: {len(outcomes)} in {len(docs.DOCS)} files; checked {sum(checked.values())}, "
          f"unchecked {sum(unchecked.values())}")  # fmt: skip
    for kind, count in sorted(checked.items()):
        print(f"  checked    {count:3}  {kind}")
    for kind, count in sorted(unchecked.items()):
        print(f"  unchecked  {count:3}  {kind}")
    assert {"make", "python -m", "pulumi config"} <= set(checked), "the docs' main commands were not found"


# The checker itself: each kind of check fails on a broken command (a docs test must be able to fail).

SAMPLE = """\
# Title

Run `make serve`, then `make no-such-target`; `python -m infra.plan --profile week --out plan/` and `python
-m infra.plan --profile diurnal-week --out plan/` (a span that wraps is one command). `python -m infra.plan`
alone names the module. `docker ps` is not collected.

```bash
REGION=eu-west-1   # a comment
pulumi config set aws:region "$REGION"
pulumi config set --path 'elastic-resnet:fleet.minSize' 0 && pulumi config set --path \\
    'elastic-resnet:fleet.desiredCapacity' 0
pulumi config set --path 'elastic-resnet:fleet.minSzie' 2
pulumi config set elastic-resnet:fleet.amiId ami-0123
curl "$(pulumi stack output endpoint_url)/predict" | jq .   # -> curl, pulumi stack output, jq
make image VARIANT=cpu NOT_READ=1
.venv/bin/python -m service.import_model --weights imagenet --quantize int4
.venv/bin/python -m infra.plan --profile diurnal-week --benchmark bench/measured/no-such.json --out plan/
bash container/no-such-script.sh
```

```yaml
config:
  elastic-resnet:fleet: {minSize: 3, maxSize: 2}
```
"""


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    path = tmp_path_factory.mktemp("docs") / "sample.md"
    path.write_text(SAMPLE)
    commands = docs.extract(path, "sample.md")
    outcomes = _outcomes(commands, docs.parse_only_runs(docs.all_invocations(commands)))
    return {f"{command.line} {command.text}": outcome for command, outcome in outcomes.items()}


def test_the_extraction(sample: dict[str, Outcome]) -> None:
    assert list(sample) == [
        "3 make serve",
        "3 make no-such-target",
        "3 python -m infra.plan --profile week --out plan/",
        "3 python -m infra.plan --profile diurnal-week --out plan/",
        "4 python -m infra.plan",
        "9 pulumi config set aws:region $REGION",
        "10 pulumi config set --path elastic-resnet:fleet.minSize 0",
        "10 pulumi config set --path elastic-resnet:fleet.desiredCapacity 0",
        "12 pulumi config set --path elastic-resnet:fleet.minSzie 2",
        "13 pulumi config set elastic-resnet:fleet.amiId ami-0123",
        "14 pulumi stack output endpoint_url",
        "14 curl $(...)/predict",
        "14 jq .",
        "15 make image VARIANT=cpu NOT_READ=1",
        "16 .venv/bin/python -m service.import_model --weights imagenet --quantize int4",
        "17 .venv/bin/python -m infra.plan --profile diurnal-week --benchmark bench/measured/no-such.json --out plan/",
        "18 bash container/no-such-script.sh",
        "22 ```yaml stack file (2 lines)",
    ]


def test_each_check_fails_a_broken_command(sample: dict[str, Outcome]) -> None:
    def problems(key: str) -> str:
        return " ".join(sample[key].problems)

    holds = [key for key, outcome in sample.items() if not outcome.problems]
    assert holds == [
        "3 make serve",
        "3 python -m infra.plan --profile diurnal-week --out plan/",
        "4 python -m infra.plan",
        "9 pulumi config set aws:region $REGION",
        "10 pulumi config set --path elastic-resnet:fleet.minSize 0",  # valid once both are set: one block
        "10 pulumi config set --path elastic-resnet:fleet.desiredCapacity 0",
        "14 pulumi stack output endpoint_url",
        "14 curl $(...)/predict",
        "14 jq .",
    ]
    assert "make -n no-such-target" in problems("3 make no-such-target")
    assert "invalid choice: 'week'" in problems("3 python -m infra.plan --profile week --out plan/")
    assert "no key 'minSzie' in fleet" in problems("12 pulumi config set --path elastic-resnet:fleet.minSzie 2")
    assert "needs --path" in problems("13 pulumi config set elastic-resnet:fleet.amiId ami-0123")
    assert "Makefile never reads $(NOT_READ)" in problems("15 make image VARIANT=cpu NOT_READ=1")
    assert "invalid choice: 'int4'" in problems(
        "16 .venv/bin/python -m service.import_model --weights imagenet --quantize int4"
    )
    assert "bench/measured/no-such.json: no such file" in problems(
        "17 .venv/bin/python -m infra.plan --profile diurnal-week --benchmark bench/measured/no-such.json --out plan/"
    )
    assert "does not exist" in problems("18 bash container/no-such-script.sh")
    assert "minSize <= desiredCapacity <= maxSize" in problems("22 ```yaml stack file (2 lines)")
    assert not sample["14 curl $(...)/predict"].checked


def test_a_check_after_parsing_still_counts() -> None:
    """service.import_model refuses `--quantize int8` without `--calibration` after parse_args returned
    (parser.error): the parse-only run lets the module's own checks run and stops at its first real work."""
    runs = docs.parse_only_runs({("-m", "service.import_model", "--quantize", "int8"),
                                 ("-m", "service.import_model", "--weights", "untrained")})  # fmt: skip
    refused = runs[("-m", "service.import_model", "--quantize", "int8")]
    assert refused.returncode == 2 and "needs --calibration" in refused.stderr
    accepted = runs[("-m", "service.import_model", "--weights", "untrained")]
    assert accepted.returncode == 0 and docs.STOPPED in accepted.stderr, accepted.stderr[-2000:]


def test_a_parse_only_run_does_no_work(tmp_path: Path) -> None:
    """A module that starts a process before parsing is stopped, not run: the sample never reaches `touch`."""
    probe = f"import subprocess\nsubprocess.run(['touch', '{tmp_path}/ran'])\n"
    (tmp_path / "docs_commands_probe.py").write_text(probe)
    run = ("-m", "docs_commands_probe")
    result = docs.parse_only_runs({run}, extra_path=(tmp_path,))[run]
    assert result.returncode == 3 and docs.REFUSED in result.stderr, result.stderr
    assert not (tmp_path / "ran").exists()


def test_make_dry_run_is_safe_here() -> None:
    """`make -n` runs `$(MAKE)` and `+` recipe lines for real: the check uses it only while there are none."""
    assert docs._dry_run_is_safe()
    dry = subprocess.run(["make", "-n", "build"], cwd=docs.REPO, capture_output=True, text=True, check=True)
    assert "bentoml build" in dry.stdout
