"""`cairn federate`: the same command as `cairn coordinator run` (kept as an alias; a public contract),
and the `--dp distributed` path of both (issue 11 item 3).

Plan, train and query over node directories on this machine (Flower Simulation Engine) and write a
signed bundle; the command is cairn/coordinator_cli.py's `run`, the driver coordinator/simulation.py.
`--dp distributed` runs coordinator/distributed.py's rounds (node side: node/distributed.py).
"""

from __future__ import annotations

import dataclasses
import inspect
import json

import click

from cairn.coordinator_cli import _config, _exit_on_audit, _print_summary, _simulate, run
from coordinator.distributed import DEFAULT_LR, DEFAULT_ROUNDS


def run_distributed(kw: dict) -> None:
    """`run` with dp = distributed (coordinator/distributed.py), its own defaults for rounds and lr."""
    if not kw["secagg"]:
        raise click.UsageError("--dp distributed sums the communities' noise shares by secure aggregation: "
                               "drop --no-secagg")
    if len(kw["node_dirs"]) < 3:
        raise click.UsageError("--dp distributed needs at least 3 node directories (their noise shares add up; a "
                               "node's default policy, trust.secagg_min_peers = 2, aggregates with 2 others or more)")
    if kw["aggregation"] != "fedavg":
        raise click.UsageError("--dp distributed sums the updates: robust --aggregation needs --dp local")
    explicit = click.get_current_context().get_parameter_source("rounds") == click.core.ParameterSource.COMMANDLINE
    rounds = kw["rounds"] if explicit else DEFAULT_ROUNDS
    cfg = _config(kw["node_dirs"], out=kw["out"], rounds=rounds, epsilon=kw["epsilon"], train_share=kw["train_share"],
                  features=kw["features"], secagg=True, queries=kw["queries"], query_epsilon=kw["query_epsilon"],
                  models=kw["models"], languages=kw["languages"], dimensions=kw["dimensions"], topics=kw["topics"],
                  coordinator_key=kw["coordinator_key"], dry_run=kw["dry_run"])
    cfg = dataclasses.replace(cfg, dp="distributed", lr=DEFAULT_LR)
    summary = _simulate(kw["node_dirs"], cfg, kw["as_json"])
    click.echo(json.dumps(summary, indent=2)) if kw["as_json"] else _print_summary(summary)
    _exit_on_audit(summary)


federate = click.Command(
    "federate", params=run.params, callback=run.callback,
    help=inspect.cleandoc(run.help or "") + "\n\nThe same command as `cairn coordinator run`.",
    short_help="Plan, train and query over node directories; a signed bundle (= coordinator run).",
)
