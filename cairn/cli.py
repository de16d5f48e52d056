"""The `cairn` command: one console script, a command group per role.

    cairn node ...         the community operator (node/)
    cairn coordinator ...  the coordinator (coordinator/)
    cairn model ...        score and evaluate reward models
    cairn audit ...        the auditor (privacy/ only)
    cairn federate ...     a federation over node directories on this machine
    cairn demo             the whole story end to end on shipped data

Each command module parses its options, calls one function of the package that owns the work and
prints the result. The process environment is set here once, in `main()`, not on import.
"""

from __future__ import annotations

import os
import sys

import click

from cairn.audit_cli import audit
from cairn.coordinator_cli import coordinator, leaderboard
from cairn.demo import demo
from cairn.federate import federate
from cairn.model_cli import model
from cairn.node_cli import node
from privacy import configure

# No telemetry, no downloads: Flower and Hugging Face read these when they are first imported.
OFFLINE_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cairn")
def cli() -> None:
    """Cairn: federated, privacy-preserving open human feedback."""
    configure()


for _command in (node, model, federate, demo, coordinator, leaderboard, audit):
    cli.add_command(_command)


def main() -> None:
    """The `cairn` console script: offline settings (unless already set), then the command; Ctrl-C exits 130."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
