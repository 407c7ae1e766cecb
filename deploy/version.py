"""The bento's version, derived from what `bentoml build` packs, so the same inputs give the same version.

The version is a digest of: the bentofile; every file its ``include`` patterns select (less ``exclude``);
the files it names (requirements, Dockerfile template, setup script, a ``file:`` description); the tags
of the models the bento packs (each import is a new model version); BentoML's version (it writes the
Dockerfile); and the image variant. Same digest: the bento, the image and the pushed tag already made
from it are reused (a re-run resumes); anything changed: a new version and a new immutable image tag.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pathspec
import yaml

VERSION_LENGTH = 16  # hex digits: 64 bits, no accidental collision between releases
# Never part of a bento: version control, environments, caches and build outputs.
SKIPPED_DIRS = frozenset({".git", ".venv", "build", "__pycache__", "node_modules"})


def bentofile_spec(bentofile: Path) -> dict[str, Any]:
    spec = yaml.safe_load(bentofile.read_text()) or {}
    assert isinstance(spec, dict), f"{bentofile} is not a mapping"
    return spec


def bento_name(bentofile: Path) -> str | None:
    name = bentofile_spec(bentofile).get("name")
    return str(name) if name else None


def _walk(root: Path) -> Iterator[str]:
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(files):
            yield (Path(directory) / name).relative_to(root).as_posix()


def packed_files(repo_root: Path, bentofile: Path) -> list[Path]:
    """The files `bentoml build -f bentofile` reads from the working tree (BentoML's gitwildmatch rules)."""
    spec = bentofile_spec(bentofile)
    include = pathspec.PathSpec.from_lines("gitwildmatch", spec.get("include") or ["*"])
    exclude = pathspec.PathSpec.from_lines("gitwildmatch", spec.get("exclude") or [])
    selected = {path for path in _walk(repo_root) if include.match_file(path) and not exclude.match_file(path)}
    named: list[Any] = [
        (spec.get("python") or {}).get("requirements_txt"),
        (spec.get("docker") or {}).get("dockerfile_template"),
        (spec.get("docker") or {}).get("setup_script"),
    ]
    description = spec.get("description")
    if isinstance(description, str) and description.startswith("file:"):
        named.append(description.removeprefix("file:").strip())
    selected |= {Path(str(name)).as_posix().removeprefix("./") for name in named if name}
    return [repo_root / path for path in sorted(selected)]


def _digest(parts: Iterable[tuple[str, bytes]]) -> str:
    total = hashlib.sha256()
    for name, content in parts:
        total.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    return total.hexdigest()


def bento_version(
    repo_root: Path, bentofile: Path, model_tags: Sequence[str], bentoml_version: str, variant: str
) -> str:
    files = packed_files(repo_root, bentofile)
    parts = [(f"file:{path.relative_to(repo_root).as_posix()}", path.read_bytes()) for path in files if path.is_file()]
    parts.append(("bentofile", bentofile.read_bytes()))
    parts += [(f"model:{tag}", b"") for tag in sorted(model_tags)]
    parts += [(f"bentoml:{bentoml_version}", b""), (f"variant:{variant}", b"")]
    return _digest(parts)[:VERSION_LENGTH]


def image_tag(version: str, variant: str) -> str:
    """The immutable image tag of a bento version: never ``latest``, one per version and variant."""
    return f"{version}-{variant}"
