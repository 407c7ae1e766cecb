"""The shell commands README.md and docs/*.md document, and a check of each against what it calls.

Extraction: fenced ```bash / ```sh / ```console (and ```shell) blocks, line continuations joined, comments
stripped, ``A && B``, ``A; B``, ``A | B`` and ``$(...)`` split into their commands; inline `code` spans that
start with a command this project ships (``make``, ``python -m``, ``.venv/bin/...``, ``pulumi ...``,
``bash ...``, ``container/``, ``bench/``, ``tests/``), after optional ``VAR=value`` prefixes; and ```yaml
blocks holding stack-file keys. Shell variables set in a block (``REGION=us-east-1``) are substituted in
the commands after them; other variables and ``<placeholders>`` take a plausible value (PLAUSIBLE).

Checks, by what a command calls (nothing here keeps a list of the documented commands):
- ``make TARGET [VAR=value]``: ``make -n`` (a dry run) succeeds, each VAR is one the Makefile reads, and
  what the recipe runs of this repository's Python (``.venv/bin/python -m deploy --stack prod``) parses;
- ``python -m MODULE ARGS`` and ``.venv/bin/TOOL ARGS`` (a Python console script): run with a patched
  argparse / click (PARSE_ONLY_SITECUSTOMIZE) that stops the process right after its arguments are
  parsed and checked, before any work; an argument naming a file under a tracked folder must exist;
- ``pulumi config set|rm|get [--path] KEY [VALUE]``: KEY is a field path of infra.config.StackConfig (by
  its camelCase alias), and a literal VALUE is accepted by infra.config.from_cli_values, encoded as the CLI
  passes it, on top of the shipped Pulumi.dev.yaml (cumulative within a block);
- ``pulumi stack output NAME``: NAME is one of the outputs infra.stack.build returns;
- scripts (``container/run.sh``, ``bash bench/gpu_check.sh``): the file exists, is executable when run
  directly, and a shell script passes shellcheck; a path mentioned alone exists (or is git-ignored output);
- ``VAR=value`` before a command: something in the repository reads VAR;
- ```yaml stack-file snippets: read like a stack file by infra.config.
Anything else (aws, curl, docker, podman, pulumi up, ...) needs the cloud or a daemon: counted, unchecked.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"bash", "sh", "shell", "console", "shell-session"}
INLINE_PREFIXES = ("make ", "python -m ", "python3 -m ", ".venv/bin/", "pulumi ", "bash ", "container/", "bench/",
                   "tests/")  # fmt: skip
# Where a variable is read, for `VAR=value command` and `make VAR=value`.
READERS = ("Makefile", "service", "infra", "bench", "deploy", "container", "tests/deploy")
# Values for variables a block does not set, and for <placeholders>: plausible for what they stand for.
PLAUSIBLE = {
    "REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AMI": "ami-0123456789abcdef0",
    "REPO": "123456789012.dkr.ecr.us-east-1.amazonaws.com/elastic-resnet-dev",
    "KEY": "an-api-key-of-32-characters-xxxxxxx",
    "STACK": "dev",
    "stack": "dev",
    "version": "v1",
    "commit": "0123abc",
    "tag": "v1",
}
# An argument that stands for "any arguments": the module is checked to exist, its arguments are not.
ANY_ARGUMENTS = {"ARGS", "ARGS...", "[ARGS]", "...", "…"}
PARSED = "DOCS-COMMANDS-PARSED"
STOPPED = "DOCS-COMMANDS-STOPPED"
REFUSED = "DOCS-COMMANDS-REFUSED"
PROJECT_NAMESPACE = "elastic-resnet"


@dataclass(frozen=True)
class Command:
    """One documented command: where it is and its words (quotes removed, variables substituted)."""

    file: str  # relative to the repository
    line: int
    text: str  # as documented (one logical line; a part of it for A && B)
    words: tuple[str, ...]
    inline: bool  # an inline `code` span (a mention in a sentence), not a fenced block's line
    block: int  # the fenced block it is in (commands of one block run in order); -1 inline
    env: tuple[tuple[str, str], ...] = ()  # VAR=value before the command
    literal: tuple[bool, ...] = ()  # per word: no unresolved $variable or $(...) in it
    yaml_text: str | None = None  # a ```yaml stack-file snippet instead of a command

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def id(self) -> str:
        shown = self.text if len(self.text) <= 70 else self.text[:67] + "..."
        return f"{self.where} {shown}"


@dataclass
class Outcome:
    kind: str  # what was checked, e.g. "make", "python -m", "pulumi config", "script", "unchecked: aws"
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not checked, and why (printed)

    @property
    def checked(self) -> bool:
        return not self.kind.startswith("unchecked")


# ---------------------------------------------------------------------------------------------- extraction


def _substitutions(text: str) -> tuple[str, list[str]]:
    """``$(...)`` (outside single quotes) replaced by a marker; their contents returned, in order."""
    out, inner, i, quote = [], [], 0, ""
    while i < len(text):
        char = text[i]
        if quote != '"' and char == "'":
            quote = "" if quote == "'" else "'"
        elif quote != "'" and char == '"':
            quote = "" if quote == '"' else '"'
        elif quote != "'" and text.startswith("$(", i) and not text.startswith("$((", i):
            depth, j = 1, i + 2
            while j < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            inner.append(text[i + 2 : j - 1])
            out.append(f"$__SUBST{len(inner) - 1}__")
            i = j
            continue
        out.append(char)
        i += 1
    return "".join(out), inner


def _expand(text: str, variables: dict[str, str]) -> str:
    """``$VAR`` / ``${VAR}`` (outside single quotes) replaced where the value is known; ``<name>`` too."""

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, match.group(0))

    parts = re.split(r"('[^']*')", text)
    for index in range(0, len(parts), 2):  # the even parts are outside single quotes
        parts[index] = re.sub(r"\$\{(\w+)\}|\$(\w+)", variable, parts[index])
        parts[index] = re.sub(r"<(\w+)>", lambda m: PLAUSIBLE.get(m.group(1), "placeholder"), parts[index])
    return "".join(parts)


def _split_commands(text: str) -> Iterator[tuple[str, list[str]]]:
    """The simple commands of one logical line: (its text, its words), split at && || ; | & ( )."""
    text = re.sub(r"<(\w+)>", "\x00\\1\x01", text)  # a <placeholder> is a word, not two redirections
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # comments were stripped before; a # inside quotes stays
    words: list[str] = []
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: keep it whole, it will fail its check with the text shown
        tokens = text.split()
    for token in tokens:
        if token and set(token) <= set("|&;()<>"):
            if words:
                yield " ".join(words), words
            words = []
            if token in (">", ">>", "<", "2>", "&>"):
                words = ["__REDIRECT__"]  # the next word is a file: drop it with this marker
            continue
        if words[:1] == ["__REDIRECT__"]:
            words = []
            continue
        words.append(token.replace("\x00", "<").replace("\x01", ">"))
    if words and words[:1] != ["__REDIRECT__"]:
        yield " ".join(words), words


def _strip_comment(line: str) -> str:
    """Everything from an unquoted ``#`` that starts a word."""
    quote = ""
    for i, char in enumerate(line):
        if char in "'\"" and (not quote or quote == char):
            quote = "" if quote else char
        elif char == "#" and not quote and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def _commands_of(
    line_text: str, file: str, line: int, inline: bool, block: int, variables: dict[str, str]
) -> Iterator[Command]:
    """The commands of one logical line, ``$(...)`` contents first; ``NAME=value`` alone sets a variable."""
    outer, inner = _substitutions(line_text)
    for text in inner:
        yield from _commands_of(text, file, line, inline, block, variables)
    for (shown, _), (_, expanded) in zip(_split_commands(outer), _split_commands(_expand(outer, variables)),
                                         strict=True):  # fmt: skip
        # Unresolved: a $variable, a $(...) and an elided value (`ami-...`).
        literal = tuple("$" not in word and not word.endswith("...") for word in expanded)
        env: list[tuple[str, str]] = []
        while expanded and re.fullmatch(r"[A-Za-z_]\w*=.*", expanded[0]):
            name, _, value = expanded[0].partition("=")
            env.append((name, value))
            expanded, literal = expanded[1:], literal[1:]
        if not expanded:  # assignments only: shell variables for the commands after it
            for name, value in env:
                if "$" in value:  # computed ($(aws ...)): the plausible value stands in, if there is one
                    if name in PLAUSIBLE:
                        variables[name] = PLAUSIBLE[name]
                    else:
                        variables.pop(name, None)
                else:
                    variables[name] = value
            continue
        shown = re.sub(r"\$__SUBST\d+__", "$(...)", shown)
        yield Command(file, line, shown, tuple(expanded), inline, block, tuple(env), literal)


