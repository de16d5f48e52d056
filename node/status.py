"""`cairn node status`: what the node holds, in counts only (no text)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime

from node.consent import contributor_states
from node.node_dir import NodeDir


def node_status(nd: NodeDir, store, now: datetime | None = None) -> dict:
    policy = nd.policy()
    states = Counter(s.status for s in contributor_states(store, policy, now))
    q = store.conn.execute
    languages, models, sources = Counter(), Counter(), Counter()
    for lang, mods, src in q("SELECT language, models, source FROM conversations"):
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
        "conversations": q("SELECT COUNT(*) FROM conversations").fetchone()[0],
        "feedback": dict(q("SELECT kind, COUNT(*) FROM feedback GROUP BY kind ORDER BY kind").fetchall()),
        "sources": dict(sorted(sources.items())),
        "languages": dict(sorted(languages.items())),
        "models": dict(sorted(models.items())),
        "redactions": dict(q("SELECT kind, n FROM redactions ORDER BY kind").fetchall()),
        "imports": q("SELECT COUNT(*) FROM imports").fetchone()[0],
    }
