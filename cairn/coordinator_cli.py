"""`cairn coordinator query ...` (a query-only federation over node directories on this machine) and
`cairn leaderboard BUNDLE` (print a bundle's DP leaderboard)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cairn.errors import friendly
from protos.bundle import LEADERBOARD, STATISTICS
from protos.wire import QUERY_KINDS


@click.group()
def coordinator() -> None:
    """The coordinator: admit nodes, run rounds, publish bundles."""


@coordinator.command()
@click.option("--node-dir", "node_dirs", multiple=True, required=True, type=click.Path(path_type=Path),
              help="A node directory (repeat for each community).")
@click.option("--query", "queries", multiple=True, required=True, type=click.Choice(QUERY_KINDS),
              help="A query kind (repeat for several).")
@click.option("--epsilon", default=1.0, show_default=True, help="Epsilon each query asks of each node (nodes cap it).")
@click.option("--model", "models", multiple=True, help="Public model names to count (default: the public list).")
@click.option("--language", "languages", multiple=True, help="Public language codes for coverage.")
@click.option("--dimension", "dimensions", multiple=True, help="Public rating dimensions for rating_histogram.")
@click.option("--secagg/--no-secagg", default=False, show_default=True,
              help="Sum answers with SecAgg+ (then no per-community leaderboards).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle directory to write.")
@click.option("--coordinator-key", type=click.Path(path_type=Path), default=None,
              help="The coordinator's Ed25519 key (PEM) that signs the bundle's manifest; created when missing, "
                   "its public key beside it in KEY.pub. Default: a one-off key auditors cannot pin.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def query(node_dirs, queries, epsilon, models, languages, dimensions, secagg, out, coordinator_key, as_json) -> None:
    """Run DP aggregate queries (no training) over node directories and write a bundle with
    statistics.json, leaderboard.json/.png (for battle_counts) and datacard.md."""
    from coordinator.server_app import FederationConfig
    from coordinator.simulation import run_simulation_federation
    from node.client_app import app as client_app

    cfg = FederationConfig(out=str(out), rounds=0, queries=list(queries), query_epsilon=epsilon,
                           query_models=list(models) or None, query_languages=list(languages) or None,
                           query_dimensions=list(dimensions) or None, query_secagg=secagg,
                           coordinator_key=str(coordinator_key or ""))
    summary = run_simulation_federation(list(node_dirs), cfg, client_app)
    stats = json.loads((Path(summary["bundle"]) / STATISTICS).read_text())
    if as_json:
        click.echo(json.dumps({"bundle": summary["bundle"], "coordinator_public_key": summary["coordinator_public_key"],
                               "statistics": stats}, indent=2))
        return
    click.echo(f"bundle written to {summary['bundle']}, signed by coordinator key {summary['coordinator_public_key']}")
    for q in stats["queries"]:
        click.echo(f"{q['query']['name']}: {len(q['answers'])} answers, {len(q['refused'])} refused, "
                   f"noise sd per pooled cell {q['pooled_noise_sd_per_cell']:.2f}")
        for nid, why in q["refused"].items():
            click.echo(f"  refused by {nid[:12]}: {why}")
    if (Path(summary["bundle"]) / LEADERBOARD).exists():
        _print_board(json.loads((Path(summary["bundle"]) / LEADERBOARD).read_text()))


def _print_board(board: dict, community: str | None = None) -> None:
    if community:
        tables = [(b.get("name") or nid[:12], b) for nid, b in board.get("per_community", {}).items()
                  if community in (b.get("name"), nid)]
        if not tables:
            raise click.ClickException(f"no per-community leaderboard for {community!r}")
    else:
        tables = [("pooled", board.get("pooled") or {"models": []})]
    for title, b in tables:
        click.echo(f"== {title} (noise sd per cell {b.get('noise_sd_per_cell', 0)}; "
                   f"{b.get('pairs_used', 0)} pairs used, {b.get('pairs_dropped', 0)} dropped as noise)")
        click.echo(f"{'rank':>4}  {'model':<28} {'rating':>8}  {'95% CI':>19}  {'battles':>8}")
        several = b.get("components", 1) > 1
        for m in b.get("models", []):
            if several and m["rank"] == 1:
                click.echo(f"  -- component {m['component']} (ranked on its own: never compared with the others)")
            click.echo(f"{m['rank']:>4}  {m['model']:<28} {m['rating']:>8.1f}  [{m['ci_low']:>7.1f}, {m['ci_high']:>7.1f}]"
                       f"  {m['battles']:>8.0f}")


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--community", default=None, help="A community's own leaderboard (name or node id).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def leaderboard(bundle: Path, community: str | None, as_json: bool) -> None:
    """Print the DP leaderboard of a release bundle (Bradley-Terry, intervals include DP noise)."""
    path = bundle / LEADERBOARD
    if not path.exists():
        raise click.ClickException(f"{bundle}: no leaderboard.json (the federation ran no battle_counts query)")
    board = json.loads(path.read_text())
    if as_json:
        click.echo(json.dumps(board, indent=2))
        return
    click.echo(board.get("method", ""))
    _print_board(board, community)
