"""Entry point of `pulumi up` (Pulumi.yaml: main: infra/): read the config, build the stack, export."""

import sys
from pathlib import Path

import pulumi

# Pulumi runs this directory as a script; make `infra` importable as the package the tests import.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.config import CONFIG_NAMESPACE, StackConfig, from_stack_values
from infra.stack import build


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def read_config() -> StackConfig:
    raw = pulumi.Config(CONFIG_NAMESPACE)
    region = pulumi.Config("aws").require("region")
    values = {}
    for field in StackConfig.model_fields:
        if field in ("project", "stack", "region"):
            continue
        value = raw.get_object(_camel(field))
        if value is not None:
            values[_camel(field)] = value
    return from_stack_values(values, pulumi.get_project(), pulumi.get_stack(), region)


for key, output in build(read_config()).items():
    pulumi.export(key, output)
