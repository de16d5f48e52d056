"""The `cairn` command: one console script, a command group per role.

    cairn node ...         the community operator (node/)
    cairn coordinator ...  the coordinator (coordinator/)
    cairn model ...        score and evaluate reward models
    cairn audit ...        the auditor (privacy/ only)
    cairn federate ...     a federation over node directories on this machine
    cairn demo             the whole story end to end on shipped data
"""

from __future__ import annotations

import os
import sys

import click

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cairn")
def cli() -> None:
    """Cairn: federated, privacy-preserving open human feedback."""


from cairn.demo import demo  # noqa: E402
from cairn.federate import federate  # noqa: E402
from cairn.model_cli import model  # noqa: E402
from cairn.node_cli import node  # noqa: E402

cli.add_command(node)
cli.add_command(model)
cli.add_command(federate)
cli.add_command(demo)

from cairn.coordinator_cli import coordinator, leaderboard  # noqa: E402

cli.add_command(coordinator)
cli.add_command(leaderboard)


from cairn.audit_cli import audit  # noqa: E402

cli.add_command(audit)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
