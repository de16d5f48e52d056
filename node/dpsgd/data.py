"""The contributor tensor layout: one training example per contributor (a person), not per pair.

Protects ARCHITECTURE.md invariant 4 (the unit of privacy is the contributor). Following McMahan et
al. 2018, "Learning Differentially Private Recurrent Language Models" (ICLR 2018, Section 2,
user-level DP-FedAvg; https://arxiv.org/abs/1710.06963), every example DP-SGD sees is one
contributor:

- `ContributorTensors` holds, per contributor, up to `max_pairs_per_contributor` of their pairs
  (a random subset, independent of the labels; the rest are dropped, so each person's influence is
  bounded whatever they submitted), padded with zero weight. Each person's subset is drawn from
  that person's OWN generator, seeded by HMAC(key, contributor id) (`pair_subset_seed`): adding or
  removing one person never changes which pairs another person trains on (the neighbouring
  relation of invariant 4 changes one clipped summand, not several; issue 10, finding 1).
- `ContributorTensors.inputs` lays a contributor's pairs out as one head input [2P, features]
  (P chosen then P rejected responses), so the "sample" Opacus clips is the contributor.

Each distinct text is featurized once into a shared table; the tensors hold row indices into it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from model.reward_model import combine_features
from model.training_config import TRAINING
from node.pairs import Pair, group_by_contributor

__all__ = ["ContributorTensors", "contributor_tensors_from_arrays", "build_contributor_tensors", "pair_subset_seed",
           "select_pairs", "stream_contributor_tensors"]


@dataclass
class ContributorTensors:
    """Per-contributor training tensors over a table of unique text features.

    features: [U, d] float32 (prompts and responses share the table)
    prompt, chosen, rejected: [N, P] int64 row indices into `features`
    target: [N, P] float32, P(chosen beats rejected)
    weight: [N, P] float32, 0 for padding
    """

    features: torch.Tensor
    prompt: torch.Tensor
    chosen: torch.Tensor
    rejected: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor
    contributors: list[str] = field(default_factory=list)
    dropped_pairs: int = 0  # pairs beyond the per-contributor cap

    @property
    def n_contributors(self) -> int:
        """N, the number of contributors (training examples)."""
        return int(self.prompt.shape[0])

    @property
    def max_pairs(self) -> int:
        """P, the pairs slots per contributor (real pairs plus padding)."""
        return int(self.prompt.shape[1])

    @property
    def n_pairs(self) -> int:
        """Real (unpadded) pairs over all contributors."""
        return int((self.weight > 0).sum())

    @property
    def dim(self) -> int:
        """Feature dimension d of the text table."""
        return int(self.features.shape[1])

    def inputs(self, idx: torch.Tensor, combine: str) -> torch.Tensor:
        """Head inputs [B, 2P, input_dim] for contributors `idx`: P chosen, then P rejected (float32,
        whatever the table's storage: a large table is kept in float16, see `stream_contributor_tensors`)."""
        X = self.features
        r = X[torch.cat([self.chosen[idx], self.rejected[idx]], dim=1)].float()
        if combine == "r":
            return r
        p = X[self.prompt[idx]].float()
        return combine_features(torch.cat([p, p], dim=1), r, combine)

    def subset(self, idx) -> "ContributorTensors":
        """The contributors `idx` over the same feature table."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ContributorTensors(
            self.features, self.prompt[idx], self.chosen[idx], self.rejected[idx], self.target[idx], self.weight[idx],
            [self.contributors[i] for i in idx.tolist()] if self.contributors else [], self.dropped_pairs,
        )

    @staticmethod
    def nobody(dim: int) -> "ContributorTensors":
        """One contributor with no real pair (weight 0 everywhere): its loss and gradient are 0, so DP-SGD
        on it releases only its noise, as on an empty dataset (node/training.py `local_update`)."""
        z = torch.zeros((1, 1), dtype=torch.long)
        return ContributorTensors(torch.zeros((1, dim)), z, z, z, torch.zeros((1, 1)), torch.zeros((1, 1)), ["-"], 0)

    @staticmethod
    def concat(parts: Sequence["ContributorTensors"]) -> "ContributorTensors":
        """Pool several sets (e.g. communities) into one; feature tables are stacked."""
        P = max(p.max_pairs for p in parts)
        feats: list[torch.Tensor] = []
        off = 0
        cols: dict[str, list[torch.Tensor]] = {k: [] for k in ("prompt", "chosen", "rejected", "target", "weight")}
        names: list[str] = []
        for part in parts:
            pad = P - part.max_pairs
            for k in cols:
                t = getattr(part, k)
                if k in ("prompt", "chosen", "rejected"):
                    t = t + off
                cols[k].append(F.pad(t, (0, pad)))
            feats.append(part.features)
            off += part.features.shape[0]
            names += part.contributors
        prompt, chosen, rejected, target, weight = (torch.cat(cols[k]) for k in cols)
        return ContributorTensors(torch.cat(feats), prompt, chosen, rejected, target, weight, names,
                                  sum(p.dropped_pairs for p in parts))


def pair_subset_seed(contributor: str, key: bytes | None = None, seed: int = 0) -> int:
    """The seed of one contributor's own subset draw: HMAC-SHA256(key, contributor id) when the node
    gives its secret `key` (node/training.py: keyed by the store's HMAC key and the plan), else
    SHA-256(seed, contributor id) (tests, benchmarks). Depends on nobody else's data."""
    msg = contributor.encode("utf-8")
    if key is not None:
        digest = hmac.new(key, b"cairn/pair-subset/v1\x1f" + msg, hashlib.sha256).digest()
    else:
        digest = hashlib.sha256(b"cairn/pair-subset/v1\x1f%d\x1f" % int(seed) + msg).digest()
    return int.from_bytes(digest[:16], "big")


def select_pairs(rows: Sequence, max_pairs: int, contributor: str, key: bytes | None = None, seed: int = 0) -> list:
    """The pairs of one contributor that training keeps: all when at most `max_pairs`, else a
    uniformly random subset (in their original order) from the contributor's own generator."""
    rows = list(rows)
    if len(rows) <= max_pairs:
        return rows
    rng = np.random.default_rng(pair_subset_seed(contributor, key, seed))
    return [rows[j] for j in sorted(rng.choice(len(rows), size=max_pairs, replace=False))]


def contributor_tensors_from_arrays(
    features: np.ndarray, pair_rows: Sequence[Sequence[tuple[int, int, int, float, float]]], max_pairs_per_contributor: int,
    contributors: Sequence[str] | None = None, seed: int = 0, key: bytes | None = None,
) -> ContributorTensors:
    """Build from a feature table and, per contributor, a list of (prompt, chosen, rejected, target, weight).

    Contributors with more than `max_pairs_per_contributor` pairs keep a uniformly random subset,
    each from their own generator (`select_pairs`: keyed by `key`, else by `seed`), which does not
    look at the data nor at anyone else's.
    """
    P = int(max_pairs_per_contributor)
    if P < 1:
        raise ValueError("max_pairs_per_contributor must be >= 1")
    N = len(pair_rows)
    names = list(contributors) if contributors is not None else [str(i) for i in range(N)]
    if len(names) != N:
        raise ValueError(f"{len(names)} contributor ids for {N} contributors' pairs")
    idx = np.zeros((N, 3, P), dtype=np.int64)
    tw = np.zeros((N, 2, P), dtype=np.float32)
    dropped = 0
    for i, rows in enumerate(pair_rows):
        rows = list(rows)
        dropped += max(0, len(rows) - P)
        for j, (pr, c, r, t, w) in enumerate(select_pairs(rows, P, names[i], key, seed)):
            idx[i, :, j] = (pr, c, r)
            tw[i, :, j] = (t, w)
    return ContributorTensors(
        torch.as_tensor(np.asarray(features, dtype=np.float32)),
        torch.from_numpy(idx[:, 0]), torch.from_numpy(idx[:, 1]), torch.from_numpy(idx[:, 2]),
        torch.from_numpy(tw[:, 0]), torch.from_numpy(tw[:, 1]), names, dropped,
    )


def build_contributor_tensors(
    pairs: Sequence[Pair], featurizer, max_pairs_per_contributor: int = TRAINING.max_pairs_per_contributor, *,
    seed: int = 0, key: bytes | None = None,
) -> ContributorTensors:
    """Group `pairs` by contributor, encode every distinct text once, and build the tensors.

    `featurizer`: anything with `dim` and `encode(texts)`; pass a `model.features.CachedEncoder` to
    encode through a store's feature cache. `key`: the node's secret subset key (see `select_pairs`).
    """
    groups = group_by_contributor(pairs)
    texts: dict[str, int] = {}

    def row(t: str) -> int:
        if t not in texts:
            texts[t] = len(texts)
        return texts[t]

    rows = [[(row(p.prompt), row(p.chosen), row(p.rejected), p.target, p.weight) for p in ps] for ps in groups.values()]
    tl = list(texts)
    feats = featurizer.encode(tl) if tl else np.zeros((0, featurizer.dim), dtype=np.float32)
    return contributor_tensors_from_arrays(feats, rows, max_pairs_per_contributor, list(groups), seed=seed, key=key)


COMPACT_TABLE_BYTES = 256 << 20  # a float32 feature table larger than this is stored in float16
MEMO_LIMIT = 200_000  # n-grams a featurizer may memoise while a table is streamed (then the memo starts over)


class _Table:
    """A feature table grown in place in an anonymous mapping (mremap: a larger table never needs a
    second resident copy, and unused capacity is never touched), float32 until COMPACT_TABLE_BYTES,
    then float16."""

    def __init__(self, dim: int):
        import mmap

        self.dim, self.dtype, self.used = dim, np.dtype(np.float32), 0
        self.mm = mmap.mmap(-1, 1 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # not /dev/shm

    def _view(self, start: int, rows: int) -> np.ndarray:
        size = self.dtype.itemsize
        return np.frombuffer(self.mm, dtype=self.dtype, count=rows * self.dim,
                             offset=start * self.dim * size).reshape(rows, self.dim)

    def add(self, block: np.ndarray) -> None:
        import mmap

        if self.dtype == np.float32 and (self.used + len(block)) * self.dim * 4 > COMPACT_TABLE_BYTES:
            old, self.dtype = self.mm, np.dtype(np.float16)  # once: the table turns compact
            self.mm = mmap.mmap(-1, max(1 << 20, 2 * self.used * self.dim * 2), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            for lo in range(0, self.used, 65536):
                n = min(65536, self.used - lo)
                src = np.frombuffer(old, dtype=np.float32, count=n * self.dim, offset=lo * self.dim * 4)
                dst = self._view(lo, n)
                dst[:] = src.reshape(n, self.dim)
                del src, dst
            old.close()
        # every value is rounded to float16 whatever the storage, so the switch to float16 (decided by the
        # size of the WHOLE table, i.e. by everyone's data) never changes any person's features: one
        # person's presence must not change the data another person is trained on (ARCHITECTURE.md
        # invariant 4; review 15). float16 values are exact in float32.
        block = np.asarray(block, dtype=np.float32).astype(np.float16)
        need = (self.used + len(block)) * self.dim * self.dtype.itemsize
        if need > len(self.mm):
            self.mm.resize(max(2 * len(self.mm), need))
        view = self._view(self.used, len(block))
        view[:] = block
        del view
        self.used += len(block)

    def array(self) -> np.ndarray:
        """The table's rows (a view of the mapping, which it keeps alive)."""
        return self._view(0, self.used)


def stream_contributor_tensors(
    records: Iterable, featurizer, max_pairs_per_contributor: int = TRAINING.max_pairs_per_contributor, *,
    seed: int = 0, key: bytes | None = None, encode_batch: int = 4096,
) -> ContributorTensors:
    """`build_contributor_tensors` over an ITERATOR of records, in bounded memory: records are read
    once (node/store.py streams them in batches), turned into pairs one record at a time, their
    distinct texts encoded `encode_batch` at a time into a feature table grown in place, and only
    compact arrays are kept (per pair: contributor, three row indices, target, weight). No Record,
    Pair or text outlives its batch. Same tensors as the list path: each distinct text one row, each
    person's pairs in reading order, subsets from their own generator (`select_pairs`), P = the
    largest number of pairs anyone keeps (padding carries zero weight and changes no gradient). A
    table larger than COMPACT_TABLE_BYTES in float32 is stored in float16 (frozen unit-norm features:
    a relative rounding of 1e-3, far below DP-SGD's noise); `inputs` returns float32 either way. Every
    feature is rounded to float16 precision at any table size, so whether the table turned compact (a
    function of all members' data) changes no one's features: each person's clipped gradient stays a
    function of their own data alone."""
    from array import array

    from node.pairs import pairs_from_records

    P_cap = int(max_pairs_per_contributor)
    if P_cap < 1:
        raise ValueError("max_pairs_per_contributor must be >= 1")
    rows_of: dict[bytes, int] = {}  # BLAKE2b-128 of a text -> its row (texts themselves are not kept)
    pending: list[str] = []
    table = _Table(int(featurizer.dim))
    who, pr, ch, rj = array("i"), array("q"), array("q"), array("q")
    tg, wt = array("f"), array("f")
    names: dict[str, int] = {}
    memo = getattr(featurizer, "_memo", None)  # the hashed featurizer's n-gram memo (model/features.py)

    def flush() -> None:
        if not pending:
            return
        block = np.asarray(featurizer.encode(pending), dtype=np.float32).reshape(len(pending), featurizer.dim)
        pending.clear()
        if isinstance(memo, dict) and len(memo) > MEMO_LIMIT:
            memo.clear()  # a million members' unique n-grams would hold ~0.5 GB; it is only a speed-up
        table.add(block)

    def row(t: str) -> int:
        h = hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        r = rows_of.get(h)
        if r is None:
            r = rows_of[h] = len(rows_of)
            pending.append(t)
            if len(pending) >= encode_batch:
                flush()
        return r

    for rec in records:
        for p in pairs_from_records([rec]):
            who.append(names.setdefault(p.contributor, len(names)))
            pr.append(row(p.prompt))
            ch.append(row(p.chosen))
            rj.append(row(p.rejected))
            tg.append(p.target)
            wt.append(p.weight)
    flush()
    rows_of.clear()
    feats = table.array()
    W = np.frombuffer(who, dtype=np.int32)
    N = len(names)
    counts = np.bincount(W, minlength=N) if N else np.zeros(0, dtype=np.int64)
    P = max(1, min(P_cap, int(counts.max()) if N else 1))
    order = np.argsort(W, kind="stable")  # each person's pairs, in reading order
    starts = np.concatenate([[0], np.cumsum(counts)])
    cols = [np.frombuffer(a, dtype=t) for a, t in ((pr, np.int64), (ch, np.int64), (rj, np.int64))]
    T, Wt = np.frombuffer(tg, dtype=np.float32), np.frombuffer(wt, dtype=np.float32)
    idx = np.zeros((3, N, P), dtype=np.int64)
    tw = np.zeros((2, N, P), dtype=np.float32)
    ids = list(names)
    dropped = int(np.maximum(counts - P_cap, 0).sum())
    slot = np.arange(len(W)) - np.repeat(starts[:-1], counts)  # position of each sorted pair within its person
    keep = counts[W[order]] <= P  # people within the cap keep every pair, in order
    sel, pos = order[keep], slot[keep]
    people = W[sel]
    for k in range(3):
        idx[k, people, pos] = cols[k][sel]
    tw[0, people, pos], tw[1, people, pos] = T[sel], Wt[sel]
    for i in np.nonzero(counts > P)[0]:  # over the cap: each person's own subset (`select_pairs`)
        mine = order[starts[i]:starts[i + 1]].tolist()
        for j, m in enumerate(select_pairs(mine, P, ids[i], key, seed)):
            idx[:, i, j] = (cols[0][m], cols[1][m], cols[2][m])
            tw[:, i, j] = (T[m], Wt[m])
    return ContributorTensors(torch.from_numpy(feats), torch.from_numpy(idx[0]), torch.from_numpy(idx[1]),
                              torch.from_numpy(idx[2]), torch.from_numpy(tw[0]), torch.from_numpy(tw[1]), ids, dropped)
