"""`cairn node ...`: what a community operator runs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cairn.errors import KNOWN, PROJECT_PACKAGES, error_json, friendly
from model.presets import PRESETS
from node.node_dir import NodeDir


def _echo(data: dict, as_json: bool, title: str = "") -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=False))
        return
    from rich.console import Console
    from rich.tree import Tree

    tree = Tree(f"[bold]{title}[/bold]" if title else "")

    def add(node, value):
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, (dict, list)) and v:
                    add(node.add(f"[cyan]{k}[/cyan]"), v)
                else:
                    node.add(f"[cyan]{k}[/cyan]: {v}")
        elif isinstance(value, list):
            for v in value:
                node.add(str(v))

    add(tree, data)
    Console().print(tree)


@click.group()
def node() -> None:
    """A community's node: store, consent, privacy budget."""


@node.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="The community's name.")
@click.option("--passphrase-env", default=None, metavar="VAR",
              help="Derive the store key from the passphrase in this environment variable (scrypt) instead of a key file.")
@friendly
def init(dir: Path, name: str, passphrase_env: str | None) -> None:
    """Create a node directory: store, keys, privacy policy."""
    import os

    passphrase = None
    if passphrase_env:
        passphrase = os.environ.get(passphrase_env)
        if not passphrase:
            raise click.ClickException(f"environment variable {passphrase_env} is empty or unset")
    nd = NodeDir.init(dir, name, passphrase=passphrase, passphrase_env=passphrase_env)
    click.echo(f"initialised node {name!r} in {dir} (node id {nd.node_id[:16]}…)")
    click.echo(f"  policy: {nd.policy_path}  (edit it to set the community's privacy policy)")


@node.command(name="import")
@click.argument("dir", type=click.Path(path_type=Path))
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--format", "fmt", default=None, help="Input format; detected when not given.")
@click.option("--contributor", default=None, help="Attribute every record to this contributor id.")
@click.option("--id-prefix", default=None, metavar="P",
              help="This source's ids collide with another's (different people, same ids): store them as P:id.")
@click.option("--skip-invalid", is_flag=True, help="Import the valid records and report each skipped one.")
@click.option("--consent", "consent", default=None, metavar="LICENCE",
              help="Record consent under this licence for every contributor in the file.")
@click.option("--consent-at", default=None, metavar="TIME",
              help="When consent was given (ISO 8601; default now). A past time needs --consent-by.")
@click.option("--consent-by", default=None, metavar="WHO",
              help="Who gave or witnessed a backdated consent (recorded with it).")
@click.option("--map", "map_spec", default=None, metavar="TARGET=COLUMN,...",
              help="Tables (CSV/TSV/Parquet): which column holds what, e.g. prompt=question,response_a=ans1,"
                   "response_b=ans2,preference=winner,contributor=user (scale=1..10 for ratings).")
@click.option("--map-file", default=None, type=click.Path(path_type=Path), help="Tables: the mapping as a TOML file.")
@click.option("--dry-run", is_flag=True, help="Validate and count as an import would, storing nothing.")
@click.option("--max-record-bytes", default=1_000_000, show_default=True, help="Refuse records larger than this.")
@click.option("--json", "as_json", is_flag=True, help="Print the report, or the error, as JSON.")
@friendly
def import_(dir, file, fmt, contributor, id_prefix, skip_invalid, consent, consent_at, consent_by, map_spec, map_file,
            dry_run, max_record_bytes, as_json) -> None:
    """Import chats and feedback from FILE (atomic unless --skip-invalid)."""
    try:
        _import(dir, file, fmt, contributor, skip_invalid, consent, consent_at, consent_by, map_spec, map_file, dry_run,
                max_record_bytes, as_json, id_prefix)
    except Exception as e:
        known = isinstance(e, (click.ClickException, *KNOWN)) or type(e).__module__.split(".")[0] in PROJECT_PACKAGES
        if not as_json or not known:
            raise
        data = error_json(e)
        if isinstance(e, click.ClickException):
            data["error"] = e.format_message()
        click.echo(json.dumps(data, indent=2))
        raise SystemExit(1) from None


