"""The store's sealed feature cache (HMAC(featurizer, text) -> AES-GCM vector) and its SQL script
splitter; the cache never holds text (ARCHITECTURE.md invariant 1). Used through node/store.py.
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
        if sqlcipher.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    return out
