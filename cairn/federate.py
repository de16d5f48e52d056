"""`cairn federate`: a federation over node directories on this machine (Flower Simulation Engine).

The ClientApp (node/client_app.py) runs in Simulation-Engine workers, one virtual SuperNode per
node directory; the ServerApp (coordinator/server_app.py) runs here. Same apps, same messages as
in a real deployment (deploy/).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import click

from cairn.errors import friendly

FEATURIZERS = {
    "hashed": {"name": "hashed-ngram", "dim": 384},
    "minilm": {"name": "all-MiniLM-L6-v2", "dim": 384},
}


def run_simulation_federation(node_dirs: list[Path], cfg, quiet: bool = True, wrap_grid=None) -> dict:
    """Run the federation in Flower's Simulation Engine; returns the bundle summary.

    `wrap_grid` (tests): a function Grid -> Grid, e.g. to record every message the coordinator gets."""
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    from flwr.simulation import run_simulation

    from coordinator.server_app import run_federation
    from flwr.serverapp import ServerApp
    from node.client_app import NODES_ENV, app as client_app

    dirs = [str(Path(d).resolve()) for d in node_dirs]
    for d in dirs:
        if not (Path(d) / "node.toml").exists():
            raise click.ClickException(f"{d}: not a Cairn node directory")
    from coordinator.server_app import check_out_empty
    from coordinator.signing import load_or_create_key

    try:  # a non-empty --out or a bad key file is named now, not after the federation ran
        check_out_empty(cfg.out)
        if cfg.coordinator_key:
            load_or_create_key(cfg.coordinator_key)
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    os.environ[NODES_ENV] = json.dumps(dirs)  # Simulation-Engine workers inherit this environment
    cfg.min_nodes = len(dirs)
    result: dict = {}
    server = ServerApp()

    @server.main()
    def main(grid, context):
        result.update(run_federation(wrap_grid(grid) if wrap_grid else grid, cfg))

    if quiet:
        for name in ("flwr", "ray"):
            logging.getLogger(name).setLevel(logging.WARNING)
    progress = logging.getLogger("cairn.coordinator")  # round-by-round progress on the terminal
    if not progress.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("  coordinator: %(message)s"))
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)
    run_simulation(
        server_app=server,
        client_app=client_app,
        num_supernodes=len(dirs),
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": min(2, os.cpu_count() or 1), "include_dashboard": False, "log_to_driver": not quiet},
        },
        verbose_logging=False,
    )
    if not result:
        raise click.ClickException("the federation did not complete (see the log above)")
    return result


@click.command()
@click.option("--node-dir", "node_dirs", multiple=True, required=True, type=click.Path(path_type=Path),
              help="A node directory (repeat for each community).")
@click.option("--rounds", default=3, show_default=True)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle directory to write.")
@click.option("--features", type=click.Choice(sorted(FEATURIZERS)), default="minilm", show_default=True)
@click.option("--epsilon", default=8.0, show_default=True, help="Epsilon the training may spend per node (nodes cap it).")
@click.option("--local-steps", default=100, show_default=True)
@click.option("--aggregation", type=click.Choice(["fedavg", "median", "trimmed_mean"]), default="fedavg", show_default=True)
@click.option("--secagg/--no-secagg", default=True, show_default=True, help="Secure aggregation (SecAgg+).")
@click.option("--query", "queries", multiple=True,
              type=click.Choice(["battle_counts", "thumbs_rates", "rating_histogram", "coverage", "implicit_feedback"]),
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

    if aggregation != "fedavg" and secagg:
        raise click.UsageError("robust aggregation needs --no-secagg (it must see each update)")
    cfg = FederationConfig(out=str(out), rounds=rounds, featurizer=FEATURIZERS[features], epsilon=epsilon,
                           local_steps=local_steps, aggregation=aggregation, secagg=secagg and len(node_dirs) >= 2,
                           queries=list(queries), query_epsilon=query_epsilon,
                           coordinator_key=str(coordinator_key or ""))
    summary = run_simulation_federation(list(node_dirs), cfg)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"bundle written to {summary['bundle']} ({summary['rounds']} rounds), "
               f"signed by coordinator key {summary['coordinator_public_key']}")
    for n in summary["nodes"]:
        click.echo(f"  {n['name']}: epsilon {n['epsilon']:.3f} at delta {n['delta']:g} ({n['accountant']})")