def _import(dir, file, fmt, contributor, skip_invalid, consent, consent_at, consent_by, map_spec, map_file, dry_run,
            max_record_bytes, as_json, id_prefix=None) -> None:
    from node.importers.table import MappingError, parse_map
    from node.ingest import import_file

    nd = NodeDir(dir)
    try:
        mapping = parse_map(map_spec, map_file) if (map_spec or map_file) else None
    except MappingError as e:
        raise click.BadParameter(str(e), param_hint="--map") from None
    with nd.open_store() as store:
        rep = import_file(store, file, fmt=fmt, contributor=contributor, skip_invalid=skip_invalid,
                          consent=consent, consent_at=consent_at, max_record_bytes=max_record_bytes,
                          progress=not as_json, mapping=mapping, dry_run=dry_run, policy=nd.policy(),
                          consent_by=consent_by, id_prefix=id_prefix)
    if as_json:
        click.echo(json.dumps(rep.as_dict(), indent=2))
        return
    verb = "would be imported (dry run: nothing stored)" if dry_run else "imported"
    click.echo(f"{file}: {rep.records} records {verb} as {rep.format}, {rep.duplicates} already present, "
               f"{rep.withdrawn} of withdrawn contributors dropped, {len(rep.skipped)} skipped")
    if rep.known_ids:
        click.echo(f"  {rep.known_ids} contributor id(s) were already in the store and are taken as the same people; "
                   "if this source's ids are different people, re-import it with --id-prefix", err=True)
    for err in rep.skipped:
        click.echo(f"  skipped: {err}", err=True)


@node.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@friendly
def status(dir: Path, as_json: bool) -> None:
    """Counts: contributors, conversations, feedback by kind, eligibility, languages, models, redactions."""
    from node.status import node_status

    nd = NodeDir(dir)
    with nd.open_store() as store:
        _echo(node_status(nd, store), as_json, title=f"node {nd.name}")


@node.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--contributor", "contributors", multiple=True, help="Contributor id (repeatable).")
@click.option("--all", "everyone", is_flag=True, help="Every contributor in the store.")
@click.option("--licence", required=True, help="Licence the contributor agreed to, e.g. CC-BY-4.0.")
@click.option("--at", default=None, help="When consent was given (ISO 8601; default now). A past time needs --by.")
@click.option("--by", "--consent-by", "by", default=None, metavar="WHO",
              help="Who gave or witnessed a backdated consent (recorded with it).")
@friendly
def consent(dir, contributors, everyone, licence, at, by) -> None:
    """Record contributors' consent (they become eligible after the policy's waiting period).

    The licence must be one the policy lists; the time cannot be in the future; a backdated time
    shortens the waiting period, so it must say who gave the consent (--by)."""
    from node.consent import record_consent

    if bool(contributors) == everyone:
        raise click.UsageError("give --contributor ID (repeatable) or --all")
    nd = NodeDir(dir)
    with nd.open_store() as store:
        n = record_consent(store, None if everyone else list(contributors), licence, at, source="cli",
                           policy=nd.policy(), by=by)
    click.echo(f"consent under {licence} recorded for {n} contributor(s)")


@node.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--contributor", required=True, help="The contributor who withdraws.")
@friendly
def forget(dir: Path, contributor: str) -> None:
    """Withdrawal: delete a contributor's text and feedback and exclude them from later releases."""
    with NodeDir(dir).open_store() as store:
        out = store.forget(contributor)
    click.echo(f"forgot {contributor}: {out['conversations_deleted']} conversations and "
               f"{out['feedback_deleted']} feedback items deleted; excluded from every later release")


@node.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.argument("first")
@click.argument("second")
@friendly
def link(dir: Path, first: str, second: str) -> None:
    """Declare that contributor ids FIRST and SECOND are one person: from now on bounding, sampling,
    consent and withdrawal treat them as one (SECOND's rows move to FIRST's id; later imports follow)."""
    from node.links import link as link_ids

    with NodeDir(dir).open_store() as store:
        out = link_ids(store, first, second)
    ids = ", ".join([out["canonical"], *out["aliases"]])
    state = "linked" if out["changed"] else "already one person"
    click.echo(f"{state}: {ids} (stored as {out['canonical']})")


@node.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--id", "cid", required=True, help="Contributor id.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def contributor(dir: Path, cid: str, as_json: bool) -> None:
    """Show what the node holds about one contributor."""
    from node.contributors import describe

    nd = NodeDir(dir)
    with nd.open_store() as store:
        _echo(describe(store, nd.policy(), cid), as_json, title=f"contributor {cid}")


@node.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@friendly
def budget(dir: Path, as_json: bool) -> None:
    """Epsilon spent and remaining (at the policy's delta), by kind and round, and the accountant used."""
    from node.status import privacy_budget

    s = privacy_budget(NodeDir(dir))
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    click.echo(f"node {s['node_name']}: epsilon {s['spent']:.4f} spent of {s['epsilon_cap']} "
               f"({s['remaining']:.4f} remaining) at delta {s['delta']:g}, accountant {s['label']}, "
               f"{s['entries']} releases; unit of privacy: one {s['unit']}, per community")
    for kind, part in s["by_kind"].items():
        click.echo(f"  {kind}: {part['releases']} releases, epsilon {part['epsilon']:.4f} alone ({part['label']})")
    for plan, p in s.get("plans", {}).items():
        click.echo(f"  plan {plan}: {p['rounds_run']}/{p['planned_rounds']} rounds, epsilon {p['epsilon']:.4f} "
                   f"({p['label']})")


