"""`cairn federate`: the same command as `cairn coordinator run` (kept as an alias; a public contract).

Plan, train and query over node directories on this machine (Flower Simulation Engine) and write a
signed bundle; the command is cairn/coordinator_cli.py's `run`, the driver coordinator/simulation.py.
"""

from __future__ import annotations

import inspect

import click

from cairn.coordinator_cli import run

federate = click.Command(
    "federate", params=run.params, callback=run.callback,
    help=inspect.cleandoc(run.help or "") + "\n\nThe same command as `cairn coordinator run`.",
    short_help="Plan, train and query over node directories; a signed bundle (= coordinator run).",
)
