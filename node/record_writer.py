"""Writing one import batch of records in a few statements (issue 16: import at >= 10,000 rows/s).

`write_batch(store, records, import_id, consent)` stores the records of one batch of a pending import
(node/import_batches.py) exactly as `Store.add_record` would, one after the other, but with a
handful of statements per batch instead of about fourteen per record: the tombstones and the links
are read once per batch (inside the batch's transaction, so a withdrawal or a link made by another
process between two batches is seen by the next), each person's keyed id is computed once, the
duplicate check is one query per chunk of uids, and contributors, conversations and feedback go in
with `executemany`. Conversation and feedback ids are assigned as SQLite would (the largest plus
one: the batch holds the write lock), so each sealed feedback text is bound to its row id in the
same insert. The same rules apply record by record: the ownership rule (node/ownership.py), linked
ids stored under their person's canonical id and tombstones of the schema-v1 "source:id" form
(node/links.py), withdrawn people's parts dropped (ARCHITECTURE.md invariant 8), a record whose
every judge has withdrawn dropped whole, consent recorded or deferred as `Store.ensure_contributor`
does. `tests/node/test_record_writer.py` checks that a batch leaves the very rows `add_record` does.
"""

from __future__ import annotations

import json
from dataclasses import replace

from node import import_batches
from node.ownership import OwnershipError, check_ownership
from node.schema import Record

CHUNK = 500  # uids per IN (...) query, under SQLite's bound on parameters
# json.dumps(x, ensure_ascii=False) and json.dumps(x, sort_keys=True), with their encoders built once
_BODY = json.JSONEncoder(ensure_ascii=False).encode
_SORTED = json.JSONEncoder(sort_keys=True).encode
_PLAIN = json.JSONEncoder().encode

ADDED, DUPLICATE, WITHDRAWN = "added", "duplicate", "withdrawn"


class Snapshot:
    """Tombstones, links and keyed ids as they are inside one batch's transaction."""

    def __init__(self, store):
        self.store = store
        self.tombs = {r[0] for r in store.conn.execute("SELECT id_mac FROM withdrawn")}
        self.links = dict(store.conn.execute("SELECT alias, canonical FROM contributor_links").fetchall())
        self._macs: dict[str, str] = {}

    def withdrawn(self, cid: str) -> bool:
        """`Store.is_withdrawn`, from the batch's tombstones."""
        if not self.tombs:
            return False
        mac = self._macs.get(cid)
        if mac is None:
            mac = self._macs[cid] = self.store.cipher.ident("contributor", cid)
        return mac in self.tombs

    def resolve(self, cid: str) -> str:
        """node/links.py `resolve`, from the batch's links."""
        return self.links.get(cid, cid)

    def canonical(self, rec: Record) -> Record:
        """node/links.py `canonical_record`, from the batch's links and tombstones."""
        if not self.links and not self.tombs:
            return rec  # no alias to resolve, no "source:id" tombstone to find

        def canon(cid: str) -> str:
            c = self.links.get(cid, cid)
            if c == cid and self.tombs:
                legacy = f"{rec.source}:{cid}"
                return legacy if self.withdrawn(legacy) else c
            return c

        owner = canon(rec.owner) if rec.owner else rec.owner
        changed = owner != rec.owner
        feedback = []
        for f in rec.feedback:
            c = canon(f.contributor)
            changed |= c != f.contributor
            feedback.append(replace(f, contributor=c) if c != f.contributor else f)
        return replace(rec, owner=owner, feedback=feedback) if changed else rec


def existing_uids(store, uids: list[str]) -> set[str]:
    """The uids among `uids` that are stored already."""
    found: set[str] = set()
    for i in range(0, len(uids), CHUNK):
        part = uids[i:i + CHUNK]
        found.update(r[0] for r in store.conn.execute(
            f"SELECT uid FROM conversations WHERE uid IN ({','.join('?' * len(part))})", part))
    return found


