"""`cairn federate`: a federation over node directories on this machine (Flower Simulation Engine).

Parses the options into a FederationConfig, runs coordinator.simulation.run_simulation_federation
with the node's ClientApp, and prints the bundle summary; the driver itself is coordinator/simulation.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from cairn.errors import friendly
from model.presets import PRESETS, preset_config
from model.training_config import TRAINING
from protos.wire import QUERY_KINDS


@click.command()
@click.option("--node-dir", "node_dirs", multiple=True, required=True, type=click.Path(path_type=Path),
              help="A node directory (repeat for each community).")
@click.option("--rounds", default=TRAINING.rounds, show_default=True)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle directory to write.")
@click.option("--features", type=click.Choice(sorted(PRESETS)), default="minilm", show_default=True)
@click.option("--epsilon", default=TRAINING.epsilon, show_default=True, help="Epsilon the training may spend per node (nodes cap it).")
@click.option("--local-steps", default=TRAINING.local_steps, show_default=True)
@click.option("--aggregation", type=click.Choice(["fedavg", "median", "trimmed_mean"]), default="fedavg", show_default=True)
@click.option("--secagg/--no-secagg", default=True, show_default=True, help="Secure aggregation (SecAgg+).")
@click.option("--query", "queries", multiple=True, type=click.Choice(QUERY_KINDS),
              help="DP aggregate query to ask after training (repeatable); feeds statistics and the leaderboard.")
@click.option("--query-epsilon", default=1.0, show_default=True, help="Epsilon requested per query per node (nodes cap it).")
@click.option("--coordinator-key", type=click.Path(path_type=Path), default=None,
              help="The coordinator's Ed25519 key (PEM) that signs the bundle's manifest; created when missing, "
                   "its public key beside it in KEY.pub. Default: a one-off key auditors cannot pin.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def federate(node_dirs, rounds, out, features, epsilon, local_steps, aggregation, secagg, queries, query_epsilon,
             coordinator_key, as_json) -> None:
    """Run a federation over existing node directories and write a release bundle."""
    from coordinator.server_app import FederationConfig
    from coordinator.simulation import run_simulation_federation
    from node.client_app import app as client_app

    if aggregation != "fedavg" and secagg:
        raise click.UsageError("robust aggregation needs --no-secagg (it must see each update)")
    cfg = FederationConfig(out=str(out), rounds=rounds, featurizer=preset_config(features), epsilon=epsilon,
                           local_steps=local_steps, aggregation=aggregation, secagg=secagg and len(node_dirs) >= 2,
                           queries=list(queries), query_epsilon=query_epsilon,
                           coordinator_key=str(coordinator_key or ""))
    summary = run_simulation_federation(list(node_dirs), cfg, client_app)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"bundle written to {summary['bundle']} ({summary['rounds']} rounds), "
               f"signed by coordinator key {summary['coordinator_public_key']}")
    for n in summary["nodes"]:
        click.echo(f"  {n['name']}: epsilon {n['epsilon']:.3f} at delta {n['delta']:g} ({n['accountant']})")
