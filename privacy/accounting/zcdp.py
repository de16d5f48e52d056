"""Zero-concentrated DP: rho of a history without subsampling, and its (eps, delta).

zCDP (Bun & Steinke 2016, "Concentrated Differential Privacy: Simplifications, Extensions, and
Lower Bounds", https://arxiv.org/abs/1605.02065) applies only to histories without Poisson
subsampling (it has no tight amplification). Sound (ARCHITECTURE.md invariant 5), looser than PLD.
"""

from __future__ import annotations

from typing import Sequence

from dp_accounting import dp_event as dpe
from dp_accounting.rdp import rdp_privacy_accountant as rdp_lib

from privacy.accounting.ddg import step_rho
from privacy.accounting.history import flatten
from privacy.events import DiscreteGaussianEvent, DistributedDiscreteGaussianEvent, DpEvent, EpsilonDeltaEvent, GaussianEvent


def zcdp_rho(events: Sequence[DpEvent]) -> float | None:
    """rho of the whole history, or None if any part is subsampled (zCDP has no tight amplification)
    or only (epsilon, delta)-DP with delta > 0 (no zCDP bound exists for it)."""
    rho = 0.0
    for (ev, q), n in flatten(events).items():
        if q < 1.0 or (isinstance(ev, EpsilonDeltaEvent) and ev.delta > 0):
            return None
        if isinstance(ev, EpsilonDeltaEvent):  # pure eps-DP: eps^2/2-zCDP (Bun & Steinke, Prop. 1.4)
            rho += n * ev.epsilon * ev.epsilon / 2.0
            continue
        if isinstance(ev, DistributedDiscreteGaussianEvent):  # Kairouz, Liu & Steinke 2021 (privacy/accounting/ddg.py)
            rho += n * step_rho(ev)
            continue
        if isinstance(ev, (GaussianEvent, DiscreteGaussianEvent)):
            # Bun & Steinke 2016 Prop. 1.6; discrete: Canonne, Kamath & Steinke 2020 Thm. 4
            # (https://arxiv.org/abs/2004.00010).
            rho += n * (ev.sensitivity / ev.sigma) ** 2 / 2.0
        else:  # Laplace / discrete Laplace are pure eps0-DP: eps0^2/2-zCDP (Bun & Steinke, Prop. 1.4)
            eps0 = ev.sensitivity / ev.scale
            rho += n * eps0 * eps0 / 2.0
    return rho


def zcdp_epsilon(rho: float, delta: float) -> float:
    """(eps, delta) from rho-zCDP via the RDP conversion (Canonne, Kamath & Steinke 2020,
    Proposition 12 (v4), https://arxiv.org/abs/2004.00010)."""
    if rho == 0:
        return 0.0
    acc = rdp_lib.RdpAccountant()
    acc.compose(dpe.ZCDpEvent(rho))
    return float(acc.get_epsilon(delta))
