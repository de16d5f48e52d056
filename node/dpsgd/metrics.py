"""Evaluation of a reward head on contributor tensors (no privacy: held-out or shadow data only)."""

from __future__ import annotations

import torch

from model.reward_model import RewardHead
from node.dpsgd.data import ContributorTensors

__all__ = ["pair_accuracy"]


@torch.no_grad()
def pair_accuracy(head: RewardHead, data: ContributorTensors) -> float:
    """Fraction of real strict pairs (target 1) with score(chosen) > score(rejected); ties (0.5) skipped."""
    head.eval()
    correct = total = 0
    for s in range(0, data.n_contributors, 4096):
        idx = torch.arange(s, min(s + 4096, data.n_contributors))
        sc = head(data.inputs(idx, head.combine))
        P = data.max_pairs
        d = sc[:, :P] - sc[:, P:]
        m = (data.weight[idx] > 0) & (data.target[idx] == 1.0)
        correct += int(((d > 0) & m).sum())
        total += int(m.sum())
    return correct / total if total else float("nan")
