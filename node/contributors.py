"""What the node holds about one contributor (`cairn node contributor DIR --id ID`).

Counts, consent state and sources only, never text (ARCHITECTURE.md invariant 1); a withdrawn
contributor is reported as such, with nothing held (invariant 8).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

from node.consent import classify
from node.import_batches import VISIBLE
from node.store import StoreError


def describe(store, policy, cid: str) -> dict:
    """Counts, consent state and sources of contributor `cid` (no text); StoreError when unknown.
    `cid` may be any of a person's linked ids (node/links.py)."""
    from node.links import aliases

    asked, cid = cid, store.resolve(cid)
    row = store.conn.execute(
        "SELECT id, consent_licence, consent_at, first_seen, consent_source FROM contributors WHERE id=? AND pending_import IS NULL", (cid,)
    ).fetchone()
    if row is None:
        if store.is_withdrawn(asked):
            return {"id": asked, "status": "withdrawn", "held": "nothing (text and feedback deleted)"}
        raise StoreError(f"no contributor {cid!r} in this node")
    state = classify(row[:3], policy, datetime.now(timezone.utc))
    q = store.conn.execute
    kinds = Counter(dict(q(f"SELECT f.kind, COUNT(*) FROM feedback f JOIN conversations c ON c.id = f.conversation_id"
                       f" WHERE f.contributor=? AND {VISIBLE} GROUP BY f.kind", (cid,)).fetchall()))
    sources = Counter()
    for (src,) in q(
        f"SELECT c.source FROM feedback f JOIN conversations c ON c.id = f.conversation_id WHERE f.contributor=? AND {VISIBLE}", (cid,)
    ):
        sources[src] += 1
    models = Counter()
    for (mods,) in q(f"SELECT models FROM conversations WHERE owner=? AND {VISIBLE}", (cid,)):
        models.update(m for m in json.loads(mods) if m)
    return {
        "id": cid,
        "linked_ids": aliases(store, cid),
        "status": state.status,
        "consent": {"licence": row[1], "at": row[2], "source": row[4], "eligible_from": state.eligible_from},
        "first_seen": row[3],
        "conversations_owned": q(f"SELECT COUNT(*) FROM conversations WHERE owner=? AND {VISIBLE}", (cid,)).fetchone()[0],
        "feedback": dict(kinds),
        "sources": dict(sources),
        "models_in_own_conversations": dict(models),
    }
