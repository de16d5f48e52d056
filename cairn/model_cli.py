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
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="A model .safetensors file, its directory, or a bundle.")
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path), help="Any importable feedback file.")
@click.option("--format", "fmt", default=None)
@click.option("--json", "as_json", is_flag=True)
@friendly
def eval_(model_path: Path, data: Path, fmt: str | None, as_json: bool) -> None:
    """Pairwise accuracy on FILE's strict preferences (ties excluded)."""
    from node.evaluate import evaluate

    res = evaluate(model_path, data, fmt)
    if as_json:
        click.echo(json.dumps(res))
    else:
        acc = "n/a" if res["accuracy"] is None else f"{res['accuracy']:.3f}"
        click.echo(f"{res['pairs']} pairs, accuracy {acc}")


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
