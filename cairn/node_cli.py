"""`cairn node ...`: what a community operator runs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cairn.errors import friendly
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
    nd = NodeDir.init(dir, name, passphrase=passphrase)
    click.echo(f"initialised node {name!r} in {dir} (node id {nd.node_id[:16]}…)")
    click.echo(f"  policy: {nd.policy_path}  (edit it to set the community's privacy policy)")


@node.command(name="import")
@click.argument("dir", type=click.Path(path_type=Path))
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--format", "fmt", default=None, help="Input format; detected when not given.")
@click.option("--contributor", default=None, help="Attribute every record to this contributor id.")
@click.option("--skip-invalid", is_flag=True, help="Import the valid records and report each skipped one.")
@click.option("--consent", "consent", default=None, metavar="LICENCE",
              help="Record consent under this licence for every contributor in the file.")
@click.option("--consent-at", default=None, metavar="TIME", help="When consent was given (ISO 8601; default now).")
@click.option("--max-record-bytes", default=1_000_000, show_default=True, help="Refuse records larger than this.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def import_(dir, file, fmt, contributor, skip_invalid, consent, consent_at, max_record_bytes, as_json) -> None:
    """Import chats and feedback from FILE (atomic unless --skip-invalid)."""
    from node.ingest import import_file

    nd = NodeDir(dir)
    store = nd.open_store()
    try:
        rep = import_file(store, file, fmt=fmt, contributor=contributor, skip_invalid=skip_invalid,
                          consent=consent, consent_at=consent_at, max_record_bytes=max_record_bytes,
                          progress=not as_json)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rep.as_dict(), indent=2))
        return
    click.echo(f"{file}: {rep.records} records imported as {rep.format}, {rep.duplicates} already present, "
               f"{rep.withdrawn} of withdrawn contributors dropped, {len(rep.skipped)} skipped")
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
    store = nd.open_store()
    try:
        _echo(node_status(nd, store), as_json, title=f"node {nd.name}")
    finally:
        store.close()


@node.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--contributor", "contributors", multiple=True, help="Contributor id (repeatable).")
@click.option("--all", "everyone", is_flag=True, help="Every contributor in the store.")
@click.option("--licence", required=True, help="Licence the contributor agreed to, e.g. CC-BY-4.0.")
@click.option("--at", default=None, help="When consent was given (ISO 8601; default now).")
@friendly
def consent(dir, contributors, everyone, licence, at) -> None:
    """Record contributors' consent (they become eligible after the policy's waiting period)."""
    from node.consent import record_consent

    if bool(contributors) == everyone:
        raise click.UsageError("give --contributor ID (repeatable) or --all")
    store = NodeDir(dir).open_store()
    try:
        n = record_consent(store, None if everyone else list(contributors), licence, at, source="cli")
    finally:
        store.close()
    click.echo(f"consent under {licence} recorded for {n} contributor(s)")


@node.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--contributor", required=True, help="The contributor who withdraws.")
@friendly
def forget(dir: Path, contributor: str) -> None:
    """Withdrawal: delete a contributor's text and feedback and exclude them from later releases."""
    store = NodeDir(dir).open_store()
    try:
        out = store.forget(contributor)
    finally:
        store.close()
    click.echo(f"forgot {contributor}: {out['conversations_deleted']} conversations and "
               f"{out['feedback_deleted']} feedback items deleted; excluded from every later release")


@node.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--id", "cid", required=True, help="Contributor id.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def contributor(dir: Path, cid: str, as_json: bool) -> None:
    """Show what the node holds about one contributor."""
    from node.contributors import describe

    nd = NodeDir(dir)
    store = nd.open_store()
    try:
        _echo(describe(store, nd.policy(), cid), as_json, title=f"contributor {cid}")
    finally:
        store.close()


@node.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@friendly
def budget(dir: Path, as_json: bool) -> None:
    """Epsilon spent and remaining (at the policy's delta), by kind and round, and the accountant used."""
    from node.releases import open_ledger
    from privacy.report import budget_summary

    nd = NodeDir(dir)
    store = nd.open_store()
    try:
        s = budget_summary(open_ledger(nd, store), nd.policy())
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    click.echo(f"node {s['node_name']}: epsilon {s['spent']:.4f} spent of {s['epsilon_cap']} "
               f"({s['remaining']:.4f} remaining) at delta {s['delta']:g}, accountant {s['method']}, "
               f"{s['entries']} releases; unit of privacy: one {s['unit']}")
    for kind, part in s["by_kind"].items():
        click.echo(f"  {kind}: {part['releases']} releases, epsilon {part['epsilon']:.4f} alone ({part['method']})")


@node.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--export", "export", required=True, type=click.Path(path_type=Path),
              help="Write the signed ledger here (.json for JSON, anything else for protobuf binary).")
@friendly
def ledger(dir: Path, export: Path) -> None:
    """Export the node's signed, hash-chained privacy ledger."""
    from node.releases import open_ledger

    nd = NodeDir(dir)
    store = nd.open_store()
    try:
        lg = open_ledger(nd, store)
        lg.export_to(export, fmt="json" if export.suffix == ".json" else "pb")
        n = len(lg)
    finally:
        store.close()
    click.echo(f"{n} ledger entries exported to {export}")


