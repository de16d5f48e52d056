"""`cairn model ...`: score and evaluate reward models (a model file or a bundle)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cairn.errors import friendly


@click.group()
def model() -> None:
    """Score and evaluate reward models."""


@model.command(name="eval")
@click.option("--model", "model_path", default=None, type=click.Path(exists=True, path_type=Path),
              help="A model .safetensors file, its directory, or a bundle.")
@click.option("--data", default=None, type=click.Path(exists=True, path_type=Path), help="Any importable feedback file.")
@click.option("--format", "fmt", default=None)
@click.option("--node", "node_dir", default=None, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Instead of --data: this node's held-out pairs (the people `cairn node specialize` holds out).")
@click.option("--global", "global_path", default=None, type=click.Path(exists=True, path_type=Path),
              help="With --node: the global model (a bundle or a model file).")
@click.option("--specialised", "--specialized", "specialised_path", default=None,
              type=click.Path(exists=True, path_type=Path), help="With --node: the specialised model.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def eval_(model_path: Path | None, data: Path | None, fmt: str | None, node_dir: Path | None, global_path: Path | None,
          specialised_path: Path | None, as_json: bool) -> None:
    """Pairwise accuracy on FILE's strict preferences (ties excluded); or, with --node, of the global and the
    specialised model on the community's held-out pairs (exact counts: this terminal only)."""
    if node_dir is not None:
        _eval_node(node_dir, model_path, global_path, specialised_path, data, as_json)
        return
    if model_path is None or data is None or global_path or specialised_path:
        raise click.UsageError("give --model PATH --data FILE, or --node DIR with --global and/or --specialised")
    from node.evaluate import evaluate

    res = evaluate(model_path, data, fmt)
    if as_json:
        click.echo(json.dumps(res))
    else:
        acc = "n/a" if res["accuracy"] is None else f"{res['accuracy']:.3f}"
        click.echo(f"{res['pairs']} pairs, accuracy {acc}")


def _eval_node(node_dir: Path, model_path, global_path, specialised_path, data, as_json: bool) -> None:
    from node.evaluate import compare_on_node
    from node.node_dir import NodeDir

    if data is not None:
        raise click.UsageError("--node evaluates on the node's own held-out pairs: drop --data")
    models = {k: v for k, v in (("global", global_path), ("specialised", specialised_path), ("model", model_path)) if v}
    if not models:
        raise click.UsageError("--node needs --global and/or --specialised (or --model)")
    res = compare_on_node(NodeDir(node_dir), models)
    if as_json:
        click.echo(json.dumps(res))
        return
    click.echo(f"{res['community']}: {res['pairs']} held-out pairs of the {res['holdout_share']:.0%} of eligible people "
               "held out by keyed hash (an exact count, for this terminal only: do not publish it)")
    acc = res["accuracy"]
    for name, a in acc.items():
        click.echo(f"  {name:<12} accuracy {'n/a' if a is None else f'{a:.3f}'}")
    if acc.get("global") is not None and acc.get("specialised") is not None:
        click.echo(f"  specialised - global: {acc['specialised'] - acc['global']:+.3f}")


@model.command(name="score")
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--prompt", required=True)
@click.option("--response", "responses", multiple=True, required=True, help="Repeat for each response to score.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def score_(model_path: Path, prompt: str, responses: tuple[str, ...], as_json: bool) -> None:
    """Reward scores for (prompt, response) pairs; higher is better."""
    from node.evaluate import score_responses

    scores = score_responses(model_path, prompt, list(responses))
    out = [{"response": r, "score": s} for r, s in zip(responses, scores)]
    if as_json:
        click.echo(json.dumps(out))
    else:
        for o in out:
            click.echo(f"{o['score']:+.4f}  {o['response'][:80]}")