def _alternatives(span: str) -> list[str]:
    """``--precision bf16|int8`` in prose means either: one span per alternative."""
    match = re.search(r"(?<=\s)(\S+?)\|(\S+)", span)
    if not match or " | " in span:
        return [span]
    return [span[: match.start()] + choice + span[match.end() :] for choice in match.group(0).split("|")]


def extract(path: Path, name: str | None = None) -> list[Command]:
    relative = name or path.relative_to(REPO).as_posix()
    lines = path.read_text().split("\n")
    commands: list[Command] = []
    fence: str | None = None
    language, start, body, blocks = "", 0, [], 0
    prose: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if fence is None and re.match(r"^(```+|~~~+)", stripped):
            fence = re.match(r"^(```+|~~~+)", stripped).group(1)  # type: ignore[union-attr]
            language, start, body = stripped[len(fence) :].strip().lower(), number, []
            continue
        if fence is not None:
            if stripped.startswith(fence) and not stripped[len(fence) :].strip():
                blocks += 1
                commands.extend(_block(relative, language, start, body, blocks))
                fence = None
            else:
                body.append(raw)
            continue
        prose.append((number, raw))
    commands.extend(_inline(relative, prose))
    return sorted(commands, key=lambda command: command.line)  # stable: a line's commands keep their order