@node.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for report.md, report.html and epsilon.png (default DIR/reports).")
@friendly
def report(dir: Path, out: Path | None) -> None:
    """Write the node's privacy report (Markdown, HTML and a plot of epsilon over time)."""
    from node.releases import open_ledger
    from privacy.report import budget_summary, plot_epsilon, render_html, render_markdown

    nd = NodeDir(dir)
    out = out or nd.path / "reports"
    out.mkdir(parents=True, exist_ok=True)
    store = nd.open_store()
    try:
        s = budget_summary(open_ledger(nd, store), nd.policy())
    finally:
        store.close()
    (out / "report.md").write_text(render_markdown(s), encoding="utf-8")
    (out / "report.html").write_text(render_html(s), encoding="utf-8")
    plot_epsilon(s, out / "epsilon.png")
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
@click.option("--rule-space", type=click.Choice(["minilm", "hashed", "text"]), default="minilm", show_default=True,
              help="Where the planted rule lives: a hidden direction in a featurizer's space, or text properties.")
@click.option("--arena-models", type=int, default=0,
              help="Instead: contributors judge battles between this many named models whose Bradley-Terry strengths "
                   "are planted (seed --rule-seed, shared by communities; battles seeded by --community-seed), over "
                   "real text. Uses only --contributors and the two seeds.")
@click.option("--arena-truth", type=click.Path(path_type=Path), default=None,
              help="With --arena-models: write the planted strengths (JSON) here.")
@friendly
def synth(dir, n, pairs_per_contributor, rule_seed, community_seed, gamma, noise, test_out, test_pairs, rule_space,
          arena_models, arena_truth) -> None:
    """Fill a node with synthetic contributors whose preferences over real text follow a planted rule
    (or, with --arena-models, who judge battles between models of planted strength).

    Synthetic contributors are recorded as consenting (CC0-1.0) in the past, so they are eligible at
    once; their records are marked synthetic. Held-out test pairs use prompts no contributor saw."""
    from node.synth import arena_battles, arena_models as planted_models, arena_records, load_text_pool, split_pool, synth_records

    nd = NodeDir(dir)
    pool = load_text_pool()
    if not pool:
        raise click.ClickException("no text pool found (../shared/data or fixtures/)")
    train, test = split_pool(pool)
    name = nd.name
    if arena_models:
        if arena_models < 2:
            raise click.BadParameter("an arena needs at least 2 models", param_hint="--arena-models")
        if test_out:  # arena judges have no planted text rule to hold out; the truth is --arena-truth
            raise click.BadParameter("--test-out is for planted-rule communities; an arena writes --arena-truth",
                                     param_hint="--test-out")
        strengths = planted_models(arena_models, rule_seed, prefix="arena-model")
        battles = arena_battles(n, strengths, community_seed, contributor_prefix=f"{name}-u")
        recs = arena_records(battles, train, community_seed, name)
        store = nd.open_store()
        try:
            with store.transaction():
                added = sum(store.add_record(r, None, consent=("CC0-1.0", "2020-01-01T00:00:00+00:00", "synth")) for r in recs)
        finally:
            store.close()
        if arena_truth:
            arena_truth.parent.mkdir(parents=True, exist_ok=True)
            arena_truth.write_text(json.dumps({"planted_strengths": strengths, "scale": "natural log odds"}, indent=2) + "\n")
        click.echo(f"{name}: {n} synthetic contributors, {added} battles between {arena_models} models of planted strength")
        return
    store = nd.open_store()
    try:
        rule_features = None
        if rule_space != "text":
            from cairn.federate import FEATURIZERS
            from node.features import featurizer_from_config

            rule_features = CachedFeatures(featurizer_from_config(FEATURIZERS[rule_space]), store)
        recs = synth_records(n, pairs_per_contributor, rule_seed, community_seed, train, gamma=gamma, noise=noise,
                             lexicon_texts=pool, community=name, featurizer=rule_features)
        held = synth_records(max(1, test_pairs // 4), 4, rule_seed, community_seed, test, gamma=gamma, noise=noise,
                             label="rule", lexicon_texts=pool, community=f"{name}-test", sample_seed=1,
                             featurizer=rule_features) if test_out else []
        added = 0
        with store.transaction():
            for r in recs:
                added += store.add_record(r, None, consent=("CC0-1.0", "2020-01-01T00:00:00+00:00", "synth"))
    finally:
        store.close()
    click.echo(f"{name}: {n} synthetic contributors, {added} pairs over {len(train)} real prompts")
    if test_out:
        write_arena(held, test_out)
        click.echo(f"{len(held)} held-out pairs labelled by the planted rule written to {test_out}")


class CachedFeatures:
    """A featurizer reading and filling the node's encrypted embedding cache (texts encoded once)."""

    def __init__(self, featurizer, store):
        self.featurizer, self.dim = featurizer, featurizer.dim
        self.cache = store.embedding_cache(featurizer.name)

    def encode(self, texts):
        return self.featurizer.encode(list(texts), keys=[self.cache.key(t) for t in texts], cache=self.cache)


def write_arena(records, path: Path) -> None:
    """Pairwise Records as Chatbot Arena battles (JSONL): importable and evaluable anywhere."""
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fb = r.feedback[0]
            prompt = r.prompt_text() if len(r.prompt) != 1 else r.prompt[0].text
            fh.write(json.dumps({
                "question_id": r.key, "model_a": r.responses[0].model, "model_b": r.responses[1].model,
                "winner": {"a": "model_a", "b": "model_b", "tie": "tie", "both_bad": "tie (bothbad)"}[fb.data["outcome"]],
                "judge": fb.contributor, "language": r.language or "English",
                "conversation_a": [{"role": "user", "content": prompt}, {"role": "assistant", "content": r.responses[0].text}],
                "conversation_b": [{"role": "user", "content": prompt}, {"role": "assistant", "content": r.responses[1].text}],
            }, ensure_ascii=False) + "\n")
