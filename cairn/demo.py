"""`cairn demo`: the whole story end to end on shipped data, on this machine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from cairn.errors import friendly

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def shared_data_dir() -> Path:
    import os

    return Path(os.environ.get("CAIRN_SHARED_DATA", SHARED))


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True)
@friendly
def demo(out: Path) -> None:
    """Initialise community nodes from shipped data and show what each holds."""
    from node.consent import contributor_states
    from node.ingest import import_file
    from node.node_dir import NodeDir
    from node.status import node_status

    data = shared_data_dir()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    communities = [
        ("tulu-evaluators", data / "tulu1-human-eval" / "eval_annotations_tulu_1.shared.jsonl.gz", {}),
        ("pandalm-annotators", data / "pandalm-human-testset" / "testset-v1.shared.jsonl.gz", {}),
        ("qa-feedback", data / "finegrained-rlhf-qa-feedback" / "dev_feedback.shared.jsonl.gz",
         {"contributor": "qa-feedback:crowd"}),
    ]
    click.echo(click.style("== Cairn demo: community nodes", bold=True))
    for name, path, kw in communities:
        nd = NodeDir.init(out / name, name)
        store = nd.open_store()
        try:
            rep = import_file(store, path, consent="Apache-2.0", consent_at="2024-01-01T00:00:00+00:00", **kw)
            st = node_status(nd, store)
            eligible = sum(s.status == "eligible" for s in contributor_states(store, nd.policy()))
        finally:
            store.close()
        click.echo(f"{name}: imported {rep.records} records ({rep.format}); "
                   f"{st['contributors']['total']} contributors, {eligible} eligible; feedback {json.dumps(st['feedback'])}")
    click.echo(f"node directories in {out}/")
