"""Entry point of `pulumi up` (Pulumi.yaml: main: infra/): read the config, build the stack, export."""

import sys
from pathlib import Path

import pulumi
from pulumi.runtime.config import CONFIG, get_config_env

# Pulumi runs this directory as a script; make `infra` (and `service.timeouts`) importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.config import CONFIG_NAMESPACE, StackConfig, from_cli_values
from infra.stack import build


def configured_keys(namespace: str) -> list[str]:
    """Every key of ``namespace`` the CLI passed (the language host hands them over as the PULUMI_CONFIG
    bag; tests through ``pulumi.runtime.set_all_config``), so that a misspelled one is refused, not
    ignored."""
    prefix = f"{namespace}:"
    keys = {*CONFIG.get(), *get_config_env()}
    return sorted(key.removeprefix(prefix) for key in keys if key.startswith(prefix))


def read_config() -> StackConfig:
    """The stack's configuration through Pulumi's own config layer: each value as the plain string the
    CLI passes (JSON text for sections, maps and lists), decoded by the one loader in infra.config."""
    raw = pulumi.Config(CONFIG_NAMESPACE)
    values = {key: raw.require(key) for key in configured_keys(CONFIG_NAMESPACE)}
    region = pulumi.Config("aws").require("region")
    return from_cli_values(values, pulumi.get_project(), pulumi.get_stack(), region)


def program() -> dict[str, pulumi.Output[str]]:
    outputs = build(read_config())
    for key, output in outputs.items():
        pulumi.export(key, output)
    return outputs


if __name__ == "__main__":  # Pulumi's Python host runs this file with run_name "__main__"
    program()
