"""Withdrawal: `Store.forget` deletes everything of one person and tombstones every id of theirs
(ARCHITECTURE.md invariant 8), then scrubs the file and its WAL so no freed page keeps their text.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from node import links, store_db
from node.store_cache import forget_features

if TYPE_CHECKING:
    from node.store import Store


def forget(self: "Store", contributor: str) -> dict:
    """Delete everything of the person `contributor` names (any of their linked ids) and tombstone
    every id of theirs; the file is then vacuumed."""
    from node.store import StoreError, utcnow

    contributor = links.resolve(self, contributor)
    with self.transaction():
        links.forget_aliases(self, contributor)
        known = self.conn.execute("SELECT 1 FROM contributors WHERE id=?", (contributor,)).fetchone()
        if not known and not self.is_withdrawn(contributor):
            raise StoreError(f"no contributor {contributor!r} in this node")
        owned = [r[0] for r in self.conn.execute("SELECT id FROM conversations WHERE owner=?", (contributor,))]
        texts = set()
        for cid in owned:
            texts |= _texts_of(self, cid)
        n_fb = self.conn.execute("DELETE FROM feedback WHERE contributor=?", (contributor,)).rowcount
        n_conv = self.conn.execute("DELETE FROM conversations WHERE owner=?", (contributor,)).rowcount
        # Conversations that were no member's text and now have no feedback left are removed too.
        orphans = [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM conversations c WHERE owner IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.conversation_id = c.id)"
            )
        ]
        for cid in orphans:
            texts |= _texts_of(self, cid)
            self.conn.execute("DELETE FROM conversations WHERE id=?", (cid,))
        forget_features(self, texts)  # cached vectors of deleted text, and every batch that held their rows
        self.conn.execute("DELETE FROM contributors WHERE id=?", (contributor,))
        self.conn.execute(
            "INSERT OR IGNORE INTO withdrawn(id_mac, withdrawn_at) VALUES(?, ?)",
            (self.cipher.ident("contributor", contributor), utcnow()),
        )
        self.meta_set("scrub_pending", utcnow())  # until the WAL is emptied (a busy VACUUM leaves it for the next open)
    self.scrub()
    return {"feedback_deleted": n_fb, "conversations_deleted": n_conv + len(orphans)}

def _texts_of(self: "Store", conv_id: int) -> set[str]:
    uid, body = self.conn.execute("SELECT uid, body FROM conversations WHERE id=?", (conv_id,)).fetchone()
    doc = json.loads(self.cipher.open(body, b"conv:" + uid.encode()))
    return {t for _, t in doc["prompt"]} | set(doc["responses"])


def scrub(self: "Store") -> bool:
    """Rewrite the database file and empty the WAL so no freed page keeps old bytes. A reader in
    the middle of a transaction keeps old frames alive (the checkpoint reports busy): then the
    scrub is remembered (meta `scrub_pending`) and redone when the store next opens; False."""
    self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store_db.retry(lambda: self.conn.execute("VACUUM"), self.path)
    from node.store import utcnow

    busy = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    with self.transaction():
        if busy:
            self.meta_set("scrub_pending", utcnow())
        else:
            self.conn.execute("DELETE FROM meta WHERE key='scrub_pending'")
    if not busy:
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return not busy


def finish_scrub(self: "Store") -> None:
    """At open: empty the WAL that a reader kept full during a withdrawal's scrub (the VACUUM itself
    was done then); a short wait only, so opening never stalls behind a reader: else, next open."""
    self.conn.execute("PRAGMA busy_timeout = 200")
    try:
        busy = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    finally:
        self.conn.execute(f"PRAGMA busy_timeout = {int(store_db.BUSY_TIMEOUT_S * 1000)}")
    if not busy:
        with self.transaction():
            self.conn.execute("DELETE FROM meta WHERE key='scrub_pending'")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
