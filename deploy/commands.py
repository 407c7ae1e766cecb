"""The process boundary: every external program the deploy runs (pulumi, aws, docker/podman, bentoml)
goes through one :class:`Runner`, so a test can put recorders in its place (or first on PATH) and check
each call's arguments.

A long command's output goes to a log file; the terminal gets a progress line every
:data:`PROGRESS_EVERY_S` seconds (elapsed time and the command's latest line), and the log's tail when it
fails.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

PROGRESS_EVERY_S = 20.0
FAILURE_TAIL_LINES = 30


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class CommandError(RuntimeError):
    """A command that had to succeed failed; the message holds its command line and output's end."""

    def __init__(self, result: Result, log: Path | None = None) -> None:
        output = (result.stderr.strip() or result.stdout.strip()).splitlines()[-FAILURE_TAIL_LINES:]
        where = f" (full output: {log})" if log is not None else ""
        super().__init__(
            f"`{shlex.join(result.argv)}` exited with {result.returncode}{where}:\n"
            + "\n".join("  " + line for line in output)
        )
        self.result = result


@dataclass(frozen=True)
class Call:
    """One external command, as the deploy asks for it."""

    argv: tuple[str, ...]
    input: str | None = None  # written to its stdin (a password: never logged)
    env: Mapping[str, str | None] = field(default_factory=dict)  # changes to the environment; None removes
    cwd: Path | None = None
    log: Path | None = None  # long commands: output to this file, progress to the terminal
    label: str = ""  # what the progress line calls it

    def __post_init__(self) -> None:
        assert self.argv, "empty command"


class Runner(Protocol):
    def run(self, call: Call) -> Result: ...

    def which(self, program: str) -> str | None: ...


def check(runner: Runner, call: Call) -> Result:
    """Run ``call`` and raise :class:`CommandError` unless it succeeded."""
    result = runner.run(call)
    if not result.ok:
        raise CommandError(result, call.log)
    return result


class SubprocessRunner:
    """The real runner: subprocesses, with the output of long commands in their log file."""

    def __init__(self, out: TextIO = sys.stdout, progress_every_s: float = PROGRESS_EVERY_S) -> None:
        self.out = out
        self.progress_every_s = progress_every_s

    def which(self, program: str) -> str | None:
        return shutil.which(program)

    def _env(self, call: Call) -> dict[str, str]:
        env = dict(os.environ)
        for key, value in call.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def run(self, call: Call) -> Result:
        if call.log is None:
            try:
                # No terminal input: a command that would prompt (a passphrase, a login) fails instead of
                # waiting unseen while its output is captured.
                stdin = {"input": call.input} if call.input is not None else {"stdin": subprocess.DEVNULL}
                done = subprocess.run(
                    call.argv, env=self._env(call), cwd=call.cwd, capture_output=True, text=True, **stdin
                )
            except FileNotFoundError as exc:
                return Result(call.argv, 127, "", str(exc))
            return Result(call.argv, done.returncode, done.stdout, done.stderr)
        return self._run_logged(call, call.log)

    def _run_logged(self, call: Call, log: Path) -> Result:
        log.parent.mkdir(parents=True, exist_ok=True)
        latest = [""]
        lines: list[str] = []
        with log.open("w") as sink:
            sink.write(f"$ {shlex.join(call.argv)}\n")
            sink.flush()
            try:
                process = subprocess.Popen(
                    call.argv,
                    stdin=subprocess.PIPE if call.input is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=self._env(call),
                    cwd=call.cwd,
                    text=True,
                    bufsize=1,
                )
            except FileNotFoundError as exc:
                return Result(call.argv, 127, "", str(exc))
            if call.input is not None:
                assert process.stdin is not None
                process.stdin.write(call.input)
                process.stdin.close()

            def pump() -> None:
                assert process.stdout is not None
                for line in process.stdout:
                    sink.write(line)
                    sink.flush()
                    lines.append(line)
                    if line.strip():
                        latest[0] = line.strip()

            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            start = time.monotonic()
            while True:
                reader.join(timeout=self.progress_every_s)
                if not reader.is_alive():
                    break
                elapsed = time.monotonic() - start
                print(
                    f"    ... {call.label or call.argv[0]}: {elapsed:.0f} s: {latest[0][:100]}",
                    file=self.out,
                    flush=True,
                )
            returncode = process.wait()
        text = "".join(lines)
        return Result(call.argv, returncode, text, text)
