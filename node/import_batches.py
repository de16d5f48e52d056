"""One logical import, committed in bounded batches: short write locks, all-or-nothing to readers.

A long import must not hold SQLite's write lock for minutes (issue 15, item 8). `run` opens the
import as a row of `imports` in state 'pending'; records are parsed and redacted outside any
transaction, and written BATCH_ROWS at a time (or every BATCH_SECONDS) in a short transaction, so
other writers (a training round's ledger entry, a member's contribution) find the lock free most of
the time and wait at most one batch's writes. Readers never see a pending import: `Store.records()`,
`Store.contributor_ids()`, consent states and status counts leave out its conversations (and so
their feedback) and the contributors it created; consent it gives to known contributors is applied
only by the final commit, which flips the import to 'done' in one short transaction.

Crash safety (ARCHITECTURE.md invariant 9): one import runs at a time, under the store's import
lock (an flock, released by the kernel when the process dies: node/store_db.py). A pending import
found while nobody holds that lock is a crashed one: opening the store deletes its rows
(`recover`), exactly as a failed import deletes its own (`discard`). With `secure_delete` on, the
deleted rows are overwritten.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

from node import store_db

if TYPE_CHECKING:
    from node.store import Store

BATCH_ROWS = 2000
BATCH_SECONDS = 1.0

V4 = """
ALTER TABLE imports ADD COLUMN state TEXT NOT NULL DEFAULT 'done';  -- 'pending' while a batched import runs
ALTER TABLE contributors ADD COLUMN pending_import INTEGER;          -- the unfinished import that added them
CREATE INDEX conversations_import ON conversations(import_id);
CREATE INDEX contributors_pending ON contributors(pending_import);
"""

# A conversation a reader may see: not part of an unfinished import.
VISIBLE = "(import_id IS NULL OR import_id NOT IN (SELECT id FROM imports WHERE state='pending'))"


def pending_id(store: "Store") -> int | None:
    """The pending import this connection is writing, None outside one."""
    return getattr(store, "_pending_import", None)


def pending_ids(store: "Store") -> set[int]:
    """Ids of imports not yet finished (their rows are invisible to readers); none before schema v4."""
    try:
        return {r[0] for r in store.conn.execute("SELECT id FROM imports WHERE state='pending'")}
    except store_db.OperationalError as e:
        if "no such column" in str(e):
            return set()
        raise


def defer_consent(store: "Store", cid: str, consent: tuple[str, str, str]) -> None:
    """Remember consent for a known contributor until the import's final commit, with the consent
    it had then: a consent the operator records meanwhile is newer, and the final commit keeps it."""
    deferred = store._deferred_consent  # type: ignore[attr-defined]
    if cid not in deferred:
        was = store.conn.execute("SELECT consent_licence, consent_at, consent_source FROM contributors WHERE id=?",
                                 (cid,)).fetchone()
        deferred[cid] = (consent, tuple(was) if was else (None, None, None))
    else:
        deferred[cid] = (consent, deferred[cid][1])


def discard(store: "Store", import_id: int) -> None:
    """Delete every row of the unfinished import `import_id` (one transaction)."""
    with store.transaction():
        c = store.conn
        c.execute("DELETE FROM feedback WHERE conversation_id IN (SELECT id FROM conversations WHERE import_id=?)",
                  (import_id,))
        c.execute("DELETE FROM conversations WHERE import_id=?", (import_id,))
        c.execute("DELETE FROM contributors WHERE pending_import=? AND NOT EXISTS"
                  " (SELECT 1 FROM feedback f WHERE f.contributor = contributors.id) AND NOT EXISTS"
                  " (SELECT 1 FROM conversations v WHERE v.owner = contributors.id)", (import_id,))
        c.execute("UPDATE contributors SET pending_import=NULL WHERE pending_import=?", (import_id,))
        c.execute("DELETE FROM imports WHERE id=? AND state='pending'", (import_id,))


def recover(store: "Store") -> None:
    """Roll back imports left pending by a crashed process (nobody holds the import lock)."""
    if not pending_ids(store):
        return
    try:
        with store_db.import_lock(store.path, wait_s=0):
            for import_id in sorted(pending_ids(store)):
                discard(store, import_id)
    except store_db.StoreBusy:
        return  # an import is running: its pending rows are its own


class Batches:
    """One running import's writer: the caller prepares records (parse, redact) outside any
    transaction, asks `due` after each, and writes each batch with `batch()`, a short transaction."""

    def __init__(self, store: "Store", import_id: int):
        self.store, self.import_id = store, import_id
        self.started = time.monotonic()

    def due(self, prepared: int) -> bool:
        """Should the `prepared` records be written now (BATCH_ROWS of them, or BATCH_SECONDS since the last)?"""
        return prepared >= BATCH_ROWS or (prepared > 0 and time.monotonic() - self.started >= BATCH_SECONDS)

    @contextmanager
    def batch(self):
        """A transaction for one batch's writes (the write lock is held only inside it)."""
        with self.store.transaction():
            yield
        self.started = time.monotonic()

    @contextmanager
    def final(self):
        """The final commit: the caller's last writes, deferred consent, the import made visible."""
        with self.store.transaction():
            yield
            _finish(self.store, self.import_id)


@contextmanager
def run(store: "Store", file_name: str, file_sha256: str, fmt: str, imported_at: str):
    """Run one batched import under the import lock; yields its Batches. The caller writes batches
    and ends with `final()`. Any exception (a bad record, a dry run, Ctrl-C) deletes everything it wrote."""
    with store_db.import_lock(store.path):
        for stale in sorted(pending_ids(store)):  # we hold the lock: these were crashed imports
            discard(store, stale)
        with store.transaction():
            import_id = store.conn.execute(
                "INSERT INTO imports(file_name, file_sha256, format, imported_at, records, duplicates, skipped, state)"
                " VALUES(?,?,?,?,0,0,0,'pending')", (file_name, file_sha256, fmt, imported_at)).lastrowid
        # _ensured: the contributors this import has written or deferred (node/record_writer.py)
        store._pending_import, store._deferred_consent, store._ensured = import_id, {}, set()  # type: ignore[attr-defined]
        try:
            yield Batches(store, import_id)
        except BaseException:
            store._pending_import = None  # type: ignore[attr-defined]
            discard(store, import_id)
            raise
        finally:
            store._pending_import, store._deferred_consent, store._ensured = None, {}, set()  # type: ignore[attr-defined]


def _finish(store: "Store", import_id: int) -> None:
    """The final commit's writes: deferred consent, contributors and the import made visible."""
    for cid, ((licence, at, source), was) in store._deferred_consent.items():  # type: ignore[attr-defined]
        store.conn.execute("UPDATE contributors SET consent_licence=?, consent_at=?, consent_source=? WHERE id=?"
                           " AND consent_licence IS ? AND consent_at IS ? AND consent_source IS ?",
                           (licence, at, source, cid, *was))
    store.conn.execute("UPDATE contributors SET pending_import=NULL WHERE pending_import=?", (import_id,))
    store.conn.execute("UPDATE imports SET state='done' WHERE id=?", (import_id,))
