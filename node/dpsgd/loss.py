"""The per-contributor Bradley-Terry loss: one loss value (hence one gradient) per contributor.

Protects ARCHITECTURE.md invariant 4: the loss of a contributor is the weighted Bradley-Terry loss
(Bradley & Terry 1952, "Rank Analysis of Incomplete Block Designs", Biometrika 39(3/4), Eq. 1;
https://doi.org/10.2307/2334029) AVERAGED over their real pairs, so a contributor's gradient does not
grow with the number of pairs they submitted before it is clipped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ContributorBTLoss"]


class ContributorBTLoss(nn.Module):
    """Bradley-Terry loss per contributor: mean over their real pairs of weight * BCE(s_c - s_r, target).

    Input scores [B, 2P] (P chosen then P rejected); returns [B] for reduction="none", else the
    sum/mean over contributors. A contributor with no real pairs contributes 0 (and no gradient).
    """

    def __init__(self, reduction: str = "sum"):
        super().__init__()
        self.reduction = reduction

    def forward(self, scores: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Loss of the contributors whose scores are `scores` (see the class docstring)."""
        P = target.shape[1]
        d = scores[:, :P] - scores[:, P:]
        per_pair = F.binary_cross_entropy_with_logits(d, target, reduction="none")
        n = (weight > 0).sum(dim=1).clamp(min=1).to(d.dtype)
        per = (per_pair * weight).sum(dim=1) / n
        if self.reduction == "none":
            return per
        if self.reduction == "sum":
            return per.sum()
        if self.reduction == "mean":
            return per.mean()
        raise ValueError(f"unknown reduction {self.reduction!r}")
