"""Accounting of the distributed discrete Gaussian: the RDP curve of one step, Poisson-subsampled, and its zCDP.

The mechanism (privacy/events.py `DistributedDiscreteGaussianEvent`, privacy/distributed_dp.py): `shares`
independent N_Z(0, sigma^2) per coordinate, summed under secure aggregation, on an integer vector of D = dim + 1
coordinates whose L2 sensitivity (one person added or removed) is Delta_2. The sum of discrete Gaussians is
not a discrete Gaussian; Kairouz, Liu & Steinke 2021 ("The Distributed Discrete Gaussian Mechanism for Federated
Learning with Secure Aggregation", ICML, https://arxiv.org/abs/2102.06387) bound its Renyi divergences.
With s = shares, l2 = Delta_2 / (sqrt(s) sigma), l1 = Delta_1 / (sqrt(s) sigma),
tau = 10 * sum_{k=1}^{s-1} exp(-2 pi^2 sigma^2 k / (k + 1))  (their Theorem 1, for sigma >= 1/2; tau = 0 for one share),

    eps(alpha) = min{ alpha l2^2 / 2 + tau D,  alpha/2 (l2^2 + 2 l1 tau + tau^2 D),  alpha/2 (l2 + sqrt(D) tau)^2 }

(their Proposition 14 / Eq. 17, as their accounting code computes it: google-research/federated,
distributed_dp/accounting_utils.py `compute_rdp_dgaussian`). Delta_1 <= Delta_2 * min(sqrt(D), Delta_2): an
integer vector's L1 norm is at most its squared L2 norm (their `rounded_l1_norm_bound`).

Poisson subsampling at rate q < 1, as their code does: Zhu & Wang 2019, "Poisson Subsampled Renyi Differential
Privacy", ICML, http://proceedings.mlr.press/v97/zhu19c.html, their GENERAL upper bound (the code above:
`_compute_rdp_subsampled(..., upper_bound=True)`, "Theorem 5" in its docstring), valid for ANY mechanism with
RDP curve eps(.) at integer orders alpha >= 2:

    eps_q(alpha) <= 1/(alpha-1) log[ (1-q)^(alpha-1) (alpha q - q + 1) + C(alpha,2) q^2 (1-q)^(alpha-2) e^eps(2)
                                     + 3 sum_{l=3}^{alpha} C(alpha,l) (1-q)^(alpha-l) q^l e^((l-1) eps(l)) ],

and never above eps(alpha) (subsampling never hurts). This does NOT use the Gaussian-specific amplification of
Mironov, Talwar & Zhang 2019: the sum of shares is not a Gaussian, so only the general bound is proven for it.
It is conservative, and it costs noise: at tau = 0 (large sigma) it is 15-40% above the subsampled Gaussian's
RDP epsilon (q=0.01, z=1, 1000 steps, delta 1e-6: 2.83 vs 2.44; the central PLD figure is 2.12), and the noise
multiplier a target needs is 1.2-1.3x the central one at epsilon 3-8 (q=0.05, 100 steps), 4x at epsilon 1 there
(8.7 vs 2.1; measured with privacy/distributed_dp.py `ddg_noise_multiplier`). Tighter is possible only with a
proof that the subsampled (sum of) discrete Gaussians is dominated by the subsampled Gaussian, not written here.
A fractional order alpha is given the bound at ceil(alpha)
when subsampled (Renyi divergence is nondecreasing in its order: van Erven & Harremoes 2014, Theorem 3,
https://arxiv.org/abs/1206.2459). Composition over steps is the sum of curves (privacy/accounting/rdp.py).

zCDP (no subsampling only): the last two terms are linear in alpha, so one step is rho-zCDP with
rho = min{ l2^2 + 2 l1 tau + tau^2 D, (l2 + sqrt(D) tau)^2 } / 2 (Bun & Steinke 2016 Definition 1.1).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
from scipy import special

from privacy.accounting.history import AccountingError
from privacy.ddg_rules import violation as ddg_violation
from privacy.events import DistributedDiscreteGaussianEvent


def check(ev: DistributedDiscreteGaussianEvent) -> None:
    """Refuse an event the bounds above do not cover (privacy/ddg_rules.py: counts >= 1, shares <= participants,
    sigma >= 1/2 for a sum of shares, the sensitivity after conditional rounding). The constructor already
    refuses these; checked again here since an accountant must never run outside its theorem's conditions."""
    if (why := ddg_violation(ev)) is not None:
        raise AccountingError(f"DistributedDiscreteGaussianEvent: {why}")


