"""The store's sealed feature caches — per text (HMAC(featurizer, text) -> AES-GCM vector) and per
encode batch (HMAC(featurizer, texts) -> AES-GCM rows) — and its SQL script splitter; the caches never
hold text (ARCHITECTURE.md invariant 1). Used through node/store.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlcipher3 import dbapi2 as sqlcipher

if TYPE_CHECKING:
    from node.store import Store


class EmbeddingCache:
    """Sealed feature vectors keyed by HMAC(featurizer, text): the cache never holds text.

    Implements model.features.FeatureCache: encode through it with `model.features.CachedEncoder`."""

    def __init__(self, store: Store, featurizer_name: str):
        self.store, self.name = store, featurizer_name
        store.conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES(?, ?)", (f"featurizer:{featurizer_name}", featurizer_name)
        )
        self.epoch = store.meta_get(FeatureBatches.WITHDRAWALS)  # before any record of the pass is read

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
        """Seal and store the vectors, in one transaction; nothing once a withdrawal or deletion happened
        since this cache was opened (FeatureBatches.WITHDRAWALS)."""
        import numpy as np

        with self.store.transaction():
            if self.store.meta_get(FeatureBatches.WITHDRAWALS) != self.epoch:
                return  # someone withdrew while this pass read: their texts' vectors must not come back
            for k, v in items.items():
                blob = self.store.cipher.seal(np.asarray(v, dtype=np.float32).tobytes(), b"emb:" + k.encode())
                self.store.conn.execute("INSERT OR REPLACE INTO embeddings(key, vec) VALUES(?, ?)", (k, blob))


class FeatureBatches:
    """Sealed feature rows of whole encode batches, keyed by HMAC(featurizer, the batch's texts).

    A training round streams the same texts in the same batches as the round before it
    (node/dpsgd/data.py `stream_contributor_tensors`), and on the Deployment Engine every round runs in
    a fresh ClientApp process: without this, each round of a plan hashes every text again (issue 16).
    Content-addressed: a batch whose texts changed in any way (a record added, deleted, reordered)
    has another key, so a hit is exactly what encoding would give; the name carries the featurizer's
    code version and the Unicode tables it tokenises with, so an upgrade that changes features never
    hits old rows. Rows are kept as float16, which is what the training feature table rounds every
    value to (node/dpsgd/data.py `_Table`). Bounded: a pass caches at most MAX_ROWS rows, and `prune`
    keeps only the batches this pass used (of one featurizer: a coordinator cycling configs cannot grow
    the table). Withdrawal and a member's deletion empty the table and bump WITHDRAWALS (node/withdrawal.py,
    node/service/members.py): a pass that started before never writes again, so rows of texts it read
    before the withdrawal do not come back. Best effort: a busy store or a blob that does not open is a
    miss, never a failed round.

    Implements model.features.BatchCache: encode through it with `model.features.BatchCachedEncoder`."""

    MAX_ROWS = 1 << 17  # 131,072 texts: ~100 MB of float16 rows at 384 dimensions
    WITHDRAWALS = "feature_batches_epoch"  # meta: bumped by every withdrawal or deletion

    def __init__(self, store: Store, featurizer_name: str):
        import unicodedata

        from model.features import FEATURES_VERSION

        self.store = store
        self.name = f"{featurizer_name}|v{FEATURES_VERSION}|unicode-{unicodedata.unidata_version}"
        self.used: set[str] = set()
        self.rows = 0
        self.epoch = store.meta_get(self.WITHDRAWALS)  # before any record of the pass is read
        self.writable = True
        self.busy = False

    def key(self, texts: list[str]) -> str:
        """The cache key of a batch: HMAC(featurizer, the texts, each prefixed by its length)."""
        return self.store.cipher.ident("feature-batch", self.name, "".join(f"{len(t)}:{t}" for t in texts))

    def _aad(self, key: str) -> bytes:
        return b"feature-batch:" + key.encode()

    def get(self, key: str, n: int, dim: int):
        """The cached [n, dim] float16 rows of the batch `key`, or None."""
        import numpy as np

        from node.crypto import CryptoError

        row = self.store.conn.execute("SELECT vecs FROM feature_batches WHERE key=? AND featurizer=?",
                                      (key, self.name)).fetchone()
        if row is None:
            return None
        try:
            vecs = np.frombuffer(self.store.cipher.open(row[0], self._aad(key)), dtype=np.float16)
        except (CryptoError, ValueError, TypeError):  # altered, truncated below a nonce, NULL: a miss
            return None
        if vecs.size != n * dim:
            return None
        self.used.add(key)
        self.rows += n
        return vecs.reshape(n, dim)

    def put(self, key: str, vecs) -> None:
        """Seal and store a batch's rows (as float16), unless the pass already holds MAX_ROWS, a withdrawal
        happened since the pass began, or the store is busy."""
        import numpy as np

        vecs = np.asarray(vecs, dtype=np.float16)
        if not self.writable or self.rows + len(vecs) > self.MAX_ROWS:
            return
        blob = self.store.cipher.seal(vecs.tobytes(), self._aad(key))

        def write() -> None:
            with self.store.transaction():
                if self.store.meta_get(self.WITHDRAWALS) != self.epoch:
                    self.writable = False  # someone withdrew while this pass read: write nothing more
                    return
                self.store.conn.execute("INSERT OR REPLACE INTO feature_batches(key, featurizer, vecs) VALUES(?, ?, ?)",
                                        (key, self.name, blob))
                self.used.add(key)
                self.rows += len(vecs)
        self._best_effort(write)

    def prune(self) -> None:
        """Delete every batch this pass did not use (this featurizer's others, and every other featurizer's;
        two passes at once on one node each lose the other's batches: misses, never wrong rows). Skipped
        when the store was busy during the pass (no second bounded wait)."""
        if self.busy:
            return

        def write() -> None:
            stale = [k for (k,) in self.store.conn.execute("SELECT key FROM feature_batches") if k not in self.used]
            if stale:
                with self.store.transaction():
                    self.store.conn.executemany("DELETE FROM feature_batches WHERE key=?", [(k,) for k in stale])
        self._best_effort(write)

    def _best_effort(self, write) -> None:
        from node.store_db import StoreBusy, is_busy

        try:
            write()
        except StoreBusy:
            self.writable, self.busy = False, True
        except Exception as e:  # noqa: BLE001 - only SQLite's busy error is a miss; anything else is a bug
            if not is_busy(e):
                raise
            self.writable, self.busy = False, True


def forget_features(store: Store, texts: set[str]) -> None:
    """Inside a withdrawal's or deletion's transaction: delete the cached vectors of `texts` (every
    featurizer's) and every encode batch (they mix texts), and bump WITHDRAWALS (FeatureBatches)."""
    names = [r[0] for r in store.conn.execute("SELECT value FROM meta WHERE key LIKE 'featurizer:%'")]
    for name in names:
        for t in texts:
            store.conn.execute("DELETE FROM embeddings WHERE key=?", (store.cipher.ident("emb", name, t),))
    forget_batches(store.conn)


def forget_batches(conn) -> None:
    """Inside a withdrawal's or deletion's transaction: empty the batch cache and bump WITHDRAWALS."""
    conn.execute("DELETE FROM feature_batches")
    conn.execute("INSERT INTO meta(key, value) VALUES(?, '1') ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
                 (FeatureBatches.WITHDRAWALS,))


def _statements(script: str) -> list[str]:
    out, buf = [], ""
    for line in script.splitlines():
        line = line.split("--", 1)[0]
        buf += line + "\n"
        if sqlcipher.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    return out