@node.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--export", "export", required=True, type=click.Path(path_type=Path),
              help="Write the signed ledger here (.json for JSON, anything else for protobuf binary).")
@friendly
def ledger(dir: Path, export: Path) -> None:
    """Export the node's signed, hash-chained privacy ledger."""
    from node.status import export_ledger

    n = export_ledger(NodeDir(dir), export)
    click.echo(f"{n} ledger entries exported to {export}")


@node.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for report.md, report.html and epsilon.png (default DIR/reports).")
@friendly
def report(dir: Path, out: Path | None) -> None:
    """Write the node's privacy report (Markdown, HTML and a plot of epsilon over time)."""
    from node.status import write_privacy_report

    out = write_privacy_report(NodeDir(dir), out)
    click.echo(f"privacy report written to {out}/report.md, report.html and epsilon.png")


@node.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--contributors", "n", required=True, type=int, help="How many synthetic contributors.")
@click.option("--pairs-per-contributor", default=8, show_default=True)
@click.option("--rule-seed", default=1, show_default=True, help="The planted rule every community shares.")
@click.option("--community-seed", default=0, show_default=True, help="This community's own taste.")
@click.option("--gamma", default=0.5, show_default=True, help="How far the community's taste departs from the shared rule.")
@click.option("--noise", default=0.5, show_default=True, help="Label noise (Bradley-Terry temperature, relative).")
@click.option("--test-out", type=click.Path(path_type=Path), default=None,
              help="Also write held-out pairs labelled by the planted rule (arena JSONL), for `cairn model eval`.")
@click.option("--test-pairs", default=2000, show_default=True)
@click.option("--rule-space", type=click.Choice([*PRESETS, "text"]), default="minilm", show_default=True,
              help="Where the planted rule lives: a hidden direction in a featurizer's space, or text properties.")
@click.option("--arena-models", type=int, default=0,
              help="Instead: contributors judge battles between this many named models whose Bradley-Terry strengths "
                   "are planted (seed --rule-seed, shared by communities; battles seeded by --community-seed), over "
                   "real text. Uses only --contributors and the two seeds.")
@click.option("--arena-truth", type=click.Path(path_type=Path), default=None,
              help="With --arena-models: write the planted strengths (JSON) here.")
@click.option("--data", type=click.Path(path_type=Path, exists=True), default=None,
              help="Feedback files, or a folder of them (any format `cairn node import` reads), whose real prompts and "
                   "responses the contributors judge [default: $CAIRN_SHARED_DATA, else ../shared/data].")
@friendly
def synth(dir, n, pairs_per_contributor, rule_seed, community_seed, gamma, noise, test_out, test_pairs, rule_space,
          arena_models, arena_truth, data) -> None:
    """Fill a node with synthetic contributors whose preferences over real text follow a planted rule
    (or, with --arena-models, who judge battles between models of planted strength).

    Synthetic contributors are recorded as consenting (CC0-1.0) in the past, so they are eligible at
    once; their records are marked synthetic. Held-out test pairs use prompts no contributor saw."""
    from node.synth.community import arena_community, planted_community

    nd = NodeDir(dir)
    if arena_models:
        if arena_models < 2:
            raise click.BadParameter("an arena needs at least 2 models", param_hint="--arena-models")
        if test_out:  # arena judges have no planted text rule to hold out; the truth is --arena-truth
            raise click.BadParameter("--test-out is for planted-rule communities; an arena writes --arena-truth",
                                     param_hint="--test-out")
        out = arena_community(nd, n, arena_models, rule_seed=rule_seed, community_seed=community_seed,
                              truth_out=arena_truth, data=data)
        click.echo(f"{out['community']}: {n} synthetic contributors, {out['added']} battles between {arena_models} "
                   f"models of planted strength")
        return
    out = planted_community(nd, n, pairs_per_contributor=pairs_per_contributor, rule_seed=rule_seed,
                            community_seed=community_seed, gamma=gamma, noise=noise, test_out=test_out,
                            test_pairs=test_pairs, rule_space=rule_space, data=data)
    click.echo(f"{out['community']}: {n} synthetic contributors, {out['added']} pairs over {out['prompts']} real prompts")
    if test_out:
        click.echo(f"{out['held_out']} held-out pairs labelled by the planted rule written to {test_out}")

import cairn.service_cli  # noqa: E402,F401  (adds serve, invite and policy to `cairn node`: issue 12)
from cairn.head_cli import head  # noqa: E402 - registered here, defined in its own module

node.add_command(head)

from cairn.specialize_cli import specialize  # noqa: E402 - issue 11 item 5, defined in its own module

node.add_command(specialize)
