"""`cairn demo`: the whole story end to end on shipped data, on this machine.

1. Three communities import their members' real feedback (../shared/data): records land
   encrypted, PII redacted, contributors with consent; one member withdraws.
   These communities share statistics only; their policies release no model updates.
2. Three more communities hold thousands of synthetic contributors whose preferences over real
   text follow a planted rule (so accuracy is measurable), with held-out test pairs; their
   policies release model updates only.
   A seventh community, a synthetic arena, has thousands of contributors judging battles between
   models of planted strength (so the leaderboard's truth is known); it shares battle counts only.
3. A federation over all seven nodes (Flower Simulation Engine, SecAgg+): nodes too small for their
   own policy refuse to train, the others run user-level DP-SGD, every release is ledgered first.
4. The bundle: model, ledgers, manifest; held-out accuracy and each node's epsilon.
5. The DP leaderboard with intervals, and its rank correlation with the planted strengths.
6. An auditor, who pinned the coordinator's key and the communities' node ids, verifies the
   bundle (signatures, chains, lineage, caps, epsilon recomputed) and writes a report.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import click

from cairn.errors import friendly
from model.presets import PRESETS, preset_config

ARENA_MODELS = 8  # models of planted strength in the synthetic arena community ...
ARENA_CONTRIBUTORS = 3000  # ... and its judges: ~400 battles per model pair, far above the noise threshold
# The models the shipped communities judged: the coordinator asks about these public names only.
DEMO_MODELS = ["tulu_65B", "tulu_7B", "tulu_human_only_65B", "chatgpt",
               "bloom-7b", "cerebras-gpt-6.7B", "llama-7b", "opt-7b", "pythia-6.9b"]


def _title(text: str) -> None:
    click.echo("")
    click.echo(click.style(f"== {text}", bold=True))


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True)
@click.option("--contributors", default=2000, show_default=True, help="Synthetic contributors per community.")
@click.option("--rounds", default=3, show_default=True)
@click.option("--features", type=click.Choice(list(PRESETS)), default="minilm", show_default=True)
@friendly
def demo(out: Path, contributors: int, rounds: int, features: str) -> None:
    """The whole story on shipped data: import, consent, withdrawal, federation, bundle."""
    from dataclasses import replace

    from click.testing import CliRunner

    from cairn.cli import cli
    from coordinator.server_app import FederationConfig
    from coordinator.simulation import run_simulation_federation
    from node.client_app import app as client_app
    from node.node_dir import NodeDir
    from protos.bundle import read_rounds
    from protos.wire import PUBLIC_DIMENSIONS, PUBLIC_LANGUAGES, QUERY_KINDS

    def cairn(*args: object) -> str:
        res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
        if res.exit_code != 0:
            raise click.ClickException(f"cairn {' '.join(map(str, args))} failed:\n{res.output}")
        return res.stdout  # stderr (progress bars) stays out of parsed output

    t0 = time.time()
    from node.synth import default_data_dir

    data = default_data_dir()
    if not data.is_dir():
        raise click.ClickException(f"shipped data not found at {data} (set CAIRN_SHARED_DATA)")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    consent = ["--consent", "Apache-2.0", "--consent-at", "2024-01-01T00:00:00+00:00", "--consent-by", "demo operator"]

    _title("1. Communities import their members' feedback (encrypted at rest, PII redacted)")
    real = [
        ("tulu-evaluators", data / "tulu1-human-eval" / "eval_annotations_tulu_1.shared.jsonl.gz", []),
        ("pandalm-annotators", data / "pandalm-human-testset" / "testset-v1.shared.jsonl.gz", []),
        ("qa-feedback", data / "finegrained-rlhf-qa-feedback" / "dev_feedback.shared.jsonl.gz",
         ["--contributor", "qa-feedback:crowd"]),
    ]
    # These communities share statistics only (their policies do not release model updates), and
    # accept releases drawn on as few as 3 members, by an exact threshold their policy makes public
    # (min_contributors_noise = 0); qa-feedback keeps the default: at least 20, by a noisy count.
    stats_only = QUERY_KINDS
    for name, path, extra in real:
        cairn("node", "init", out / name, "--name", name)
        if name != "qa-feedback":
            nd = NodeDir(out / name)
            replace(nd.policy(), min_contributors=3, min_contributors_noise=0.0, allowed_releases=stats_only,
                    max_query_epsilon=2.0).save(nd.policy_path)
        cairn("node", "import", out / name, path, *extra, *consent)
        st = json.loads(cairn("node", "status", out / name, "--json"))
        click.echo(f"{name}: {st['conversations']} conversations, feedback {st['feedback']}, "
                   f"{st['contributors']['eligible']}/{st['contributors']['total']} contributors eligible, "
                   f"redactions {st['redactions'] or 'none'}")
    cairn("node", "forget", out / "tulu-evaluators", "--contributor", "ja")  # the id the member gives
    st = json.loads(cairn("node", "status", out / "tulu-evaluators", "--json"))
    click.echo(f"tulu-evaluators: contributor ja withdrew -> {st['conversations']} conversations left, "
               f"{st['contributors']['withdrawn']} withdrawn (their text is gone from the store file)")

    _title(f"2. Three communities of {contributors} synthetic contributors (planted preferences over real text)")
    click.echo(f"(each node encodes the shipped texts once with {features} features, cached encrypted in its store)")
    synthetic = []
    for i in (1, 2, 3):
        name = f"community-{i}"
        cairn("node", "init", out / name, "--name", name)
        nd = NodeDir(out / name)  # these communities contribute to the model only
        replace(nd.policy(), allowed_releases=("train",)).save(nd.policy_path)
        click.echo(cairn("node", "synth", out / name, "--contributors", contributors, "--community-seed", i,
                         "--rule-space", features, "--test-out", out / f"{name}-test.jsonl", "--data", data).strip())
        synthetic.append(name)
    arena = "arena-judges"
    cairn("node", "init", out / arena, "--name", arena)
    nd = NodeDir(out / arena)  # shares battle counts only
    replace(nd.policy(), allowed_releases=("battle_counts",), max_query_epsilon=2.0).save(nd.policy_path)
    click.echo(cairn("node", "synth", out / arena, "--contributors", ARENA_CONTRIBUTORS, "--arena-models", ARENA_MODELS,
                     "--community-seed", 7, "--arena-truth", out / "arena-truth.json", "--data", data).strip())
    planted = json.loads((out / "arena-truth.json").read_text())["planted_strengths"]

    _title(f"3. Federation: {rounds} rounds of user-level DP-SGD under SecAgg+ ({features} features), then DP statistics")
    nodes = [out / n for n, _, _ in real] + [out / n for n in synthetic] + [out / arena]
    cfg = FederationConfig(out=str(out / "bundle"), rounds=rounds, featurizer=preset_config(features), secagg=True,
                           epsilon=8.0, federation_id=f"demo-{int(time.time())}",
                           queries=[k for k in QUERY_KINDS if k != "policy_objections"],  # no governance here
                           query_epsilon=2.0, query_models=DEMO_MODELS + sorted(planted),
                           # public lists given, so the demo asks no private key selection (README)
                           query_languages=list(PUBLIC_LANGUAGES), query_dimensions=list(PUBLIC_DIMENSIONS),
                           coordinator_key=str(out / "coordinator" / "coordinator.key"))
    click.echo(f"(Flower Simulation Engine: {len(nodes)} virtual SuperNodes; a few minutes on two cores)")
    summary = run_simulation_federation(nodes, cfg, client_app)
    rounds_log = read_rounds(out / "bundle").rounds
    for r in rounds_log:
        click.echo(f"round {r.round}: {len(r.contributors)} nodes' updates summed under SecAgg+; "
                   f"refused: {len(r.refused)}")
    for why in sorted(set(w for r in rounds_log for w in r.refused.values())):
        click.echo(f"  refusal: {why}")

    _title("4. The bundle: held-out accuracy and each node's privacy spend")
    for name in synthetic:
        res = json.loads(cairn("model", "eval", "--model", out / "bundle", "--data", out / f"{name}-test.jsonl", "--json"))
        click.echo(f"{name}: held-out accuracy {res['accuracy']:.3f} on {res['pairs']} pairs (planted rule; chance 0.5)")
    for n in sorted(summary["nodes"], key=lambda n: n["name"]):
        click.echo(f"{n['name']}: epsilon {n['epsilon']:.3f} at delta {n['delta']:g} ({n['accountant'] or 'nothing released'})")
    _title("5. DP leaderboard (Bradley-Terry over noised battle counts, 95% intervals include the DP noise)")
    click.echo(cairn("leaderboard", out / "bundle", "--coordinator-key", out / "coordinator" / "coordinator.key.pub").rstrip())
    board = json.loads((out / "bundle" / "leaderboard.json").read_text())["pooled"] or {"models": []}
    ranked = {m["model"]: m["rating"] for m in board["models"] if m["model"] in planted}
    if len(ranked) >= 2:
        from coordinator.leaderboard import kendall_tau

        tau = kendall_tau(ranked, {m: planted[m] for m in ranked})
        click.echo(f"arena: {len(ranked)} of {len(planted)} models ranked; Kendall tau {tau:.2f} with the planted strengths")
    else:
        raise click.ClickException("the arena's models did not reach the leaderboard")
    click.echo("(the real Tulu and PandaLM judges are 16 and 3 people: under user-level DP their model pairs stay\n"
               " below the noise threshold; bench/leaderboard.py measures Kendall tau by epsilon on both kinds of data)")
    _title("6. An auditor verifies the bundle, trusting nobody")
    # what the auditor obtained from the parties themselves: the coordinator's published key and
    # each community's node id (SHA-256 of its ledger key)
    pins = ["--coordinator-key", str(out / "coordinator" / "coordinator.key.pub")]
    for d in nodes:
        pins += ["--trust-node", NodeDir(d).node_id]
    heads = []  # and each community's own signed head for this run, as it publishes it (`cairn node head`)
    (out / "heads").mkdir(exist_ok=True)
    for d in nodes:
        cairn("node", "head", d, "--run", cfg.federation_id, "--out", out / "heads" / f"{d.name}.json")
        heads += ["--node-head", str(out / "heads" / f"{d.name}.json")]
    click.echo(f"(pinned: the coordinator's key and the {len(nodes)} communities' node ids; each node's own signed head)")
    res = CliRunner().invoke(cli, ["audit", "verify", str(out / "bundle"), *pins, *heads], catch_exceptions=False)
    lines = res.output.rstrip().splitlines()
    click.echo("\n".join(lines[:3] + ["  ..."] + lines[-3:]) if len(lines) > 8 else res.output.rstrip())
    if res.exit_code != 0:
        raise click.ClickException("the demo bundle did not verify")
    cairn("audit", "report", out / "bundle", "--out", out / "audit-report.html", *pins)
    click.echo(f"audit report: {out / 'audit-report.html'}")
    click.echo(f"\nbundle: {out / 'bundle'} (manifest.json lists every file's SHA-256 and every node's ledger)")
    click.echo(f"done in {time.time() - t0:.0f} s")
