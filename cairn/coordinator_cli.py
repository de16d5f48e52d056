"""`cairn coordinator ...`, the coordinator's home, and `cairn leaderboard BUNDLE`.

    cairn coordinator run    train and query over node directories on this machine; a signed bundle
                             (`cairn federate` is the same command)
    cairn coordinator query  queries only (no training)
    cairn coordinator plan   ask the nodes' budgets and print the plan; nothing is spent
    cairn coordinator nodes  admitted node ids and keys (for a deployment's registry)

One option means the same everywhere: `--epsilon` is what training may spend per node, `--query-epsilon`
what each query asks of each node, `--secagg` secure aggregation of both (on by default). Every command
has `--json`. The work is coordinator/ (server_app.py, planning.py, simulation.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from cairn.errors import error_json, friendly
from model.presets import PRESETS, preset_config
from model.training_config import TRAINING
from protos.bundle import LEADERBOARD, STATISTICS
from protos.wire import QUERY_KINDS

NODE_DIR = click.option("--node-dir", "node_dirs", multiple=True, required=True, type=click.Path(path_type=Path),
                        help="A node directory (repeat for each community).")
JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
KEY = click.option("--coordinator-key", type=click.Path(path_type=Path), default=None,
                   help="The coordinator's Ed25519 key (PEM) that signs the bundle's manifest; created when missing, "
                        "its public key beside it in KEY.pub. Default: a one-off key auditors cannot pin.")
OUT = click.option("--out", required=True, type=click.Path(path_type=Path),
                   help="Bundle directory to write (new or empty); written whole or not at all.")
DP_HELP = (
    "How training is noised. local (the default): each community adds its full DP-SGD noise to its own "
    "update and the coordinator averages the updates. distributed: each round is ONE DP-SGD step over the "
    "union of all communities' members; each community adds only its share of the noise (distributed "
    "discrete Gaussian), sized so that the shares of the honest communities its policy counts on "
    "(trust.min_honest_nodes) reach the target, and the coordinator sees only the sum (SecAgg+): the accuracy "
    "of central DP without a trusted curator. Needs secure aggregation; --rounds is the number of steps "
    "(default 100). A node refuses a round with fewer nodes than its policy's "
    "trust.min_honest_nodes (and a SecAgg+ roster below trust.secagg_min_peers + 1), naming the rule."
)


SECAGG = click.option("--secagg/--no-secagg", default=True, show_default=True,
                      help="Secure aggregation (SecAgg+) of training updates and query answers: the coordinator sees "
                           "only sums (then no per-community leaderboards). Used with 3 or more nodes: a node's default policy "
                           "(trust.secagg_min_peers = 2) refuses a roster with fewer than 2 other nodes.")


def _query_options(fn):
    for opt in reversed([
        click.option("--query", "queries", multiple=True, type=click.Choice(QUERY_KINDS),
                     help="A DP aggregate query kind (repeatable); feeds statistics.json and the leaderboard."),
        click.option("--query-epsilon", default=1.0, show_default=True, type=float,
                     help="Epsilon each query asks of each node (a node refuses rather than go over its caps)."),
        click.option("--model", "models", multiple=True,
                     help="A public model name to count (repeatable; default: the names the nodes release by DP "
                          "private key selection, one discover_keys query at --query-epsilon)."),
        click.option("--language", "languages", multiple=True,
                     help="A public language code for coverage (repeatable; default: found by private key selection)."),
        click.option("--dimension", "dimensions", multiple=True,
                     help="A public rating dimension for rating_histogram (repeatable; default: found by private "
                          "key selection)."),
        click.option("--topic", "topics", multiple=True, help="A public topic label for coverage (repeatable)."),
    ]):
        fn = opt(fn)
    return fn


def _training_options(fn):
    for opt in reversed([
        click.option("--rounds", default=TRAINING.rounds, show_default=True, type=int,
                     help="Federated training rounds (0: queries only)."),
        click.option("--epsilon", default=TRAINING.epsilon, show_default=True, type=float,
                     help="The most epsilon training may spend per node (the plan and each node may give it less)."),
        click.option("--train-share", default=0.5, show_default=True, type=click.FloatRange(0, 1, min_open=True),
                     help="Share of each node's remaining budget training may take; the queries are reserved first."),
        click.option("--features", type=click.Choice(sorted(PRESETS)), default="minilm", show_default=True,
                     help="Featurizer preset of the reward model."),
        click.option("--local-steps", default=TRAINING.local_steps, show_default=True, type=int,
                     help="DP-SGD steps per node per round."),
        click.option("--aggregation", type=click.Choice(["fedavg", "median", "trimmed_mean"]), default="fedavg",
                     show_default=True, help="How updates are combined (robust ones need --no-secagg)."),
    ]):
        fn = opt(fn)
    return fn


def _config(node_dirs, *, out="", rounds=0, epsilon=TRAINING.epsilon, train_share=0.5, features="hashed",
            local_steps=TRAINING.local_steps, aggregation="fedavg", secagg=True, queries=(), query_epsilon=1.0,
            models=(), languages=(), dimensions=(), topics=(), coordinator_key=None, dry_run=False):
    from coordinator.server_app import FederationConfig

    if aggregation != "fedavg" and secagg:
        raise click.UsageError("robust aggregation needs --no-secagg (it must see each update)")
    several = len(node_dirs) >= 3  # the default policy's trust.secagg_min_peers (2 other nodes)
    return FederationConfig(out=str(out), rounds=rounds, featurizer=preset_config(features), epsilon=epsilon,
                            train_share=train_share, local_steps=local_steps, aggregation=aggregation,
                            secagg=secagg and several, query_secagg=secagg and several, queries=list(queries),
                            query_epsilon=query_epsilon, query_models=list(models) or None,
                            query_languages=list(languages) or None, query_dimensions=list(dimensions) or None,
                            query_topics=list(topics) or None, coordinator_key=str(coordinator_key or ""),
                            dry_run=dry_run)


def _simulate(node_dirs, cfg, as_json: bool = False) -> dict:
    """Run the federation; under --json a known error (a refused --out, a missing node directory) is
    printed as a JSON error object (cairn/errors.py `error_json`), exit code 1."""
    from coordinator.simulation import SimulationError, run_simulation_federation
    from node.client_app import app as client_app

    try:
        return run_simulation_federation(list(node_dirs), cfg, client_app)
    except SimulationError as e:
        if not as_json:
            raise
        click.echo(json.dumps(error_json(e), indent=2))
        raise SystemExit(1) from None


def _exit_on_audit(summary: dict) -> None:
    """A run's exit status is its bundle's audit (coordinator/bundle.py `audit_written`, pinned to the
    coordinator's key and the nodes' ids): exit 1 naming the failing checks when it does not verify."""
    audit = summary.get("audit")
    if summary.get("dry_run") or not audit:
        return
    for n, rounds in summary.get("dropped", {}).items():
        click.echo(f"node {n[:16]} dropped out in round(s) {', '.join(map(str, rounds))}; its earlier releases "
                   "are published", err=True)
    if not audit["ok"]:
        raise click.ClickException(f"{summary['bundle']}: the bundle does not verify: " + "; ".join(audit["failures"])
                                   + f" (see `cairn audit verify {summary['bundle']}`)")


def _print_plan(plan: dict) -> None:
    from coordinator.planning import format_plan, node_plan_from_dict

    plans = [node_plan_from_dict(d) for d in plan["nodes"]]
    click.echo("plan (epsilon per node; " + plan["composition"] + "):")
    for line in format_plan(plans):
        click.echo("  " + line)


def _print_summary(summary: dict) -> None:
    if summary.get("dry_run"):
        _print_plan(summary["plan"])
        click.echo("dry run: nothing was spent and no bundle was written")
        return
    click.echo(f"bundle written to {summary['bundle']} ({summary['rounds']} rounds), "
               f"signed by coordinator key {summary['coordinator_public_key']}")
    for n in summary["nodes"]:
        click.echo(f"  {n['name']}: epsilon {n['epsilon']:.3f} at delta {n['delta']:g} ({n['accountant']})")
    stats_path = Path(summary["bundle"]) / STATISTICS
    if stats_path.exists():
        stats = json.loads(stats_path.read_text())
        if stats.get("discovery"):
            d = stats["discovery"]
            click.echo(f"discover_keys: {len(d['answers'])} answers, {len(d['refused'])} refused; found "
                       + ", ".join(f"{len(v)} {t}(s)" for t, v in d["discovered"].items()))
            for t, v in d["discovered"].items():
                click.echo(f"  {t}: {', '.join(v) if v else '(none past the threshold)'}")
        for q in stats["queries"]:
            if "error" in q:
                click.echo(f"{q['query']['name']}: failed: {q['error']}")
                continue
            click.echo(f"{q['query']['name']}: {len(q['answers'])} answers, {len(q['refused'])} refused, "
                       f"noise sd per pooled cell {q['pooled_noise_sd_per_cell']:.2f}")
            for nid, why in q["refused"].items():
                click.echo(f"  refused by {nid[:12]}: {why}")
    if (Path(summary["bundle"]) / LEADERBOARD).exists():
        _print_board(json.loads((Path(summary["bundle"]) / LEADERBOARD).read_text()))


@click.group()
def coordinator() -> None:
    """The coordinator: plan budgets, run federations, publish signed bundles, list admitted nodes."""


@coordinator.command()
@NODE_DIR
@OUT
@_training_options
@_query_options
@SECAGG
@KEY
@click.option("--dry-run", is_flag=True, help="Ask the nodes' budgets and print the plan; spend nothing, write nothing.")
@click.option("--dp", type=click.Choice(["local", "distributed"]), default="local", show_default=True, help=DP_HELP)
@JSON
@friendly
def run(node_dirs, out, rounds, epsilon, train_share, features, local_steps, aggregation, queries, query_epsilon,
        models, languages, dimensions, topics, secagg, coordinator_key, dry_run, dp, as_json) -> None:
    """Plan, train and query over node directories (Flower Simulation Engine) and write a signed bundle.

    The plan (each node's budget, what training and each query will cost it, what remains) is made
    before anything is spent; `--dry-run` stops there."""
    if dp == "distributed":
        from cairn.federate import run_distributed

        return run_distributed(dict(locals()))
    cfg = _config(node_dirs, out=out, rounds=rounds, epsilon=epsilon, train_share=train_share, features=features,
                  local_steps=local_steps, aggregation=aggregation, secagg=secagg, queries=queries,
                  query_epsilon=query_epsilon, models=models, languages=languages, dimensions=dimensions,
                  topics=topics, coordinator_key=coordinator_key, dry_run=dry_run)
    summary = _simulate(node_dirs, cfg, as_json)
    click.echo(json.dumps(summary, indent=2)) if as_json else _print_summary(summary)
    _exit_on_audit(summary)


@coordinator.command()
@NODE_DIR
@_training_options
@_query_options
@SECAGG
@JSON
@friendly
def plan(node_dirs, rounds, epsilon, train_share, features, local_steps, aggregation, queries, query_epsilon, models,
         languages, dimensions, topics, secagg, as_json) -> None:
    """Ask each node its remaining budget and print the plan of a run with these options; nothing is spent."""
    cfg = _config(node_dirs, rounds=rounds, epsilon=epsilon, train_share=train_share, features=features,
                  local_steps=local_steps, aggregation=aggregation, secagg=secagg, queries=queries,
                  query_epsilon=query_epsilon, models=models, languages=languages, dimensions=dimensions,
                  topics=topics, dry_run=True)
    summary = _simulate(node_dirs, cfg, as_json)
    click.echo(json.dumps(summary["plan"], indent=2)) if as_json else _print_summary(summary)


@coordinator.command()
@NODE_DIR
@OUT
@_query_options
@SECAGG
@KEY
@click.option("--dry-run", is_flag=True, help="Ask the nodes' budgets and print the plan; spend nothing, write nothing.")
@JSON
@friendly
def query(node_dirs, out, queries, query_epsilon, models, languages, dimensions, topics, secagg, coordinator_key,
          dry_run, as_json) -> None:
    """Run DP aggregate queries (no training) over node directories and write a bundle with
    statistics.json, leaderboard.json/.png (for battle_counts) and datacard.md."""
    if not queries:
        raise click.UsageError("give at least one --query")
    cfg = _config(node_dirs, out=out, rounds=0, secagg=secagg, queries=queries, query_epsilon=query_epsilon,
                  models=models, languages=languages, dimensions=dimensions, topics=topics,
                  coordinator_key=coordinator_key, dry_run=dry_run)
    summary = _simulate(node_dirs, cfg, as_json)
    if as_json:
        stats = None if dry_run else json.loads((Path(summary["bundle"]) / STATISTICS).read_text())
        click.echo(json.dumps({**summary, "statistics": stats}, indent=2))
    else:
        _print_summary(summary)
    _exit_on_audit(summary)


@coordinator.command()
@click.option("--node-dir", "node_dirs", multiple=True, type=click.Path(path_type=Path),
              help="A node directory to admit (repeatable).")
@click.option("--registry", type=click.Path(path_type=Path), default=None,
              help="A registry file (JSON, as --write writes it) to read the admitted nodes from.")
@click.option("--write", "write_to", type=click.Path(path_type=Path), default=None,
              help="Write the admitted nodes to this registry file (JSON).")
@click.option("--register", "connection", default=None, metavar="CONNECTION",
              help="Also register every admitted node's SuperNode key with the SuperLink that CONNECTION names "
                   "in your Flower configuration (what `flwr supernode register` does, for all of them).")
@JSON
@friendly
def nodes(node_dirs, registry, write_to, connection, as_json) -> None:
    """Admitted nodes: node id, name, ledger public key and SuperNode public key of each, from node
    directories or a registry file — what a deployment registers (`flwr supernode register`) and what
    auditors pin (`cairn audit verify --trust-node`)."""
    from coordinator.registry import from_node_dirs, read_registry, register, write_registry

    if not node_dirs and registry is None:
        raise click.UsageError("give --node-dir (repeatable) or --registry FILE")
    admitted = (read_registry(registry) if registry else []) + from_node_dirs(list(node_dirs))
    if write_to:
        write_registry(write_to, admitted)
    registered = register(admitted, connection) if connection else None
    if as_json:
        click.echo(json.dumps({"nodes": admitted, **({"registered": registered} if connection else {})}, indent=2))
        return
    for n in admitted:
        click.echo(f"{n['node_id']}  {n['name']}")
        click.echo(f"    ledger key    {n['ledger_public_key']}")
        click.echo(f"    supernode key {n['supernode_public_key']}")
    if write_to:
        click.echo(f"registry written to {write_to}")
    for r in registered or []:
        click.echo(f"registered {r['name'] or r['node_id'][:16]} with the SuperLink as Flower node {r['flower_node_id']}")


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
    empty = [title for title, b in tables if not b.get("models")]
    if empty:
        raise click.ClickException(empty_board_message(board, empty[0]))


def empty_board_message(board: dict, title: str = "pooled") -> str:
    """Why a leaderboard is empty, for a non-zero exit: no model pair passed the noise threshold."""
    b = board.get("pooled") if title == "pooled" else next(
        (x for x in board.get("per_community", {}).values() if x.get("name") == title), None)
    b = b or {}
    names = json.loads(board.get("query", {}).get("params", {}).get("models", "[]") or "[]")
    return (f"the {title} leaderboard is empty: {b.get('pairs_used', 0)} model pairs used, "
            f"{b.get('pairs_dropped', 0)} dropped as indistinguishable from noise, over {len(names)} model names "
            "asked. Too few battles for the noise (more contributors, or a larger --query-epsilon), or names that "
            "match no battle (check --model, or omit it to let the nodes' private key selection find them)")


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--community", default=None, help="A community's own leaderboard (name or node id).")
@click.option("--coordinator-key", "coordinator_key", default=None,
              help="Pin the coordinator's public key (hex, or a KEY.pub file) when verifying the bundle.")
@JSON
@friendly
def leaderboard(bundle: Path, community: str | None, coordinator_key: str | None, as_json: bool) -> None:
    """Print the DP leaderboard of a release bundle (Bradley-Terry, intervals include DP noise), after
    verifying the bundle (`cairn audit verify`): a bundle that does not verify is refused."""
    from privacy.audit import verify_bundle

    pin = None
    if coordinator_key:
        text = Path(coordinator_key).read_text() if Path(coordinator_key).is_file() else coordinator_key
        pin = bytes.fromhex(text.strip())
    result = verify_bundle(bundle, coordinator_key=pin)
    if not result.ok:
        failed = [f"{c.name}: {c.message}" for c in result.failures]
        raise click.ClickException(f"{bundle}: the bundle does not verify, refusing its leaderboard "
                                   f"({'; '.join(failed[:3])}); see `cairn audit verify {bundle}`")
    if pin is None:  # verified, but anyone could have signed it: say so (on stderr, so --json stays clean)
        click.echo("warning: the coordinator's key is not pinned (--coordinator-key): the bundle verifies, but "
                   "whoever signed it is not checked", err=True)
    path = bundle / LEADERBOARD
    if not path.exists():
        raise click.ClickException(f"{bundle}: no leaderboard.json (the federation ran no battle_counts query)")
    board = json.loads(path.read_text())
    if as_json:
        click.echo(json.dumps(board, indent=2))
        if not community and not (board.get("pooled") or {}).get("models"):
            raise click.ClickException(empty_board_message(board))
        return
    click.echo(board.get("method", ""))
    _print_board(board, community)
