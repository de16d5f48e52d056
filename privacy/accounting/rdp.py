"""Epsilon by Renyi DP: looser than PLD, a sound fallback (ARCHITECTURE.md invariant 5).

Renyi DP (Mironov 2017, "Renyi Differential Privacy", https://arxiv.org/abs/1702.07476); the
subsampled Gaussian by Mironov, Talwar & Zhang 2019, "Renyi Differential Privacy of the Sampled
Gaussian Mechanism" (https://arxiv.org/abs/1908.10530), converted to (eps, delta) with
dp_accounting's conversion. dp_accounting logs (through absl) a warning for every fractional order
it cannot evaluate at large q and then excludes that order, still a sound bound; `privacy.configure`
quiets those logs.

Each base mechanism's curve is evaluated ONCE per (mechanism, sampling rate, orders) and cached
(`event_curve`; issue 16: RDP evaluation dominated a node's time): the closed form alpha / (2 z^2) of
the unsubsampled Gaussian family is vectorised over orders with numpy (the same float operations as
dp_accounting's, element by element), anything else is dp_accounting's own curve for one use. A history's
curve is then sum(count * curve) in the deterministic group order, exactly as dp_accounting's
accountant accumulates it (`acc._rdp += count * curve`), so the figures are the library's, bit for bit.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from dp_accounting import dp_event as dpe
from dp_accounting.rdp import rdp_privacy_accountant as rdp_lib

from privacy.accounting.ddg import ddg_curve
from privacy.accounting.history import AccountingError, flatten, sorted_groups
from privacy.events import (
    DiscreteGaussianEvent,
    DiscreteLaplaceEvent,
    DistributedDiscreteGaussianEvent,
    DpEvent,
    EpsilonDeltaEvent,
    GaussianEvent,
    LaplaceEvent,
)


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


def _gaussian(z: float, orders: np.ndarray) -> np.ndarray:
    """alpha / (2 z^2) per order: dp_accounting's expression, element by element (the same float ops)."""
    return orders / (2 * z**2)


@functools.lru_cache(maxsize=4096)
def _cached_curve(ev: DpEvent, q: float, orders: tuple[float, ...], pure_part: bool) -> np.ndarray:
    a = np.asarray(orders, dtype=float)
    if isinstance(ev, GaussianEvent) and q == 1.0:
        curve = _gaussian(ev.sigma / ev.sensitivity, a)
    elif isinstance(ev, DistributedDiscreteGaussianEvent):  # Kairouz, Liu & Steinke 2021 + Zhu & Wang 2019 (ddg.py)
        curve = ddg_curve(ev, q, orders)
    elif isinstance(ev, DiscreteGaussianEvent):  # the Gaussian's curve (Canonne, Kamath & Steinke 2020, Thm 4)
        curve = _gaussian(ev.sigma / ev.sensitivity, a)
    elif isinstance(ev, DiscreteLaplaceEvent):  # eps0-DP -> eps0^2/2-zCDP (Bun & Steinke 2016, Prop. 1.4)
        curve = _gaussian(1.0 / (ev.sensitivity / ev.scale), a)
    elif isinstance(ev, EpsilonDeltaEvent) and (ev.delta == 0 or pure_part) and ev.epsilon > 0:
        curve = _gaussian(1.0 / ev.epsilon, a)
    else:  # subsampled Gaussian, Laplace, NoOp-like: dp_accounting's own code, order by order, once
        acc = rdp_lib.RdpAccountant(orders=list(orders))
        acc.compose(_rdp_event(ev, q, pure_part), 1)  # raises AccountingError where no curve exists
        curve = np.array(acc._rdp, dtype=float)  # 0 + 1 * curve: exactly the library's curve for one use
    curve.setflags(write=False)
    return curve


def event_curve(ev: DpEvent, q: float, orders: Sequence[float], pure_part: bool = False) -> np.ndarray:
    """The RDP curve (read-only; NaN where the library could not evaluate an order) of ONE use of the base
    mechanism `ev` at sampling rate `q`, as `_rdp_event` maps it onto dp_accounting; cached."""
    return _cached_curve(ev, float(q), tuple(float(o) for o in orders), bool(pure_part))


def groups_curve(groups: list, orders: Sequence[float], pure_part: bool = False) -> np.ndarray:
    """sum(count * curve) over `groups` (sorted_groups output) in order, as dp_accounting accumulates it."""
    total = np.zeros(len(orders), dtype=np.float64)
    for (ev, q), n in groups:
        total += n * event_curve(ev, q, orders, pure_part)
    return total


def clear_cache() -> None:
    """Forget the cached curves (for benchmarks that time a cold start)."""
    _cached_curve.cache_clear()


def rdp_curve(events: Sequence[DpEvent], orders: Sequence[float], pure_part: bool = False) -> np.ndarray:
    """The history's RDP curve (the sum of each event's Renyi divergence bound) at `orders`, by
    dp_accounting's RDP accountant (an order it cannot evaluate is +inf: never within a budget).
    `pure_part`: an (epsilon, delta) event counts by its pure epsilon part (the caller accounts its delta)."""
    curve = groups_curve(sorted_groups(flatten(events)), orders, pure_part)
    return np.where(np.isnan(curve), np.inf, curve)


_DEFAULT_ORDERS = tuple(float(o) for o in rdp_lib.RdpAccountant()._orders)


def rdp_epsilon(events: Sequence[DpEvent], delta: float) -> float:
    """Epsilon at `delta` of the whole history by RDP (an upper bound, looser than PLD), at dp_accounting's
    default orders and by its conversion."""
    curve = groups_curve(sorted_groups(flatten(events)), _DEFAULT_ORDERS)
    return float(rdp_lib.compute_epsilon(np.asarray(_DEFAULT_ORDERS), curve, delta)[0])
