"""The node's store: one SQLite database per node directory (WAL, versioned migrations).

Conversation text and free-text feedback are sealed with AES-GCM (node/crypto.py); everything a
query needs without text (kinds, outcomes, ratings, model names, languages) stays in plain columns.
Dedup keys are keyed HMACs, never text. `secure_delete` is on, so deleted rows are overwritten;
`forget` also VACUUMs and truncates the WAL so a withdrawn contributor's text is gone from the file.

Protects ARCHITECTURE.md invariants 1 (text sealed at rest), 8 (withdrawal deletes) and 9 (every
write is one transaction: a failure leaves the store as it was).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from node import links
from node.crypto import StoreCipher
from node.ownership import check_ownership
from node.schema import Feedback, Message, Record, Response

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
]


class StoreError(Exception):
    """The store cannot do what was asked (unknown contributor, newer schema)."""


def connect(path: Path) -> sqlite3.Connection:
    """A SQLite connection in WAL mode, synchronous FULL, foreign keys and secure_delete on."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)  # explicit transactions
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a committed ledger entry survives power loss
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA secure_delete=ON")  # deleted content is overwritten with zeros
    return conn


class Store:
    """The node's SQLite store; a context manager: `with nd.open_store() as store: ...` closes it."""

    def __init__(self, path: Path, cipher: StoreCipher):
        self.path = Path(path)
        self.cipher = cipher
        self.conn = connect(self.path)
        self.migrate()

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
        """BEGIN IMMEDIATE ... COMMIT; any exception rolls everything back."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
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
        """Add the contributor if new; with `consent` (licence, at, source), record it."""
        self.conn.execute("INSERT OR IGNORE INTO contributors(id, first_seen) VALUES(?, ?)", (cid, utcnow()))
        if consent:
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
                json.dumps(rec.meta, sort_keys=True),
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

    def records(self, contributors: Iterable[str] | None = None, sources: Iterable[str] | None = None) -> Iterator[Record]:
        """Decrypted records. With `contributors`, only their feedback, and only conversations that are
        either theirs or no member's (the consent gate: see node/consent.py)."""
        allowed = set(contributors) if contributors is not None else None
        q = "SELECT id, uid, source, owner, language, created_at, models, meta, body FROM conversations"
        args: list = []
        if sources is not None:
            srcs = list(sources)
            q += f" WHERE source IN ({','.join('?' * len(srcs))})"
            args += srcs
        q += " ORDER BY id"
        for cid, uid, source, owner, lang, created, models, meta, body in self.conn.execute(q, args).fetchall():
            if allowed is not None and owner is not None and owner not in allowed:
                continue
            fb = []
            for fid, contributor, kind, data, text, fcreated in self.conn.execute(
                "SELECT id, contributor, kind, data, text, created_at FROM feedback WHERE conversation_id=? ORDER BY id",
                (cid,),
            ):
                if allowed is not None and contributor not in allowed:
                    continue
                plain = self.cipher.open(text, b"feedback:%d" % fid).decode("utf-8") if text is not None else None
                fb.append(Feedback(kind, contributor, json.loads(data), plain, fcreated))
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
                meta=json.loads(meta),
            )

    # --- embeddings cache (a model.features.FeatureCache: key / get_many / put_many) -------------

    def embedding_cache(self, featurizer_name: str) -> "EmbeddingCache":
        """The sealed feature cache of one featurizer (a `model.features.FeatureCache`)."""
        return EmbeddingCache(self, featurizer_name)

    # --- withdrawal --------------------------------------------------------------------------------

    def resolve(self, cid: str) -> str:
        """The person's canonical id for `cid` (node/links.py)."""
        return links.resolve(self, cid)

    def forget(self, contributor: str) -> dict:
        """Delete everything of the person `contributor` names (any of their linked ids) and tombstone
        every id of theirs; the file is then vacuumed."""
        contributor = links.resolve(self, contributor)
        with self.transaction():
            links.forget_aliases(self, contributor)
            known = self.conn.execute("SELECT 1 FROM contributors WHERE id=?", (contributor,)).fetchone()
            if not known and not self.is_withdrawn(contributor):
                raise StoreError(f"no contributor {contributor!r} in this node")
            owned = [r[0] for r in self.conn.execute("SELECT id FROM conversations WHERE owner=?", (contributor,))]
            texts = set()
            for cid in owned:
                texts |= self._texts_of(cid)
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
                texts |= self._texts_of(cid)
                self.conn.execute("DELETE FROM conversations WHERE id=?", (cid,))
            # Embeddings of deleted text: the cache is keyed by HMAC(featurizer, text).
            names = [r[0] for r in self.conn.execute("SELECT value FROM meta WHERE key LIKE 'featurizer:%'")]
            for name in names:
                for t in texts:
                    self.conn.execute("DELETE FROM embeddings WHERE key=?", (self.cipher.ident("emb", name, t),))
            self.conn.execute("DELETE FROM contributors WHERE id=?", (contributor,))
            self.conn.execute(
                "INSERT OR IGNORE INTO withdrawn(id_mac, withdrawn_at) VALUES(?, ?)",
                (self.cipher.ident("contributor", contributor), utcnow()),
            )
        self.scrub()
        return {"feedback_deleted": n_fb, "conversations_deleted": n_conv + len(orphans)}

    def _texts_of(self, conv_id: int) -> set[str]:
        uid, body = self.conn.execute("SELECT uid, body FROM conversations WHERE id=?", (conv_id,)).fetchone()
        doc = json.loads(self.cipher.open(body, b"conv:" + uid.encode()))
        return {t for _, t in doc["prompt"]} | set(doc["responses"])

    def scrub(self) -> None:
        """Rewrite the database file and empty the WAL so no freed page keeps old bytes."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.execute("VACUUM")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class EmbeddingCache:
    """Sealed feature vectors keyed by HMAC(featurizer, text): the cache never holds text.

    Implements model.features.FeatureCache: encode through it with `model.features.CachedEncoder`."""

    def __init__(self, store: Store, featurizer_name: str):
        self.store, self.name = store, featurizer_name
        store.conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES(?, ?)", (f"featurizer:{featurizer_name}", featurizer_name)
        )

    def key(self, text: str) -> str:
        """The cache key of `text`: HMAC(featurizer, text)."""
        return self.store.cipher.ident("emb", self.name, text)

    def get_many(self, keys: list[str]):
        """The cached vectors among `keys` (missing keys are left out), opened."""
        import numpy as np

        out = {}
        for k in keys:
            row = self.store.conn.execute("SELECT vec FROM embeddings WHERE key=?", (k,)).fetchone()
            if row:
                out[k] = np.frombuffer(self.store.cipher.open(row[0], b"emb:" + k.encode()), dtype=np.float32)
        return out

    def put_many(self, items: dict) -> None:
        """Seal and store the vectors, in one transaction."""
        import numpy as np

        with self.store.transaction():
            for k, v in items.items():
                blob = self.store.cipher.seal(np.asarray(v, dtype=np.float32).tobytes(), b"emb:" + k.encode())
                self.store.conn.execute("INSERT OR REPLACE INTO embeddings(key, vec) VALUES(?, ?)", (k, blob))


def _statements(script: str) -> list[str]:
    out, buf = [], ""
    for line in script.splitlines():
        line = line.split("--", 1)[0]
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    return out
