"""What a distributed discrete Gaussian step must satisfy before any accountant reads it (issue 11).

Shared by the event's constructor (privacy/events.py `DistributedDiscreteGaussianEvent`, so a forged or
inconsistent event never reaches an accountant) and privacy/accounting/ddg.py. Imports nothing of privacy/
(events.py imports it). The auditor keeps its own copy of the same rules (privacy/audit/ddg.py).

Kairouz, Liu & Steinke 2021, "The Distributed Discrete Gaussian Mechanism for Federated Learning with Secure
Aggregation", ICML, https://arxiv.org/abs/2102.06387:
- their Theorem 1 / Proposition 14 (the tau bound on a SUM of discrete Gaussians) assume sigma >= 1/2; one
  share (tau = 0) is a plain discrete Gaussian, private at every sigma > 0 (Canonne, Kamath & Steinke 2020,
  https://arxiv.org/abs/2004.00010, Theorem 4): rule `ddg_sigma_floor`;
- the L2 sensitivity after conditional randomised rounding (Sec. 4.1, their accounting_utils.py
  `rounded_l2_norm_bound`) of a gradient clipped to `clip`, scaled by 1/gamma, plus the exact count coordinate
  round(count_weight / gamma): a logged sensitivity below it understates epsilon: rule `ddg_sensitivity`;
- the honest shares counted are among the participants (`ddg_shares`); the counts are >= 1 and the field
  width is what the decoder handles (`ddg_counts`).
"""

from __future__ import annotations

import math
from typing import Any

SIGMA_FLOOR = 0.5  # Theorem 1 / Prop. 14's sigma >= 1/2, for shares >= 2
MAX_BITS = 62  # int64 arithmetic of the centred decode (privacy/distributed_dp.py `from_field`)
SENSITIVITY_RTOL = 1e-12  # float slack of the recomputation (the node computes it with these same operations)


def rounded_l2_bound(norm: float, beta: float, dim: int) -> float:
    """L2 bound after conditional randomised rounding to Z^dim of a vector of L2 norm <= `norm`:
    min{norm + sqrt(dim), sqrt(norm^2 + dim/4 + sqrt(2 ln(1/beta)) (norm + sqrt(dim)/2))}; beta = 0: the first."""
    bound_1 = norm + math.sqrt(dim)
    if beta == 0:
        return bound_1
    sq = norm * norm + 0.25 * dim + math.sqrt(2.0 * math.log(1.0 / beta)) * (norm + 0.5 * math.sqrt(dim))
    return min(bound_1, math.sqrt(sq))


def l2_bound_of(clip: float, gamma: float, beta: float, dim: int, count_weight: float) -> float:
    """One person's L2 sensitivity in integer units: the rounded gradient's bound and the count coordinate."""
    units = round(count_weight / gamma)
    return math.sqrt(rounded_l2_bound(clip / gamma, beta, dim) ** 2 + units * units)


def violation(ev: Any) -> str | None:
    """The first rule a step (any object with the event's fields) breaks, as 'rule <name>: ...'; None if none."""
    for name in ("shares", "dim", "participants", "max_people"):
        if getattr(ev, name) < 1:
            return f"rule ddg_counts: {name} must be >= 1, got {getattr(ev, name)!r}"
    if not 2 <= ev.bits <= MAX_BITS:
        return f"rule ddg_counts: bits must be in [2, {MAX_BITS}], got {ev.bits!r}"
    if ev.shares > ev.participants:
        return f"rule ddg_shares: counts on {ev.shares} honest shares among only {ev.participants} participants"
    if ev.shares > 1 and not ev.sigma >= SIGMA_FLOOR:
        return (f"rule ddg_sigma_floor: the bound on a sum of {ev.shares} discrete Gaussians needs sigma >= "
                f"{SIGMA_FLOOR} (Kairouz, Liu & Steinke 2021, Theorem 1), got {ev.sigma!r}")
    bound = l2_bound_of(ev.clip, ev.gamma, ev.beta, ev.dim, ev.count_weight)
    if not ev.l2_sensitivity >= bound * (1 - SENSITIVITY_RTOL):
        return (f"rule ddg_sensitivity: l2_sensitivity {ev.l2_sensitivity!r} is below one person's bound {bound!r} "
                f"after conditional rounding (clip {ev.clip!r}, gamma {ev.gamma!r}, beta {ev.beta!r}, dim {ev.dim}, "
                f"count_weight {ev.count_weight!r})")
    return None