def _block(file: str, language: str, start: int, body: list[str], block: int) -> Iterator[Command]:
    if language in ("yaml", "yml"):
        text = textwrap.dedent("\n".join(body))
        if re.search(rf"^\s*({PROJECT_NAMESPACE}:|config:)", text, re.M):
            yield Command(file, start + 1, f"```yaml stack file ({len(body)} lines)", (), False, block,
                          yaml_text=text)  # fmt: skip
        return
    if language not in SHELL_LANGUAGES:
        return
    variables = dict(PLAUSIBLE)
    logical, first = "", 0
    for offset, raw in enumerate(body, 1):
        line = raw.strip()
        if language in ("console", "shell-session"):
            if not line.startswith(("$ ", "# ")) and not logical:
                continue  # output
            line = line[2:] if not logical else line
        line = _strip_comment(line)
        if not logical:
            first = start + offset
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        if logical.strip():
            yield from _commands_of(logical.strip(), file, first, False, block, variables)
        logical = ""


def _inline(file: str, prose: list[tuple[int, str]]) -> Iterator[Command]:
    """Inline spans of paragraphs: a span may wrap onto the next line; a blank line ends a paragraph."""
    paragraph: list[tuple[int, str]] = []
    for number, raw in [*prose, (0, "")]:
        if raw.strip():
            paragraph.append((number, raw))
            continue
        text = "\n".join(line for _, line in paragraph)
        for match in re.finditer(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", text, re.S):
            span = " ".join(match.group(2).split())
            span_line = paragraph[0][0] + text.count("\n", 0, match.start())
            words = span.split()
            while words and re.fullmatch(r"[A-Za-z_]\w*=\S*", words[0]):
                words = words[1:]
            rest = " ".join(words)
            if not rest.startswith(INLINE_PREFIXES):
                continue
            span = span.replace("\\|", "|")
            for choice in _alternatives(span):
                yield from _commands_of(choice, file, span_line, True, -1, dict(PLAUSIBLE))
        paragraph = []


def documented_commands() -> list[Command]:
    return [command for path in DOCS for command in extract(path)]


# ---------------------------------------------------------------------------------------------- checks


def check(command: Command, parses: dict[tuple[str, ...], subprocess.CompletedProcess[str]],
          pulumi_state: PulumiState) -> Outcome:  # fmt: skip
    """What a command calls, checked; ``parses`` holds the parse-only runs (see parse_only_runs)."""
    if command.yaml_text is not None:
        return _check_stack_yaml(command)
    outcome = _dispatch(command, parses, pulumi_state)
    for name, _ in command.env:
        if not _read_somewhere(name):
            outcome.problems.append(f"{name}=...: nothing in {', '.join(READERS)} reads the variable {name}")
    return outcome


def _dispatch(command: Command, parses: dict[tuple[str, ...], subprocess.CompletedProcess[str]],
              pulumi_state: PulumiState) -> Outcome:  # fmt: skip
    words = list(command.words)
    program = words[0]
    if program == "make":
        outcome = _check_make(words[1:])
        mention = command.inline and not any("=" in word for word in words[1:])
        for derived in recipe_commands(command):
            problems = _check_parse(derived, parses).problems
            found = [f"its recipe runs `{derived.text}`: {problem}" for problem in problems]
            if mention:  # `make deploy` named in a sentence: its variables (STACK=...) are given elsewhere
                outcome.notes.extend(f"a mention of the target, without its variables: {problem}" for problem in found)
            else:
                outcome.problems.extend(found)
        return outcome
    if parse_invocation(command) is not None:
        return _check_parse(command, parses)
    if program.startswith(".venv/bin/"):
        return _check_venv_tool(command)
    if program == "pulumi":
        return _check_pulumi(command, pulumi_state)
    if program in ("bash", "sh") and len(words) > 1 and not words[1].startswith("-"):
        return _check_script(words[1], direct=False)
    if "/" in program or program.startswith(("container", "bench", "tests")):
        return _check_script(
            program, direct=True, mentioned_alone=command.inline and len(words) == 1, inline=command.inline
        )
    note = "not this project's command, or it needs the cloud or a daemon"
    return Outcome(f"unchecked: {Path(program).name}", notes=[note])


# make ----------------------------------------------------------------------------------------------------


@functools.cache
def _makefile() -> str:
    return (REPO / "Makefile").read_text()


def _dry_run_is_safe() -> bool:
    """``make -n`` still runs ``$(MAKE)`` and ``+`` recipe lines, and ``$(shell ...)`` at parse time."""
    text = _makefile()
    return not re.search(r"\$[({]MAKE[)}]|\$[({]shell\s|^\t\s*[@-]*\+", text, re.M)


@functools.cache
def _dry_run(arguments: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-n", "--no-print-directory", *arguments], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "MAKEFLAGS": ""}, timeout=60)  # fmt: skip


def recipe_commands(command: Command) -> list[Command]:
    """What a documented `make` command runs of this repository's Python (``.venv/bin/python -m service...``,
    ``.venv/bin/bentoml build``), from its dry run: parse-checked like a documented command."""
    if command.words[:1] != ("make",) or not _dry_run_is_safe():
        return []
    dry = _dry_run(command.words[1:])
    found = []
    for line in dry.stdout.splitlines() if dry.returncode == 0 else []:
        for derived in _commands_of(_strip_comment(line.strip()), command.file, command.line, False, -1, {}):
            invocation = runnable_parse(derived)
            if invocation is not None and (invocation[0] != "-m" or _module_file(invocation[1]) is not None):
                found.append(derived)
    return found


def all_invocations(commands: list[Command]) -> set[tuple[str, ...]]:
    """The parse-only runs the commands need, theirs and their make recipes'."""
    every = [*commands, *(derived for command in commands for derived in recipe_commands(command))]
    return {run for command in every if (run := runnable_parse(command)) is not None}


def _check_make(arguments: list[str]) -> Outcome:
    outcome = Outcome("make")
    variables = [word for word in arguments if "=" in word and not word.startswith("-")]
    targets = [word for word in arguments if word not in variables and not word.startswith("-")] or ["<default>"]
    for variable in variables:
        name = variable.partition("=")[0]
        if not re.search(rf"\$[({{]{re.escape(name)}[)}}]", _makefile()):
            outcome.problems.append(f"make variable {name}: the Makefile never reads $({name})")
    if _dry_run_is_safe():
        dry = _dry_run(tuple(arguments))
        if dry.returncode != 0:
            outcome.problems.append(f"`make -n {' '.join(arguments)}` fails: {dry.stderr.strip()[-500:]}")
    else:
        declared = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", _makefile(), re.M))
        for target in targets:
            if target != "<default>" and target not in declared:
                outcome.problems.append(f"no target {target!r} in the Makefile")
    return outcome


# python -m and console scripts ------------------------------------------------------------------------------


def parse_invocation(command: Command) -> tuple[str, ...] | None:
    """The argv to run parse-only for a ``python -m`` or ``.venv/bin/TOOL`` (Python console script) command,
    with placeholders resolved; None for other commands."""
    words = list(command.words)
    if not words:
        return None
    program = words[0]
    if Path(program).name in ("python", "python3") and len(words) >= 3 and words[1] == "-m":
        return ("-m", *words[2:])
    if program.startswith(".venv/bin/") and _is_python_script(REPO / program):
        return (program, *words[1:])
    return None


def _is_python_script(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            first = handle.readline()
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def _module_file(module: str) -> Path | None:
    """The file ``python -m module`` runs, found without importing it."""
    parts = module.split(".")
    base = REPO.joinpath(*parts)
    for candidate in (base / "__main__.py", base.with_suffix(".py")):
        if candidate.is_file() and all((REPO.joinpath(*parts[:i]) / "__init__.py").is_file()
                                       for i in range(1, len(parts))):  # fmt: skip
            return candidate
    return None


def _any_arguments(words: tuple[str, ...]) -> bool:
    return any(word in ANY_ARGUMENTS or word.endswith("...") for word in words)


def runnable_parse(command: Command) -> tuple[str, ...] | None:
    """The parse-only run a command needs, or None when its arguments are not checked (placeholders)."""
    invocation = parse_invocation(command)
    if invocation is None or _any_arguments(command.words) or not all(command.literal):
        return None
    if invocation[0] == "-m" and _module_file(invocation[1]) is None:
        return None
    return invocation


def _check_parse(command: Command, parses: dict[tuple[str, ...], subprocess.CompletedProcess[str]]) -> Outcome:
    invocation = parse_invocation(command)
    assert invocation is not None
    kind = "python -m" if invocation[0] == "-m" else "console script"
    outcome = Outcome(kind)
    if invocation[0] == "-m" and _module_file(invocation[1]) is None:
        outcome.problems.append(f"no module {invocation[1]} in the repository (python -m {invocation[1]})")
        return outcome
    if invocation[0] != "-m" and not (REPO / invocation[0]).is_file():
        outcome.problems.append(f"{invocation[0]} does not exist")
        return outcome
    if _any_arguments(command.words):
        outcome.notes.append("arguments stand for any: the module exists, its arguments are not checked")
        return outcome
    if not all(command.literal):
        outcome.notes.append("an argument is computed ($...): the module exists, its arguments are not checked")
        return outcome
    for word in invocation[2:] if invocation[0] == "-m" else invocation[1:]:
        path = word.partition("=")[2] if word.startswith("-") else word
        if _names_a_repository_file(path) and not (REPO / path).exists() and not _git_ignored(path):
            outcome.problems.append(f"argument {path}: no such file in the repository")
    result = parses[invocation]
    if PARSED in result.stderr and result.returncode == 0:
        return outcome
    if result.returncode == 0 and {"--help", "-h"} & set(invocation):
        return outcome  # the parser printed its help and exited 0 while parsing
    if command.inline and len(invocation) == 2 and result.returncode == 2:
        # `python -m infra.plan` in a sentence names the module; its arguments are given elsewhere.
        outcome.notes.append("a mention of the module (no arguments): exists, needs arguments to run")
        return outcome
    if REFUSED in result.stderr:
        why = result.stderr.split(REFUSED, 1)[1].strip().splitlines()[0]
        outcome.problems.append(f"did work before parsing its arguments ({why})")
    elif result.returncode == 2:
        lines = [line.strip() for line in result.stderr.strip().splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()] or lines[-3:]
        outcome.problems.append("its argument parser refuses it: " + " / ".join(errors))
    else:
        tail = result.stderr.strip()[-800:] or result.stdout.strip()[-800:]
        outcome.problems.append(f"exited {result.returncode} before its arguments were parsed: {tail}")
    return outcome


def _names_a_repository_file(word: str) -> bool:
    """``bench/measured/x.json``: under a tracked folder of the repository, so it must be there (not ``plan/``,
    an output folder; nor ``my-traffic.csv`` or ``~/photos``, the reader's own)."""
    top, slash, rest = word.partition("/")
    return bool(slash and top and rest) and (REPO / top).is_dir() and not top.startswith(".") and not _git_ignored(top)


def _check_venv_tool(command: Command) -> Outcome:
    tool = REPO / command.words[0]
    if not tool.exists():
        return Outcome("console script", [f"{command.words[0]} does not exist (is it in requirements-dev.txt?)"])
    return Outcome("unchecked: native tool", notes=[f"{command.words[0]} exists; not a Python script to parse"])


# The parse-only mode: put the directory holding this as sitecustomize.py on PYTHONPATH with DOCS_PARSE_ONLY=1.
_SITECUSTOMIZE = r'''
import os, sys
if os.environ.get("DOCS_PARSE_ONLY") == "1":
    import argparse, socket, subprocess, threading

    def _leave(marker, what, code):
        sys.stdout.flush()
        sys.stderr.write(f"\n{marker} {what}\n")
        sys.stderr.flush()
        os._exit(code)

    OWN = [os.path.join(path, "") for path in os.environ["DOCS_PARSE_ONLY_OWN"].split(os.pathsep)]
    VENV = os.path.join(sys.prefix, "")

    def _probe():
        """Whether a library asked, while being imported (ctypes probing the platform): the innermost frame of
        the program's own code is an import statement. Otherwise the program's own code asked, or a library
        it called."""
        frame = sys._getframe(2)
        importing = False
        while frame is not None:
            name = frame.f_code.co_filename
            if name.startswith("<frozen importlib"):
                importing = True
            elif any(name.startswith(own) for own in OWN) and not name.startswith(VENV):
                return importing
            frame = frame.f_back
        return True  # no own code on the stack at all: the interpreter's or a library's thread

    def _refuse(what, shown, original):
        """A process or a connection from the program's own code before its arguments are parsed is work:
        refused. One a library makes while it is imported is let be."""
        def refused(*args, **kwargs):
            if _probe():
                return original(*args, **kwargs)
            if threading.current_thread() is not threading.main_thread():  # a library's (telemetry): fails
                raise OSError(f"{what}: not in a parse-only run")
            _leave("REFUSED", f"{what} {args[shown:shown + 1]!r}", 3)
        return refused

    os.unrefused_fork = os.fork  # for FORKING_DRIVER only
    subprocess.Popen.__init__ = _refuse("subprocess", 1, subprocess.Popen.__init__)
    os.system = _refuse("os.system", 0, os.system)
    for name in ("execv", "execve", "execvp", "execvpe", "fork", "posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            setattr(os, name, _refuse(f"os.{name}", 0, getattr(os, name)))
    socket.socket.connect = _refuse("connect", 1, socket.socket.connect)

    ARGPARSE = argparse.__file__
    COMPREHENSIONS = {"<listcomp>", "<genexpr>", "<setcomp>", "<dictcomp>"}
    _depth = [0]

    def _after_parse(caller):
        """Parsed: report it, then let the caller run its own checks (argparse's parser.error, plain Python
        without calls) and stop it at its first call to a Python function outside argparse: the work."""
        sys.stderr.write("\nPARSED\n")
        sys.stderr.flush()

        def exit(status=None):  # parser.error's exit, or the module's own: now, without interpreter shutdown
            if isinstance(status, str):
                sys.stderr.write(status + "\n")
            _leave("EXITED", repr(status), 0 if status is None else status if isinstance(status, int) else 1)

        sys.exit = exit

        def hook(frame, event, arg):
            if event != "call" or frame.f_code is exit.__code__ or frame.f_code is _leave.__code__:
                return
            if frame.f_code.co_name in COMPREHENSIONS and frame.f_back is caller:
                return
            probe = frame
            while probe is not None and probe is not caller:
                if probe.f_code.co_filename == ARGPARSE:
                    return
                probe = probe.f_back
            sys.setprofile(None)
            _leave("STOPPED", f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})", 0)

        sys.setprofile(hook)

    def _wrap(original):
        def parse(self, *args, **kwargs):
            _depth[0] += 1
            try:
                result = original(self, *args, **kwargs)
            finally:
                _depth[0] -= 1
            if _depth[0] == 0:
                _after_parse(sys._getframe(1))
            return result
        return parse

    argparse.ArgumentParser.parse_args = _wrap(argparse.ArgumentParser.parse_args)
    argparse.ArgumentParser.parse_known_args = _wrap(argparse.ArgumentParser.parse_known_args)
    argparse.ArgumentParser.parse_intermixed_args = _wrap(argparse.ArgumentParser.parse_intermixed_args)

    try:
        import click
    except ImportError:
        click = None
    if click is not None:
        _invoke = click.Command.invoke

        def invoke(self, ctx):
            if isinstance(self, click.MultiCommand if hasattr(click, "MultiCommand") else click.Group):
                return _invoke(self, ctx)  # a group: its subcommand's arguments are parsed next
            sys.stderr.write("\nPARSED\n")
            _leave("STOPPED", f"click command {ctx.command_path!r}", 0)

        click.Command.invoke = invoke
'''
PARSE_ONLY_SITECUSTOMIZE = (
    _SITECUSTOMIZE.replace("PARSED", PARSED).replace("STOPPED", STOPPED).replace("REFUSED", REFUSED)
)


# One process for all modules: their imports once (torch is seconds), then one fork per invocation, each run
# as `python -m MODULE ARGS` (runpy) under the parse-only mode. argv: a JSON list of [module, *args];
# prints a JSON list of [returncode, stdout, stderr].
FORKING_DRIVER = r"""
import importlib, json, os, runpy, sys, tempfile
runs = json.loads(sys.argv[1])
for module in sorted({run[0] for run in runs}):
    for name in (module, module + ".__main__"):  # as a library: its imports, not its main
        try:
            importlib.import_module(name)
        except Exception:
            pass
results = []
for module, *args in runs:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush(); sys.stderr.flush()
        pid = os.unrefused_fork()
        if pid == 0:
            os.dup2(out.fileno(), 1); os.dup2(err.fileno(), 2)
            code = 0
            for name in (module, module + ".__main__"):  # runpy runs it afresh, as __main__
                sys.modules.pop(name, None)
            try:
                sys.argv = [module, *args]
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if isinstance(exc.code, str):
                    sys.stderr.write(exc.code + "\\n")
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.seek(0); err.seek(0)
        results.append([os.waitstatus_to_exitcode(status), out.read().decode(errors="replace"),
                        err.read().decode(errors="replace")])
sys.__stdout__.write("\\nDOCS-COMMANDS-RESULTS" + json.dumps(results))
"""


def parse_only_runs(
    invocations: set[tuple[str, ...]], workers: int = 4, extra_path: tuple[Path, ...] = ()
) -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    """Each invocation run parse-only: ``("-m", MODULE, *ARGS)`` (all in one process that forks per
    invocation: the imports are the cost) or ``(".venv/bin/TOOL", *ARGS)`` (in parallel)."""
    from concurrent.futures import ThreadPoolExecutor

    home = Path(tempfile.mkdtemp(prefix="docs-commands-"))
    (home / "sitecustomize.py").write_text(PARSE_ONLY_SITECUSTOMIZE)
    env = {
        **os.environ,
        "DOCS_PARSE_ONLY": "1",
        "DOCS_PARSE_ONLY_OWN": os.pathsep.join([str(REPO), *map(str, extra_path)]),
        "PYTHONPATH": os.pathsep.join([str(home), str(REPO), *map(str, extra_path)]),
        "BENTOML_HOME": str(home / "bentoml"),  # a module that reaches its store reaches an empty one
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
    }

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(argv, 124, "", f"timed out after 180 s: {exc}")

    def run_group(group: list[tuple[str, ...]]) -> list[subprocess.CompletedProcess[str]]:
        if group[0][0] != "-m":
            return [run([str(REPO / invocation[0]), *invocation[1:]]) for invocation in group]
        driver = run([sys.executable, "-c", FORKING_DRIVER, json.dumps([list(run[1:]) for run in group])])
        marker = "DOCS-COMMANDS-RESULTS"
        if marker not in driver.stdout:  # a module did something at import the driver cannot share: one each
            return [run([sys.executable, *invocation]) for invocation in group]
        results = json.loads(driver.stdout.rsplit(marker, 1)[1])
        return [subprocess.CompletedProcess([sys.executable, *invocation], code, out, err)
                for invocation, (code, out, err) in zip(group, results, strict=True)]  # fmt: skip

    groups: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for invocation in sorted(invocations):
        groups.setdefault(("-m",) if invocation[0] == "-m" else invocation, []).append(invocation)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(run_group, groups.values()))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return {invocation: result for group, results in zip(groups.values(), outcomes, strict=True)
            for invocation, result in zip(group, results, strict=True)}  # fmt: skip


# pulumi ----------------------------------------------------------------------------------------------------


@dataclass
class PulumiState:
    """A stack's configuration as `pulumi config set` leaves it: per fenced block, from Pulumi.dev.yaml."""

    region: str
    values: dict[str, str]  # our namespace's keys as the CLI passes them

    @classmethod
    def shipped(cls) -> PulumiState:
        from infra.config import stack_file_cli_values

        region, values = stack_file_cli_values(REPO / "Pulumi.dev.yaml")
        return cls(region or "us-east-1", values)


def _path_segments(path: str) -> list[str | int]:
    """``access.allowedCidrs[0]`` -> ["access", "allowedCidrs", 0] (Pulumi's --path syntax)."""
    segments: list[str | int] = []
    for match in re.finditer(r'\[(\d+)\]|\["([^"]+)"\]|([^.\[\]]+)', path):
        index, quoted, name = match.groups()
        segments.append(int(index) if index is not None else (quoted if quoted is not None else name))
    return segments


def _unwrap(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        members = [member for member in get_args(annotation) if member is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation


def config_key_problem(segments: list[str | int]) -> str | None:
    """Why a key path is not in StackConfig (by alias), or None."""
    from infra.config import RESERVED_KEYS, StackConfig

    if segments and segments[0] in RESERVED_KEYS:
        return f"{segments[0]} comes from Pulumi or aws:region, it cannot be set"
    annotation: Any = StackConfig
    walked: list[str] = []
    for segment in segments:
        annotation = _unwrap(annotation)
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if not isinstance(segment, str):
                return f"{'.'.join(walked)} is a section, not a list: [{segment}]"
            fields = {(info.alias or name): info for name, info in annotation.model_fields.items()}
            if segment not in fields:
                snake = annotation.model_fields.get(segment)
                hint = f" (camelCase: {snake.alias})" if snake is not None and snake.alias else ""
                known = ", ".join(sorted(fields))
                return f"no key {segment!r} in {'.'.join(walked) or 'the configuration'}{hint}; known: {known}"
            annotation = fields[segment].annotation
        elif origin is dict:
            if not isinstance(segment, str):
                return f"{'.'.join(walked)} is a map: [{segment}]"
            annotation = get_args(annotation)[1]
        elif origin is list:
            if not isinstance(segment, int):
                return f"{'.'.join(walked)} is a list: index it, e.g. [0]"
            annotation = get_args(annotation)[0]
        elif origin is Literal or isinstance(annotation, type):
            return f"{'.'.join(walked)} is a value, it has no key {segment!r}"
        walked.append(str(segment))
    return None


def _pulumi_options(words: list[str]) -> tuple[dict[str, str | bool], list[str]]:
    options: dict[str, str | bool] = {}
    positional: list[str] = []
    takes_value = {"-s", "--stack", "--config-file", "-C", "--cwd", "--type"}
    iterator = iter(words)
    for word in iterator:
        if word.startswith("-") and word != "-":
            name, equals, value = word.partition("=")
            if equals:
                options[name] = value
            elif name in takes_value:
                options[name] = next(iterator, "")
            else:
                options[name] = True
        else:
            positional.append(word)
    return options, positional


def _set_path(document: Any, segments: list[str | int], value: Any) -> Any:
    head, rest = segments[0], segments[1:]
    if isinstance(head, int):
        items = list(document) if isinstance(document, list) else []
        while len(items) <= head:
            items.append(value if not rest else {})
        items[head] = _set_path(items[head], rest, value) if rest else value
        return items
    mapping = dict(document) if isinstance(document, dict) else {}
    mapping[head] = _set_path(mapping.get(head), rest, value) if rest else value
    return mapping


def _check_pulumi(command: Command, state: PulumiState) -> Outcome:
    words = list(command.words[1:])
    if words[:2] == ["stack", "output"]:
        outcome = Outcome("pulumi stack output")
        _, names = _pulumi_options(words[2:])
        for name in names:
            if name not in stack_outputs():
                known = sorted(stack_outputs())
                outcome.problems.append(f"no stack output {name!r}; infra.stack.build returns {known}")
        return outcome
    if words[:1] != ["config"] or len(words) < 2 or words[1] not in ("set", "rm", "get"):
        return Outcome(f"unchecked: pulumi {words[0] if words else ''}".strip(), notes=["needs Pulumi and AWS"])
    outcome = Outcome("pulumi config")
    options, positional = _pulumi_options(words[2:])
    if not positional:
        outcome.problems.append("no key")
        return outcome
    key, values = positional[0], positional[1:]
    literal = all(command.literal)
    namespace, _, name = key.rpartition(":")
    if not namespace:
        namespace = PROJECT_NAMESPACE  # the CLI's default namespace is the project's
    if namespace == "aws":
        if name != "region":
            return Outcome("unchecked: pulumi config (aws provider key)", notes=[f"aws:{name}: the provider's key"])
        if words[1] == "set" and values and literal:
            state.region = values[0]
        return outcome
    if namespace != PROJECT_NAMESPACE:
        outcome.problems.append(f"namespace {namespace!r}: this project's keys are under {PROJECT_NAMESPACE}:")
        return outcome
    use_path = bool(options.get("--path"))
    segments = _path_segments(name) if use_path else [name]
    if not use_path and re.search(r"[.\[]", name):
        outcome.problems.append(f"{key}: a nested key needs --path (without it, {name!r} is one literal key)")
        return outcome
    problem = config_key_problem(segments)
    if problem:
        outcome.problems.append(f"{key}: {problem}")
        return outcome
    if words[1] == "get":
        return outcome
    if words[1] == "set" and not values:
        outcome.notes.append("no value given (pulumi prompts for it): key checked")
        return outcome
    if words[1] == "set" and not literal:
        outcome.notes.append("the value is computed ($...): key checked, value not")
        return outcome
    candidates = _values_as_pulumi_stores(values[0] if values else "", use_path, options)
    for stored in candidates:
        trial = dict(state.values)
        top = str(segments[0])
        if words[1] == "rm":
            if len(segments) == 1:
                trial.pop(top, None)
            else:
                outcome.notes.append("rm --path of a nested key: key checked")
                return outcome
        elif len(segments) == 1:
            trial[top] = stored if isinstance(stored, str) else _encode(stored)
        else:
            current = json.loads(trial[top]) if top in trial else {}
            trial[top] = _encode(_set_path(current, segments[1:], stored))
        problem = _config_problem(trial, state.region)
        if problem:
            outcome.problems.append(f"{key} {values[0] if values else ''}: the stack's configuration "
                                    f"(Pulumi.dev.yaml + this block's settings) is refused: {problem}")  # fmt: skip
            return outcome
        applied = trial
    state.values = applied
    return outcome


def _values_as_pulumi_stores(text: str, use_path: bool, options: dict[str, str | bool]) -> list[Any]:
    """What the stack file holds after ``pulumi config set [--path] KEY text``: with --path, Pulumi may store
    ``true``/``2`` typed or as strings (by version and --type); both must work."""
    if not use_path:
        return [text]
    forms: list[Any] = [text]
    if text in ("true", "false"):
        forms.append(text == "true")
    elif re.fullmatch(r"-?\d+", text):
        forms.append(int(text))
    return forms


def _encode(value: Any) -> str:
    from infra.config import cli_encoding

    return cli_encoding(value)


def _config_problem(values: dict[str, str], region: str) -> str | None:
    from infra.config import ConfigError, from_cli_values

    try:
        from_cli_values(values, PROJECT_NAMESPACE, "dev", region)
    except ConfigError as exc:
        return str(exc)
    return None


@functools.cache
def stack_outputs() -> frozenset[str]:
    """The keys of the dict infra.stack.build returns: what infra/__main__.py exports."""
    tree = ast.parse((REPO / "infra" / "stack.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "build":
            for inner in ast.walk(node):
                if isinstance(inner, ast.Return) and isinstance(inner.value, ast.Dict):
                    return frozenset(key.value for key in inner.value.keys if isinstance(key, ast.Constant))
    raise AssertionError("infra/stack.py: build() no longer returns a dict literal; update stack_outputs()")


# scripts, paths, variables, stack files ----------------------------------------------------------------------


def _git_ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0


def _check_script(path: str, direct: bool, mentioned_alone: bool = False, inline: bool = False) -> Outcome:
    target = REPO / path
    outcome = Outcome("path" if mentioned_alone else "script")
    if not target.exists():
        if mentioned_alone and _git_ignored(path):
            outcome.notes.append("git-ignored output, written when the command that makes it runs")
            return outcome
        outcome.problems.append(f"{path} does not exist")
        return outcome
    if mentioned_alone or target.is_dir():
        return outcome
    if target.suffix == ".py" and inline:
        outcome.notes.append("a Python file named in a sentence: exists; its arguments are not checked")
        return outcome
    if direct and not os.access(target, os.X_OK):
        outcome.problems.append(f"{path} is run directly but is not executable (chmod +x, or `bash {path}`)")
    if target.suffix == ".py":
        outcome.notes.append("a Python file run by path: exists; its arguments are not checked")
    elif target.suffix == ".sh" or (direct and target.read_bytes()[:2] == b"#!" and b"sh" in target.read_bytes()[:40]):
        problem = shellcheck(str(target))
        if problem:
            outcome.problems.append(f"shellcheck {path}: {problem}")
    return outcome


@functools.cache
def shellcheck(path: str) -> str | None:
    tool = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    if tool is None:
        return None  # the dev requirements install it; the other shell tests fail without it
    result = subprocess.run([tool, "-x", "--source-path=SCRIPTDIR", path], cwd=REPO, capture_output=True, text=True)
    return None if result.returncode == 0 else result.stdout.strip()[:800]


@functools.cache
def _sources() -> str:
    texts = []
    for reader in READERS:
        path = REPO / reader
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and p.suffix in
                                               (".py", ".sh", ".j2", ".conf", "")]  # fmt: skip
        texts.extend(file.read_text(errors="replace") for file in files if "__pycache__" not in file.parts)
    return "\n".join(texts)


def _read_somewhere(name: str) -> bool:
    if name in ("PATH", "HOME"):
        return True
    return re.search(rf"\b{re.escape(name)}\b", _sources()) is not None


def _check_stack_yaml(command: Command) -> Outcome:
    from infra.config import ConfigError, load_stack_file

    outcome = Outcome("stack file (yaml)")
    assert command.yaml_text is not None
    try:
        document = yaml.safe_load(command.yaml_text)
    except yaml.YAMLError as exc:
        outcome.problems.append(f"not YAML: {exc}")
        return outcome
    config = document.get("config", document) if isinstance(document, dict) else None
    if not isinstance(config, dict):
        outcome.problems.append("not a mapping of stack-file keys")
        return outcome
    foreign = [key for key in config if not str(key).startswith((f"{PROJECT_NAMESPACE}:", "aws:"))]
    if foreign:
        outcome.problems.append(f"keys outside {PROJECT_NAMESPACE}: and aws: {foreign}")
    with tempfile.TemporaryDirectory() as directory:
        stack_file = Path(directory) / "Pulumi.dev.yaml"
        stack_file.write_text(yaml.safe_dump({"config": {"aws:region": "us-east-1", **config}}))
        try:
            load_stack_file(stack_file)
        except ConfigError as exc:
            outcome.problems.append(f"as a stack file (with aws:region): {exc}")
    return outcome
