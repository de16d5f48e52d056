"""The node's store: one SQLCipher database per node directory (WAL, versioned migrations).

The whole file is encrypted (node/store_db.py); inside it, conversation text, free-text feedback
and metadata are sealed again with AES-GCM (node/crypto.py: defence in depth), while what a query
needs without text (kinds, outcomes, ratings, model names, languages) is in columns. Dedup keys are
keyed HMACs, never text. `secure_delete` is on, so deleted rows are overwritten; `forget` also
VACUUMs and truncates the WAL so a withdrawn contributor's text is gone from the file.

Readers stream: `records()` reads and decrypts in bounded batches, and ignores rows of an import
that has not finished (node/import_batches.py: a long import commits in batches, all-or-nothing to
readers; a crashed one is rolled back when the store opens).

Protects ARCHITECTURE.md invariants 1 (text sealed at rest), 8 (withdrawal deletes) and 9 (every
write is one transaction, every import all-or-nothing: a failure leaves the store as it was).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from node import import_batches, links, store_db
from node.crypto import StoreCipher
from node.ownership import check_ownership
from node.schema import Feedback, Message, Record, Response
from node.store_cache import EmbeddingCache, FeatureBatches, _statements
from node.store_db import StoreBusy

__all__ = ["DB_NAME", "MIGRATIONS", "EmbeddingCache", "FeatureBatches", "Store", "StoreBusy", "StoreError", "utcnow"]

DB_NAME = "store.sqlite"


def utcnow() -> str:
    """Now, UTC, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# Each migration (SQL, or a function of the Store) moves the schema from version i to i+1; never edit one that shipped.
MIGRATIONS: list[str | Callable[["Store"], None]] = [
    # v1
    """
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE contributors(
        id TEXT PRIMARY KEY,                -- pseudonymous id from the source or --contributor
        first_seen TEXT NOT NULL,
        consent_licence TEXT,               -- e.g. CC-BY-4.0; NULL = no consent recorded
        consent_at TEXT,                    -- ISO 8601 UTC
        consent_source TEXT
    );
    CREATE TABLE withdrawn(                 -- tombstones: HMAC of the id, so a re-import skips them
        id_mac TEXT PRIMARY KEY,
        withdrawn_at TEXT NOT NULL
    );
    CREATE TABLE imports(
        id INTEGER PRIMARY KEY,
        file_name TEXT NOT NULL,
        file_sha256 TEXT NOT NULL,
        format TEXT NOT NULL,
        imported_at TEXT NOT NULL,
        records INTEGER NOT NULL,
        duplicates INTEGER NOT NULL,
        skipped INTEGER NOT NULL
    );
    CREATE TABLE conversations(
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,           -- HMAC(source, key): dedup without text
        source TEXT NOT NULL,
        owner TEXT REFERENCES contributors(id),
        language TEXT,
        created_at TEXT,
        import_id INTEGER REFERENCES imports(id),
        models TEXT NOT NULL,               -- JSON list: model name per response position
        meta TEXT NOT NULL,                 -- JSON, text-free extras
        body BLOB NOT NULL                  -- AES-GCM(JSON {prompt, responses}), bound to uid
    );
    CREATE INDEX conversations_owner ON conversations(owner);
    CREATE TABLE feedback(
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        contributor TEXT NOT NULL REFERENCES contributors(id),
        kind TEXT NOT NULL,
        data TEXT NOT NULL,                 -- JSON, text-free (outcome, strength, rating, ...)
        text BLOB,                          -- AES-GCM free text (critique), bound to the row
        created_at TEXT
    );
    CREATE INDEX feedback_contributor ON feedback(contributor);
    CREATE INDEX feedback_conversation ON feedback(conversation_id);
    CREATE TABLE redactions(kind TEXT PRIMARY KEY, n INTEGER NOT NULL);
    CREATE TABLE embeddings(                -- feature cache: HMAC(featurizer, text) -> sealed vector
        key TEXT PRIMARY KEY,
        vec BLOB NOT NULL
    );
    """,
    links.migrate_v2,  # v2: contributor_links; "format:id" ids become the member's id (node/links.py)
    # v3: the node service's members, invitations, contributions, policy proposals and objections (node/service/)
    """
    CREATE TABLE members(
        id TEXT PRIMARY KEY,                -- the member's pseudonymous contributor id
        token_mac TEXT NOT NULL UNIQUE,     -- keyed HMAC of the bearer token: the token is never stored
        created_at TEXT NOT NULL,
        enrolled_by TEXT NOT NULL           -- "invite" or "open"
    );
    CREATE TABLE invites(code_mac TEXT PRIMARY KEY, created_at TEXT NOT NULL, used_at TEXT);
    CREATE TABLE contributions(
        id TEXT PRIMARY KEY,                -- the record's key; its conversation uid is HMAC(record, source, id)
        member TEXT NOT NULL,
        source TEXT NOT NULL,
        licence TEXT NOT NULL,
        created_at TEXT NOT NULL,
        eligible_from TEXT NOT NULL,
        pending BLOB                        -- the sealed, redacted Record while it waits; NULL once stored
    );
    CREATE INDEX contributions_member ON contributions(member);
    CREATE TABLE proposals(
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        effective_at TEXT NOT NULL,
        policy TEXT NOT NULL,               -- the proposed policy.toml
        policy_sha256 TEXT NOT NULL,
        base_sha256 TEXT NOT NULL,          -- the policy it replaces
        status TEXT NOT NULL                -- pending, applied, superseded
    );
    CREATE TABLE objections(
        proposal_id INTEGER NOT NULL REFERENCES proposals(id),
        member_mac TEXT NOT NULL,           -- keyed HMAC of the member: one objection each, never who
        reason BLOB,                        -- sealed, redacted
        created_at TEXT NOT NULL,
        PRIMARY KEY(proposal_id, member_mac)
    );
    """,
    import_batches.V4,  # v4: batched imports stay invisible until done (node/import_batches.py)
    # v5: whole encode batches of hashed features, sealed, for a plan's later rounds (node/store_cache.py)
    """
    CREATE TABLE feature_batches(           -- HMAC(featurizer, the batch's texts) -> sealed float16 rows
        key TEXT PRIMARY KEY,
        featurizer TEXT NOT NULL,
        vecs BLOB NOT NULL
    );
    """,
]