def tau(sigma: float, shares: int) -> float:
    """tau of Kairouz, Liu & Steinke 2021, Theorem 1: 10 * sum_{k=1}^{shares-1} exp(-2 pi^2 sigma^2 k/(k+1))."""
    return 10.0 * math.fsum(math.exp(-2.0 * (math.pi * sigma) ** 2 * k / (k + 1)) for k in range(1, int(shares)))


def step_terms(ev: DistributedDiscreteGaussianEvent) -> tuple[float, float, float, int]:
    """(l2, l1, tau, D) of one step (module doc)."""
    check(ev)
    D = ev.dim + 1
    total = math.sqrt(ev.shares) * ev.sigma
    l1_sens = ev.l2_sensitivity * min(math.sqrt(D), ev.l2_sensitivity)
    return ev.l2_sensitivity / total, l1_sens / total, tau(ev.sigma, ev.shares), D


def step_rdp(ev: DistributedDiscreteGaussianEvent, alpha: np.ndarray) -> np.ndarray:
    """eps(alpha) of one unsubsampled step (Prop. 14, module doc), elementwise."""
    l2, l1, t, D = step_terms(ev)
    a = np.asarray(alpha, dtype=float)
    t1 = a * l2 * l2 / 2.0 + t * D
    t2 = a / 2.0 * (l2 * l2 + 2.0 * l1 * t + t * t * D)
    t3 = a / 2.0 * (l2 + math.sqrt(D) * t) ** 2
    return np.minimum(np.minimum(t1, t2), t3)


def step_rho(ev: DistributedDiscreteGaussianEvent) -> float:
    """rho (zCDP) of one unsubsampled step (module doc)."""
    l2, l1, t, D = step_terms(ev)
    return min(l2 * l2 + 2.0 * l1 * t + t * t * D, (l2 + math.sqrt(D) * t) ** 2) / 2.0


def _subsampled(eps: np.ndarray, alpha: int, q: float) -> float:
    """Zhu & Wang 2019's general upper bound at integer order alpha >= 2; eps[l] = eps(l) for l = 0..alpha."""
    ls = np.arange(3, alpha + 1)
    log_comb = special.gammaln(alpha + 1) - special.gammaln(ls + 1) - special.gammaln(alpha - ls + 1)
    a = np.concatenate([[0.0, float(eps[2])], (ls - 1) * eps[ls] + log_comb + (alpha - ls) * math.log1p(-q) + ls * math.log(q)])
    b = np.concatenate([[(1 - q) ** (alpha - 1) * (alpha * q - q + 1), special.comb(alpha, 2) * q * q * (1 - q) ** (alpha - 2)],
                        np.full(ls.size, 3.0)])
    return float(special.logsumexp(a=a, b=b)) / (alpha - 1)


@functools.lru_cache(maxsize=1024)
def _curve(ev: DistributedDiscreteGaussianEvent, q: float, orders: tuple[float, ...]) -> tuple[float, ...]:
    if q >= 1.0:
        return tuple(float(v) for v in step_rdp(ev, np.asarray(orders)))
    top = max(2, math.ceil(max(orders)))
    eps = step_rdp(ev, np.arange(top + 1, dtype=float))  # eps[l] for l = 0..top (0 and 1 unused)
    out = []
    for o in orders:
        alpha = max(2, math.ceil(o))
        out.append(min(_subsampled(eps, alpha, q), float(eps[alpha])))
    return tuple(out)


def ddg_curve(ev: DistributedDiscreteGaussianEvent, q: float, orders: Sequence[float]) -> np.ndarray:
    """The RDP curve of one step at sampling rate `q` (1: no subsampling) at `orders` (module doc); cached."""
    if not 0 < q <= 1:
        raise AccountingError(f"sampling probability must be in (0, 1], got {q!r}")
    return np.array(_curve(ev, float(q), tuple(float(o) for o in orders)), dtype=float)
