"""Epsilon by Renyi DP: looser than PLD, a sound fallback (ARCHITECTURE.md invariant 5).

Renyi DP (Mironov 2017, "Renyi Differential Privacy", https://arxiv.org/abs/1702.07476); the
subsampled Gaussian by Mironov, Talwar & Zhang 2019, "Renyi Differential Privacy of the Sampled
Gaussian Mechanism" (https://arxiv.org/abs/1908.10530), converted to (eps, delta) with
dp_accounting's conversion. dp_accounting logs (through absl) a warning for every fractional order
it cannot evaluate at large q and then excludes that order, still a sound bound; `privacy.configure`
quiets those logs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from dp_accounting import dp_event as dpe
from dp_accounting.rdp import rdp_privacy_accountant as rdp_lib

from privacy.accounting.history import AccountingError, flatten, sorted_groups
from privacy.events import DiscreteGaussianEvent, DiscreteLaplaceEvent, DpEvent, EpsilonDeltaEvent, GaussianEvent, LaplaceEvent


def _rdp_event(ev: DpEvent, q: float, pure_part: bool = False) -> dpe.DpEvent:
    """A dp_accounting event whose RDP curve upper-bounds ours."""
    if isinstance(ev, GaussianEvent):
        g = dpe.GaussianDpEvent(ev.sigma / ev.sensitivity)
        return dpe.PoissonSampledDpEvent(q, g) if q < 1.0 else g
    if isinstance(ev, DiscreteGaussianEvent):
        # Discrete Gaussian is (Delta/sigma)^2/2-zCDP, the continuous Gaussian's RDP curve
        # (Canonne, Kamath & Steinke 2020, Theorem 4, https://arxiv.org/abs/2004.00010).
        # Subsampling: no amplification claimed.
        return dpe.GaussianDpEvent(ev.sigma / ev.sensitivity)
    if isinstance(ev, LaplaceEvent):
        return dpe.LaplaceDpEvent(ev.scale / ev.sensitivity)
    if isinstance(ev, EpsilonDeltaEvent) and ev.delta == 0:
        return dpe.GaussianDpEvent(1.0 / ev.epsilon) if ev.epsilon > 0 else dpe.NoOpDpEvent()  # eps-DP: Prop. 1.4 below
    if isinstance(ev, DiscreteLaplaceEvent):
        # Pure eps0-DP implies eps0^2/2-zCDP (Bun & Steinke 2016, Proposition 1.4,
        # https://arxiv.org/abs/1605.02065) = RDP of a Gaussian with noise multiplier 1/eps0.
        # Subsampling: no amplification claimed.
        eps0 = ev.sensitivity / ev.scale
        return dpe.GaussianDpEvent(1.0 / eps0)
    if isinstance(ev, EpsilonDeltaEvent) and pure_part:
        # Only for the privacy filter (privacy/accounting/filter.py), which adds ev.delta to its delta:
        # the pure eps-DP mechanism the release is delta-close to in total variation, eps^2/2-zCDP.
        return dpe.GaussianDpEvent(1.0 / ev.epsilon) if ev.epsilon > 0 else dpe.NoOpDpEvent()
    # EpsilonDeltaEvent with delta > 0 has no RDP curve: epsilon_of then uses PLD alone.
    raise AccountingError(f"no RDP for {ev!r}")


def rdp_curve(events: Sequence[DpEvent], orders: Sequence[float], pure_part: bool = False) -> np.ndarray:
    """The history's RDP curve (the sum of each event's Renyi divergence bound) at `orders`, by
    dp_accounting's RDP accountant (an order it cannot evaluate is +inf: never within a budget).
    `pure_part`: an (epsilon, delta) event counts by its pure epsilon part (the caller accounts its delta)."""
    acc = rdp_lib.RdpAccountant(orders=list(orders))
    for (ev, q), n in sorted_groups(flatten(events)):
        acc.compose(_rdp_event(ev, q, pure_part), n)
    curve = np.asarray(acc._rdp, dtype=float)  # the accountant's running sum; no public getter in 0.6.0
    return np.where(np.isnan(curve), np.inf, curve)


def rdp_epsilon(events: Sequence[DpEvent], delta: float) -> float:
    """Epsilon at `delta` of the whole history by RDP (an upper bound, looser than PLD)."""
    acc = rdp_lib.RdpAccountant()
    for (ev, q), n in sorted_groups(flatten(events)):
        acc.compose(_rdp_event(ev, q), n)
    return float(acc.get_epsilon(delta))
