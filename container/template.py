"""What container/Dockerfile.j2 leaves out of the image, read from the template itself (the one place it is
written) for the tests that check it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TEMPLATE = Path(__file__).with_name("Dockerfile.j2")


def removed_cuda_libraries() -> list[str]:
    """File names of the CUDA libraries the template deletes from the nvidia wheels."""
    found = re.search(r"set unused = (\[.*?\])", TEMPLATE.read_text())
    if found is None:
        raise ValueError(f"no `set unused = [...]` in {TEMPLATE}")
    names = ast.literal_eval(found.group(1))
    assert isinstance(names, list) and all(isinstance(name, str) for name in names)
    return names