def write_batch(store, records: list[tuple[Record, str]], import_id: int,
                consent: tuple[str, str, str] | None) -> tuple[Snapshot, list]:
    """Store (record, uid) pairs (uid = `cipher.ident("record", source, key)`) inside the caller's batch
    transaction of the pending import `import_id`. Returns the batch's Snapshot and, per record, ADDED,
    DUPLICATE, WITHDRAWN or the OwnershipError that refused it (nothing of that record is written)."""
    if import_batches.pending_id(store) != import_id:
        raise ValueError("write_batch runs inside its pending import (node/import_batches.py run)")
    from node.store import utcnow

    snap = Snapshot(store)
    conn, cipher = store.conn, store.cipher
    stored = existing_uids(store, [uid for _, uid in records])
    ensured: set[str] = store.__dict__.setdefault("_ensured", set())  # reset by import_batches.run
    now = utcnow()
    conv_id = conn.execute("SELECT COALESCE(MAX(id), 0) FROM conversations").fetchone()[0]
    fb_id = conn.execute("SELECT COALESCE(MAX(id), 0) FROM feedback").fetchone()[0]
    people: list[str] = []  # contributors to ensure, in the order add_record would
    convs: list[list] = []  # rows, their sealed meta and body filled in after the loop
    fbs: list[list] = []  # rows, their sealed free text filled in after the loop
    plain: list[tuple[bytes, bytes]] = []  # (plaintext, context) of each conversation's meta, then body
    texts: list[tuple[int, tuple[bytes, bytes]]] = []  # (row in fbs, (plaintext, context)) of feedback free text
    outcomes: list = []
    for rec, uid in records:
        rec = snap.canonical(rec)
        try:
            check_ownership(rec)
        except OwnershipError as e:
            outcomes.append(e)
            continue
        if uid in stored:
            outcomes.append(DUPLICATE)
            continue
        if rec.owner and snap.withdrawn(rec.owner):
            outcomes.append(WITHDRAWN)
            continue
        feedback = [f for f in rec.feedback if not snap.withdrawn(f.contributor)]
        if not feedback and rec.feedback and not rec.owner:
            outcomes.append(WITHDRAWN)
            continue
        for cid in sorted({f.contributor for f in feedback} | ({rec.owner} if rec.owner else set())):
            if cid not in ensured:
                ensured.add(cid)
                people.append(cid)
        stored.add(uid)
        conv_id += 1
        body = _BODY({"prompt": [[m.role, m.text] for m in rec.prompt], "responses": [r.text for r in rec.responses]}
                     ).encode("utf-8")
        ub = uid.encode()
        plain.append((_SORTED(rec.meta).encode("utf-8") if rec.meta else b"{}", b"meta:" + ub))
        plain.append((body, b"conv:" + ub))
        convs.append([conv_id, uid, rec.source, rec.owner, rec.language, rec.timestamp, import_id,
                      _PLAIN([r.model for r in rec.responses]), None, None])
        for f in feedback:
            fb_id += 1
            fbs.append([fb_id, conv_id, f.contributor, f.kind, _SORTED(f.data), None, f.timestamp])
            if f.text is not None:
                texts.append((len(fbs) - 1, (f.text.encode("utf-8"), b"feedback:%d" % fb_id)))
        outcomes.append(ADDED)
    sealed = cipher.seal_many(plain + [item for _, item in texts])  # the batch's nonces in one draw
    for i, row in enumerate(convs):
        row[8], row[9] = sealed[2 * i], sealed[2 * i + 1]
    for (j, _), blob in zip(texts, sealed[len(plain):]):
        fbs[j][5] = blob
    _ensure(store, people, now, import_id, consent)
    conn.executemany("INSERT INTO conversations(id, uid, source, owner, language, created_at, import_id, models, meta, body)"
                     " VALUES(?,?,?,?,?,?,?,?,?,?)", convs)
    conn.executemany("INSERT INTO feedback(id, conversation_id, contributor, kind, data, text, created_at)"
                     " VALUES(?,?,?,?,?,?,?)", fbs)
    return snap, outcomes


def _ensure(store, people: list[str], now: str, import_id: int, consent: tuple[str, str, str] | None) -> None:
    """`Store.ensure_contributor` for each new person of this import: new ones inserted (hidden until the
    import is done) with the consent given, known ones' consent deferred to the final commit."""
    known: set[str] = set()
    for i in range(0, len(people), CHUNK):
        part = people[i:i + CHUNK]
        known.update(r[0] for r in store.conn.execute(
            f"SELECT id FROM contributors WHERE id IN ({','.join('?' * len(part))})", part))
    licence, at, source = consent if consent else (None, None, None)
    store.conn.executemany(
        "INSERT INTO contributors(id, first_seen, pending_import, consent_licence, consent_at, consent_source)"
        " VALUES(?,?,?,?,?,?)", [(cid, now, import_id, licence, at, source) for cid in people if cid not in known])
    if consent:
        for cid in people:
            if cid in known:
                import_batches.defer_consent(store, cid, consent)
