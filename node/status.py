"""What a node holds and what it has spent: `cairn node status`, `budget`, `ledger` and `report`.

Counts only, never text (ARCHITECTURE.md invariant 1); the budget and the report are read from the
node's signed ledger, whose entries were committed before their release (invariant 2).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

from node.consent import contributor_states
from node.import_batches import VISIBLE
from node.node_dir import NodeDir
from node.releases import open_ledger


def node_status(nd: NodeDir, store, now: datetime | None = None) -> dict:
    """Counts of contributors (by consent state), conversations, feedback, sources, languages, models."""
    policy = nd.policy()
    states = Counter(s.status for s in contributor_states(store, policy, now))
    q = store.conn.execute
    languages, models, sources = Counter(), Counter(), Counter()
    for lang, mods, src in q(f"SELECT language, models, source FROM conversations WHERE {VISIBLE}"):
        languages[lang or "unknown"] += 1
        sources[src] += 1
        for m in json.loads(mods):
            if m:
                models[m] += 1
    return {
        "node": nd.name,
        "node_id": nd.node_id,
        "contributors": {
            "total": sum(states.values()),
            "eligible": states["eligible"],
            "waiting": states["waiting"],
            "no_consent": states["no_consent"] + states["licence_not_accepted"],
            "withdrawn": q("SELECT COUNT(*) FROM withdrawn").fetchone()[0],
        },
        "conversations": q(f"SELECT COUNT(*) FROM conversations WHERE {VISIBLE}").fetchone()[0],
        "feedback": dict(q(f"SELECT kind, COUNT(*) FROM feedback WHERE conversation_id IN (SELECT id FROM conversations WHERE {VISIBLE})"
                          " GROUP BY kind ORDER BY kind").fetchall()),
        "sources": dict(sorted(sources.items())),
        "languages": dict(sorted(languages.items())),
        "models": dict(sorted(models.items())),
        "redactions": dict(q("SELECT kind, n FROM redactions ORDER BY kind").fetchall()),
        "imports": q("SELECT COUNT(*) FROM imports WHERE state='done'").fetchone()[0],
    }


def privacy_budget(nd: NodeDir) -> dict:
    """Epsilon spent and remaining at the policy's delta, by kind and round (privacy/reports/node_report.py)."""
    from privacy.reports.node_report import budget_summary

    with nd.open_store() as store:
        return budget_summary(open_ledger(nd, store), nd.policy())


def export_ledger(nd: NodeDir, path: Path) -> int:
    """Write the signed ledger to `path` (JSON for .json, else protobuf binary); the number of entries."""
    with nd.open_store() as store:
        ledger = open_ledger(nd, store)
        ledger.export_to(path, fmt="json" if Path(path).suffix == ".json" else "pb")
        return len(ledger)


def write_privacy_report(nd: NodeDir, out: Path | None = None) -> Path:
    """report.md, report.html and epsilon.png in `out` (default DIR/reports); returns the folder."""
    from privacy.reports.node_report import plot_epsilon, render_html, render_markdown

    out = Path(out) if out is not None else nd.path / "reports"
    out.mkdir(parents=True, exist_ok=True)
    summary = privacy_budget(nd)
    (out / "report.md").write_text(render_markdown(summary), encoding="utf-8")
    (out / "report.html").write_text(render_html(summary), encoding="utf-8")
    plot_epsilon(summary, out / "epsilon.png")
    return out