class StoreError(Exception):
    """The store cannot do what was asked (unknown contributor, newer schema)."""


class Store:
    """The node's SQLite store; a context manager: `with nd.open_store() as store: ...` closes it."""

    def __init__(self, path: Path, cipher: StoreCipher):
        self.path = Path(path)
        self.cipher = cipher
        store_db.migrate_plaintext(self.path, cipher.db_key)  # a store written before issue 15, or a crashed migration
        self.conn = store_db.connect(self.path, cipher.db_key)
        try:
            self.migrate()
            import_batches.recover(self)
            if self.meta_get("scrub_pending"):  # a withdrawal's scrub that a reader held off
                from node.withdrawal import finish_scrub

                finish_scrub(self)
        except BaseException:
            self.conn.close()
            raise

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema ------------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The schema version (SQLite user_version)."""
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> None:
        """Apply the migrations this store has not had yet, each in its own transaction."""
        version = self.schema_version()
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path}: schema version {version} is newer than this Cairn ({len(MIGRATIONS)})")
        for i in range(version, len(MIGRATIONS)):
            with self.transaction():
                step = MIGRATIONS[i]
                for stmt in _statements(step) if isinstance(step, str) else step(self) or ():
                    self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version={i + 1}")

    @contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT; any exception rolls everything back. The wait for the write
        lock is bounded (node/store_db.py BUSY_TIMEOUT_S): past it, StoreBusy names the holder."""
        store_db.retry(lambda: self.conn.execute("BEGIN IMMEDIATE"), self.path)
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def meta_get(self, key: str) -> str | None:
        """A value of the meta table, None when unset."""
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def meta_set(self, key: str, value: str) -> None:
        """Set a value of the meta table."""
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))

    # --- writing records (call inside a transaction) ---------------------------------------------

    def is_withdrawn(self, contributor: str) -> bool:
        """Has this contributor withdrawn (a tombstone holds the HMAC of the id)?"""
        mac = self.cipher.ident("contributor", contributor)
        return self.conn.execute("SELECT 1 FROM withdrawn WHERE id_mac=?", (mac,)).fetchone() is not None

    def has_record(self, source: str, key: str) -> bool:
        """Is the record (source, key) stored?"""
        uid = self.cipher.ident("record", source, key)
        return self.conn.execute("SELECT 1 FROM conversations WHERE uid=?", (uid,)).fetchone() is not None

    def ensure_contributor(self, cid: str, consent: tuple[str, str, str] | None = None) -> None:
        """Add the contributor if new; with `consent` (licence, at, source), record it. Inside a batched
        import, a new contributor stays hidden and a known one's consent waits for the import's final
        commit (node/import_batches.py)."""
        pending = import_batches.pending_id(self)
        if pending is None:
            new = self.conn.execute("INSERT OR IGNORE INTO contributors(id, first_seen) VALUES(?, ?)", (cid, utcnow())).rowcount
        else:
            new = self.conn.execute("INSERT OR IGNORE INTO contributors(id, first_seen, pending_import) VALUES(?, ?, ?)",
                                    (cid, utcnow(), pending)).rowcount
        if consent:
            if pending is not None and not new:
                import_batches.defer_consent(self, cid, consent)
                return
            licence, at, source = consent
            self.conn.execute(
                "UPDATE contributors SET consent_licence=?, consent_at=?, consent_source=? WHERE id=?",
                (licence, at, source, cid),
            )

    def add_record(self, rec: Record, import_id: int | None, consent: tuple[str, str, str] | None = None) -> bool:
        """Insert one record; False if it is already stored. Withdrawn contributors' parts are dropped.
        A record breaking the ownership rule (node/ownership.py) is refused with OwnershipError.
        Linked ids are stored under their person's canonical id (node/links.py)."""
        rec = links.canonical_record(self, rec)
        check_ownership(rec)
        uid = self.cipher.ident("record", rec.source, rec.key)
        if self.conn.execute("SELECT 1 FROM conversations WHERE uid=?", (uid,)).fetchone():
            return False
        if rec.owner and self.is_withdrawn(rec.owner):
            return False
        feedback = [f for f in rec.feedback if not self.is_withdrawn(f.contributor)]
        if not feedback and rec.feedback and not rec.owner:
            return False  # every judge of this record has withdrawn: nothing of it may be kept
        for cid in sorted({f.contributor for f in feedback} | ({rec.owner} if rec.owner else set())):
            self.ensure_contributor(cid, consent)
        body = json.dumps(
            {"prompt": [[m.role, m.text] for m in rec.prompt], "responses": [r.text for r in rec.responses]},
            ensure_ascii=False,
        ).encode("utf-8")
        cur = self.conn.execute(
            "INSERT INTO conversations(uid, source, owner, language, created_at, import_id, models, meta, body)"
            " VALUES(?,?,?,?,?,?,?,?,?)",
            (
                uid,
                rec.source,
                rec.owner,
                rec.language,
                rec.timestamp,
                import_id,
                json.dumps([r.model for r in rec.responses]),
                self.cipher.seal(json.dumps(rec.meta, sort_keys=True).encode("utf-8"), b"meta:" + uid.encode()),
                self.cipher.seal(body, b"conv:" + uid.encode()),
            ),
        )
        conv_id = cur.lastrowid
        for f in feedback:
            cur = self.conn.execute(
                "INSERT INTO feedback(conversation_id, contributor, kind, data, created_at) VALUES(?,?,?,?,?)",
                (conv_id, f.contributor, f.kind, json.dumps(f.data, sort_keys=True), f.timestamp),
            )
            if f.text is not None:
                fid = cur.lastrowid
                sealed = self.cipher.seal(f.text.encode("utf-8"), b"feedback:%d" % fid)
                self.conn.execute("UPDATE feedback SET text=? WHERE id=?", (sealed, fid))
        return True

    def add_redactions(self, counts: Counter) -> None:
        """Add to the running counts of redactions by kind."""
        for kind, n in counts.items():
            self.conn.execute(
                "INSERT INTO redactions(kind, n) VALUES(?, ?) ON CONFLICT(kind) DO UPDATE SET n = n + excluded.n",
                (kind, n),
            )

    # --- reading records -----------------------------------------------------------------------

    def records(self, contributors: Iterable[str] | None = None, sources: Iterable[str] | None = None,
                batch: int = 500) -> Iterator[Record]:
        """Decrypted records, read and decrypted `batch` conversations at a time (memory stays bounded).
        With `contributors`, only their feedback, and only conversations that are either theirs or no
        member's (the consent gate: see node/consent.py). The view is the store as it was when
        iteration began: rows of an unfinished import, and rows written later, are left out."""
        allowed = set(contributors) if contributors is not None else None
        hidden = import_batches.pending_ids(self)
        top = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM conversations").fetchone()[0]
        where, args = "id > ? AND id <= ?", [top]
        if sources is not None:
            srcs = list(sources)
            where += f" AND source IN ({','.join('?' * len(srcs))})"
            args += srcs
        q = f"SELECT id, uid, source, owner, language, created_at, models, meta, body, import_id FROM conversations WHERE {where}"
        last = 0
        while True:
            rows = self.conn.execute(q + " ORDER BY id LIMIT ?", [last, *args, batch]).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            rows = [r for r in rows if r[9] not in hidden and (allowed is None or r[3] is None or r[3] in allowed)]
            fbs: dict[int, list[Feedback]] = {}
            if rows:
                for conv, fid, contributor, kind, data, text, fcreated in self.conn.execute(
                    "SELECT conversation_id, id, contributor, kind, data, text, created_at FROM feedback"
                    " WHERE conversation_id BETWEEN ? AND ? ORDER BY conversation_id, id", (rows[0][0], rows[-1][0])):
                    if allowed is None or contributor in allowed:
                        plain = self.cipher.open(text, b"feedback:%d" % fid).decode("utf-8") if text is not None else None
                        fbs.setdefault(conv, []).append(Feedback(kind, contributor, json.loads(data), plain, fcreated))
            for cid, uid, source, owner, lang, created, models, meta, body, _imp in rows:
                fb = fbs.get(cid, [])
                if allowed is not None and not fb and owner is None:
                    continue
                doc = json.loads(self.cipher.open(body, b"conv:" + uid.encode()))
                yield Record(
                    source=source,
                    key=uid,  # the source key is not stored in clear; uid identifies the record
                    prompt=[Message(role, text) for role, text in doc["prompt"]],
                    responses=[Response(t, m) for t, m in zip(doc["responses"], json.loads(models))],
                    feedback=fb,
                    owner=owner,
                    language=lang,
                    timestamp=created,
                    meta=self.open_meta(uid, meta),
                )

    def open_meta(self, uid: str, meta: bytes | str) -> dict:
        """A conversation's metadata: sealed since issue 15 (bound to its uid), JSON text before."""
        if isinstance(meta, bytes):
            meta = self.cipher.open(meta, b"meta:" + uid.encode()).decode("utf-8")
        return json.loads(meta)

    def contributor_ids(self, batch: int = 5000) -> Iterator[str]:
        """Every contributor id, ordered, without loading records (ids of an unfinished import left out)."""
        last = ""
        while rows := self.conn.execute("SELECT id FROM contributors WHERE pending_import IS NULL AND id > ? ORDER BY id"
                                        " LIMIT ?", (last, batch)).fetchall():
            last = rows[-1][0]
            yield from (r[0] for r in rows)

    # --- embeddings cache (a model.features.FeatureCache: key / get_many / put_many) -------------

    def embedding_cache(self, featurizer_name: str) -> "EmbeddingCache":
        """The sealed feature cache of one featurizer (a `model.features.FeatureCache`)."""
        return EmbeddingCache(self, featurizer_name)

    def feature_batches(self, featurizer_name: str) -> "FeatureBatches":
        """The sealed cache of whole encode batches of one featurizer (a `model.features.BatchCache`)."""
        return FeatureBatches(self, featurizer_name)

    # --- withdrawal --------------------------------------------------------------------------------

    def resolve(self, cid: str) -> str:
        """The person's canonical id for `cid` (node/links.py)."""
        return links.resolve(self, cid)

    def forget(self, contributor: str) -> dict:
        """Delete everything of the person `contributor` names (any of their linked ids) and tombstone
        every id of theirs; the file is then vacuumed (node/withdrawal.py)."""
        from node.withdrawal import forget

        return forget(self, contributor)

    def scrub(self) -> bool:
        """Rewrite the file and empty the WAL so no freed page keeps old bytes (node/withdrawal.py)."""
        from node.withdrawal import scrub

        return scrub(self)
