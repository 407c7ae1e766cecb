"""Put this folder on PYTHONPATH and torch and torchvision cannot be imported, in this process and in
every Python process it starts with that environment (a BentoML server's workers): what the CPU image
has (bentofile.cpu.yaml carries neither). With NO_TORCH_PROOF=DIR each process also leaves an empty
file named by its pid in DIR, so a test can see that the blocker ran in every process it cares about.
tests/test_no_torch.py."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

BLOCKED = ("torch", "torchvision")


class NoTorch(MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (tests/no_torch: the CPU image has no torch)")
        return None


sys.meta_path.insert(0, NoTorch())
if os.environ.get("NO_TORCH_PROOF"):
    Path(os.environ["NO_TORCH_PROOF"], str(os.getpid())).touch()
