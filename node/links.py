"""One person, one unit: contributor ids that name the same person (issue 10, finding 6).

The unit of privacy is the person (ARCHITECTURE.md invariant 4). A person may reach a node under two
ids (an email in one export, a handle in another); the operator joins them with `cairn node link DIR
ID1 ID2`. Linking REWRITES the store: every row of the second id (its conversations, its feedback) now
carries the first id's canonical id, and the alias is remembered in `contributor_links` so that later
imports of the alias land on the same person (`canonical_record`, called by `Store.add_record`). Hence
everything that groups by contributor (pairs and their bounding: node/pairs.py; query bounding:
node/queries.py; eligibility: node/consent.py; `forget`) sees one id, with no resolution step to
forget. `forget` takes any of a person's ids, deletes everything and tombstones every alias, so a
re-import under any of them is dropped (invariant 8).

Merging two ids merges their consent conservatively: the person is consenting only if both ids were,
from the later of the two times (the waiting period runs from it), under that consent's licence.

Schema v2 (`migrate_v2`) creates the link table and moves existing stores to the new id convention:
ids were "format:value" ("sharelm:member-010"); they become "member-010", and two formats' copies of one
id become one person. Merging is the safe direction (one unit too large only bounds more strictly);
splitting one person in two would under-count their privacy loss. The old ids stay as aliases, and
tombstones written under old ids still drop re-imports (`canonical_record` checks "source:id").
"""

from __future__ import annotations

from dataclasses import replace

from node.schema import Record

V2 = "CREATE TABLE contributor_links(alias TEXT PRIMARY KEY, canonical TEXT NOT NULL)"


class LinkError(ValueError):
    """Two ids cannot be linked as asked (unknown, withdrawn)."""


def resolve(store, cid: str) -> str:
    """The canonical id of `cid` (itself unless it was linked to another)."""
    row = store.conn.execute("SELECT canonical FROM contributor_links WHERE alias=?", (cid,)).fetchone()
    return row[0] if row else cid


def aliases(store, canonical: str) -> list[str]:
    """Every id linked to `canonical` (not `canonical` itself)."""
    return [r[0] for r in store.conn.execute(
        "SELECT alias FROM contributor_links WHERE canonical=? ORDER BY alias", (canonical,))]


def _known(store, cid: str) -> bool:
    return store.conn.execute("SELECT 1 FROM contributors WHERE id=?", (cid,)).fetchone() is not None


def _merge(conn, keep: str, gone: str) -> None:
    """Move every row of `gone` to `keep` and remember `gone` as an alias (inside a transaction)."""
    cols = "id, first_seen, consent_licence, consent_at, consent_source"
    rows = {r[0]: r for r in conn.execute(f"SELECT {cols} FROM contributors WHERE id IN (?, ?)", (keep, gone))}
    k, g = rows.get(keep), rows.get(gone)
    if g is not None and k is None:
        conn.execute(f"INSERT INTO contributors({cols}) VALUES(?,?,?,?,?)", (keep, *g[1:]))
    elif g is not None and k is not None:
        first = min(k[1], g[1])
        if k[2] and g[2]:  # both consented: from the later time, under that consent
            later = k if k[3] >= g[3] else g
            consent = (later[2], later[3], f"{later[4]}; linked {gone} -> {keep}")
        else:
            consent = (None, None, None)
        conn.execute("UPDATE contributors SET first_seen=?, consent_licence=?, consent_at=?, consent_source=? WHERE id=?",
                     (first, *consent, keep))
    conn.execute("UPDATE feedback SET contributor=? WHERE contributor=?", (keep, gone))
    conn.execute("UPDATE conversations SET owner=? WHERE owner=?", (keep, gone))
    conn.execute("UPDATE contributor_links SET canonical=? WHERE canonical=?", (keep, gone))
    conn.execute("INSERT OR REPLACE INTO contributor_links(alias, canonical) VALUES(?, ?)", (gone, keep))
    if g is not None:
        conn.execute("DELETE FROM contributors WHERE id=?", (gone,))


def link(store, first: str, second: str) -> dict:
    """Join two ids of one person: `second` (and its aliases) becomes an alias of `first`'s canonical id.

    Either id may be not yet imported (the link then applies to later imports), not both; a withdrawn
    id cannot be linked (forget the other id too if it is the same person)."""
    for cid in (first, second):
        if not cid or not cid.strip():
            raise LinkError("contributor ids must not be empty")
        if not _known(store, resolve(store, cid)) and store.is_withdrawn(cid):
            raise LinkError(f"contributor {cid!r} has withdrawn; if {first!r} and {second!r} are one person, "
                            f"forget the other id too (cairn node forget)")
    keep, gone = resolve(store, first), resolve(store, second)
    if not _known(store, keep) and not _known(store, gone):
        raise LinkError(f"neither {first!r} nor {second!r} is a contributor of this node")
    if not _known(store, keep):
        keep, gone = gone, keep
    if keep == gone:
        return {"canonical": keep, "aliases": aliases(store, keep), "changed": False}
    with store.transaction() as conn:
        _merge(conn, keep, gone)
    return {"canonical": keep, "aliases": aliases(store, keep), "changed": True}


def canonical_record(store, rec: Record) -> Record:
    """`rec` with each contributor id replaced by its canonical id (an import of a linked alias)."""
    def canon(cid: str) -> str:
        c = resolve(store, cid)
        legacy = f"{rec.source}:{cid}"  # withdrawn while ids carried their format (schema v1)
        return legacy if c == cid and store.is_withdrawn(legacy) else c

    owner = canon(rec.owner) if rec.owner else rec.owner
    feedback = [replace(f, contributor=canon(f.contributor)) for f in rec.feedback]
    if owner == rec.owner and all(a.contributor == b.contributor for a, b in zip(feedback, rec.feedback)):
        return rec
    return replace(rec, owner=owner, feedback=feedback)


def forget_aliases(store, canonical: str) -> list[str]:
    """Tombstone every alias of `canonical` and drop its links (inside `Store.forget`'s transaction)."""
    from node.store import utcnow

    names = aliases(store, canonical)
    for alias in names:
        store.conn.execute("INSERT OR IGNORE INTO withdrawn(id_mac, withdrawn_at) VALUES(?, ?)",
                           (store.cipher.ident("contributor", alias), utcnow()))
    store.conn.execute("DELETE FROM contributor_links WHERE canonical=?", (canonical,))
    return names


def migrate_v2(store) -> None:
    """Schema v2: the link table, and "format:value" ids become "value" (module docstring)."""
    conn = store.conn
    conn.execute(V2)
    formats = {r[0] for r in conn.execute("SELECT DISTINCT source FROM conversations")}
    for (cid,) in conn.execute("SELECT id FROM contributors ORDER BY id").fetchall():
        fmt, sep, bare = cid.partition(":")
        if sep and fmt in formats and bare.strip() and bare == bare.strip():
            _merge(conn, resolve(store, bare), cid)
