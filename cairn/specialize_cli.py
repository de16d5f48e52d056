"""`cairn node specialize DIR --from BUNDLE --out MODEL`: the published reward model fine-tuned on the
community's own data (node/specialize.py), under the node's DP-SGD, its policy and its ledger (issue 11)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cairn.errors import friendly
from model.presets import PRESETS
from node.node_dir import NodeDir
from node.specialize import DEFAULT_EPSILON, DEFAULT_STEPS, HOLDOUT_SHARE


def _verifier(pin: str | None, allow_unpinned: bool):
    """A bundle check for node/specialize.py: the auditor's `verify_bundle` (the node itself never imports
    the auditor) with the coordinator's key pinned, as `cairn audit verify` is strict: without a pin a
    bundle re-signed by anyone verifies, so an unpinned bundle is refused unless --allow-unpinned. The pin
    is parsed before anything is read (`cairn audit verify`'s --coordinator-key: 64 hex digits or a file)."""
    from cairn.audit_cli import _coordinator_key

    key = _coordinator_key(pin)

    def verify(bundle: Path) -> None:
        from privacy.audit import verify_bundle

        if key is None and not allow_unpinned:
            raise click.ClickException(f"{bundle}: the coordinator's key is not pinned: pass --coordinator-key HEX|FILE "
                                       "(its published key), or --allow-unpinned to trust whoever signed the bundle; "
                                       "nothing was spent")
        result = verify_bundle(bundle, coordinator_key=key)
        if not result.ok:
            failed = [f"{c.name}: {c.message}" for c in result.failures]
            raise click.ClickException(f"{bundle}: the bundle does not verify, refusing to specialise its model "
                                       f"({'; '.join(failed[:3])}); see `cairn audit verify {bundle}`; nothing was spent")
        if key is None:
            click.echo("warning: --allow-unpinned: the bundle verifies, but whoever signed it is not checked", err=True)

    return verify


@click.command()
@click.argument("dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--from", "source", required=True, type=click.Path(path_type=Path),
              help="The published model: a bundle (verified first), a model directory or a model .safetensors file.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Where to write the specialised model (.safetensors with its .json, or a directory).")
@click.option("--epsilon", default=DEFAULT_EPSILON, show_default=True, type=float,
              help="Epsilon this specialisation may spend (refused above the remaining budget).")
@click.option("--steps", default=DEFAULT_STEPS, show_default=True, type=int, help="DP-SGD steps.")
@click.option("--holdout", default=HOLDOUT_SHARE, show_default=True, type=float,
              help="Share of the eligible people held out (by keyed hash) for `cairn model eval --node`.")
@click.option("--features", type=click.Choice(list(PRESETS)), default=None,
              help="The featurizer this node expects: refuse a model trained on another.")
@click.option("--coordinator-key", default=None, help="Pin the coordinator's public key (hex, or a KEY.pub file).")
@click.option("--allow-unpinned", is_flag=True, help="Accept a bundle without --coordinator-key (signer not checked).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly
def specialize(dir: Path, source: Path, out: Path, epsilon: float, steps: int, holdout: float, features: str | None,
               coordinator_key: str | None, allow_unpinned: bool, as_json: bool) -> None:
    """Fine-tune the published reward model on this community's own members (user-level DP-SGD at
    --epsilon, through the release gate and the ledger); the data never leaves the node."""
    from node.specialize import specialize as run

    res = run(NodeDir(dir), source, out, epsilon=epsilon, steps=steps, holdout=holdout, features=features,
              verify=_verifier(coordinator_key, allow_unpinned), progress=not as_json)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    click.echo(f"specialised model written to {res['out']} (from the {res['base']['source']} model "
               f"{res['base']['sha256'][:16]}…)")
    click.echo(f"  DP-SGD at epsilon {res['epsilon']:g} (noise multiplier {res['noise_multiplier']:.3f}); ledger entry "
               f"{res['ledger_seq']} ({res['plan_id']}); budget {res['spent_before']:.4f} -> {res['spent_after']:.4f} "
               f"of {res['epsilon_cap']} at delta {res['delta']:g} (the cap's accounting: more than --epsilon)")
    click.echo(f"  compare: cairn model eval --node {dir} --global {source} --specialised {res['out']}")
