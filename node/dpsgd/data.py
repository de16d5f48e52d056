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
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from model.reward_model import combine_features
from model.training_config import TRAINING
from node.pairs import Pair, group_by_contributor

__all__ = ["ContributorTensors", "contributor_tensors_from_arrays", "build_contributor_tensors", "pair_subset_seed",
           "select_pairs"]


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
        """Head inputs [B, 2P, input_dim] for contributors `idx`: P chosen, then P rejected."""
        X = self.features
        r = X[torch.cat([self.chosen[idx], self.rejected[idx]], dim=1)]
        if combine == "r":
            return r
        p = X[self.prompt[idx]]
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
