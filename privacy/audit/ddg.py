"""The auditor's own recomputation of the distributed discrete Gaussian (issue 11): both guarantees and both checks.

Written again here from the paper, NOT imported from the node's code (privacy/accounting/ddg.py,
privacy/distributed_dp.py), like the rest of privacy/audit/recompute.py. Kairouz, Liu & Steinke 2021, "The
Distributed Discrete Gaussian Mechanism for Federated Learning with Secure Aggregation", ICML,
https://arxiv.org/abs/2102.06387:

- one step's RDP, Proposition 14 / Eq. 17 (their accounting_utils.py `compute_rdp_dgaussian`): with
  l2 = Delta_2/(sqrt(h) sigma), l1 = Delta_2 min(sqrt(D), Delta_2)/(sqrt(h) sigma), D = dim + 1,
  tau = 10 sum_{k=1}^{h-1} exp(-2 pi^2 sigma^2 k/(k+1)):
  eps(a) = min{a l2^2/2 + tau D, a/2 (l2^2 + 2 l1 tau + tau^2 D), a/2 (l2 + sqrt(D) tau)^2};
- Poisson subsampling: Zhu & Wang 2019 (http://proceedings.mlr.press/v97/zhu19c.html), the general upper bound
  at integer orders (a fractional order takes its ceiling's value), never above eps(a);
- the sensitivity after conditional randomised rounding (their Theorem 1, `rounded_l2_norm_bound`), recomputed
  from clip, gamma, beta, dim and the count coordinate: a logged l2_sensitivity below it is a FAIL;
- the modular-clipping (wrap) bound at bits, participants, sigma, max_people: 2 (D) exp(-m^2/(2 n sigma^2)),
  m = 2^(bits-1) - 1 - max_people Delta_2 (each share sigma-subgaussian, Canonne, Kamath & Steinke 2020,
  Corollary 9). A wrap damages the result, not privacy: above WRAP_LIMIT it is a WARN.

The trust figure counts the logged `shares` (h honest nodes); the own-share figure is the same event with
shares = 1 (this node's share alone, every other node colluding).
"""

from __future__ import annotations

import math

import attr
import numpy as np
from dp_accounting import dp_event as dpe
from dp_accounting.rdp import rdp_privacy_accountant as rdp_acc
from scipy import special

from protos import events_pb2

WRAP_LIMIT = 1e-6  # a wrap bound above this is reported (WARN): the result may be garbage, privacy is intact
KIND = "distributed_discrete_gaussian"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DdgDpEvent(dpe.DpEvent):
    """One distributed discrete Gaussian step as logged (dp_accounting has no event for it)."""

    sigma: float
    shares: int
    dim: int
    l2_sensitivity: float


def to_event(m: events_pb2.DistributedDiscreteGaussianEvent) -> DdgDpEvent:
    """The logged step as the auditor's event; refuses what the bounds do not cover: counts below 1, more
    honest shares than participants, a non-finite or non-positive sigma or sensitivity, and a sum of shares
    with sigma < 1/2 (their Theorem 1 / Proposition 14 assume sigma >= 1/2; one share is a plain discrete
    Gaussian, Canonne, Kamath & Steinke 2020, Theorem 4, at any sigma). The sensitivity: check_event."""
    if (m.shares < 1 or m.dim < 1 or m.participants < 1 or m.shares > m.participants
            or not (0 < m.sigma < math.inf and 0 < m.l2_sensitivity < math.inf) or (m.shares > 1 and not m.sigma >= 0.5)):
        raise ValueError(f"distributed discrete Gaussian with shares={m.shares} of participants={m.participants}, "
                         f"dim={m.dim}, sigma={m.sigma}, l2_sensitivity={m.l2_sensitivity}: not accountable "
                         f"(needs counts >= 1, shares <= participants, finite sigma, sigma >= 1/2 for 2+ shares)")
    return DdgDpEvent(sigma=m.sigma, shares=int(m.shares), dim=int(m.dim), l2_sensitivity=m.l2_sensitivity)


def _step(ev: DdgDpEvent, a: np.ndarray) -> np.ndarray:
    D = ev.dim + 1
    s = math.sqrt(ev.shares) * ev.sigma
    l2 = ev.l2_sensitivity / s
    l1 = ev.l2_sensitivity * min(math.sqrt(D), ev.l2_sensitivity) / s
    t = 10.0 * math.fsum(math.exp(-2.0 * (math.pi * ev.sigma) ** 2 * k / (k + 1)) for k in range(1, ev.shares))
    return np.minimum(np.minimum(a * l2 * l2 / 2 + t * D, a / 2 * (l2 * l2 + 2 * l1 * t + t * t * D)),
                      a / 2 * (l2 + math.sqrt(D) * t) ** 2)


def step_curve(ev: DdgDpEvent, q: float, orders) -> np.ndarray:
    """RDP of one step at sampling rate q at `orders`."""
    orders = np.asarray(orders, dtype=float)
    if q >= 1:
        return _step(ev, orders)
    top = max(2, int(math.ceil(orders.max())))
    eps = _step(ev, np.arange(top + 1, dtype=float))
    out = []
    for o in orders:
        a = max(2, int(math.ceil(o)))
        terms = [0.0, float(eps[2])]
        weights = [(1 - q) ** (a - 1) * (a * q - q + 1), special.comb(a, 2) * q * q * (1 - q) ** (a - 2)]
        for v in range(3, a + 1):
            terms.append((v - 1) * float(eps[v]) + float(special.gammaln(a + 1) - special.gammaln(v + 1) -
                                                         special.gammaln(a - v + 1)) + (a - v) * math.log1p(-q) + v * math.log(q))
            weights.append(3.0)
        out.append(min(float(special.logsumexp(terms, b=weights)) / (a - 1), float(eps[a])))
    return np.array(out)


def contains(e: dpe.DpEvent) -> bool:
    """Whether a converted event holds a distributed step."""
    if isinstance(e, DdgDpEvent):
        return True
    if isinstance(e, (dpe.SelfComposedDpEvent, dpe.PoissonSampledDpEvent)):
        return contains(e.event)
    return isinstance(e, dpe.ComposedDpEvent) and any(contains(x) for x in e.events)


def curve_of(e: dpe.DpEvent, orders, q: float = 1.0) -> np.ndarray:
    """The RDP curve of an event tree whose leaves are distributed steps or no-ops (anything else:
    NotImplementedError, and the caller's RDP bound is +inf)."""
    if isinstance(e, DdgDpEvent):
        return step_curve(e, q, orders)
    if isinstance(e, dpe.NoOpDpEvent):
        return np.zeros(len(orders))
    if isinstance(e, dpe.SelfComposedDpEvent):
        return e.count * curve_of(e.event, orders, q)
    if isinstance(e, dpe.ComposedDpEvent):
        return sum((curve_of(x, orders, q) for x in e.events), np.zeros(len(orders)))
    if isinstance(e, dpe.PoissonSampledDpEvent) and isinstance(e.event, (DdgDpEvent, dpe.PoissonSampledDpEvent)):
        return curve_of(e.event, orders, q * e.sampling_probability)
    if isinstance(e, dpe.PoissonSampledDpEvent):  # a shared sample of a composite: no amplification claimed
        return curve_of(e.event, orders, 1.0)
    raise NotImplementedError(f"no RDP curve for {type(e).__name__} beside a distributed step")


def steps_of(ev: events_pb2.DpEvent) -> list[events_pb2.DistributedDiscreteGaussianEvent]:
    """The distributed steps logged in a (protobuf) event."""
    which = ev.WhichOneof("event")
    if which == KIND:
        return [ev.distributed_discrete_gaussian]
    if which in ("self_composed", "poisson_sampled"):
        return steps_of(getattr(ev, which).event)
    if which == "composed":
        return [s for e in ev.composed.events for s in steps_of(e)]
    return []


def own_share(ev: events_pb2.DpEvent) -> events_pb2.DpEvent:
    """A copy of `ev` with every distributed step's shares set to 1 (this node's share alone)."""
    out = events_pb2.DpEvent()
    out.CopyFrom(ev)
    for s in steps_of(out):
        s.shares = 1
    return out


def rounded_l2(norm: float, beta: float, dim: int) -> float:
    """L2 bound after conditional randomised rounding to Z^dim (Kairouz, Liu & Steinke 2021, Theorem 1)."""
    b1 = norm + math.sqrt(dim)
    if beta <= 0:
        return b1
    return min(b1, math.sqrt(norm * norm + dim / 4 + math.sqrt(2 * math.log(1 / beta)) * (norm + math.sqrt(dim) / 2)))


def recomputed_l2(m: events_pb2.DistributedDiscreteGaussianEvent) -> float:
    """One person's L2 sensitivity (integer units) from clip, gamma, beta, dim, count_weight."""
    units = round(m.count_weight / m.gamma)
    return math.sqrt(rounded_l2(m.clip / m.gamma, m.beta, int(m.dim)) ** 2 + units * units)


def wrap_bound(m: events_pb2.DistributedDiscreteGaussianEvent) -> float:
    """Upper bound on the probability that some coordinate of the modular sum wraps (module doc)."""
    margin = 2.0 ** (m.bits - 1) - 1 - m.max_people * m.l2_sensitivity
    if margin <= 0 or m.participants < 1:
        return 1.0
    return min(1.0, math.exp(math.log(2.0 * (m.dim + 1)) - margin * margin / (2.0 * m.participants * m.sigma ** 2)))


def epsilon_alone(ev: events_pb2.DpEvent, delta: float, to_dp_event) -> float:
    """Epsilon of one logged event by itself (fixed in advance), by the curve above and dp_accounting's
    RDP-to-(epsilon, delta) conversion at its default orders."""
    acc = rdp_acc.RdpAccountant()
    curve = curve_of(to_dp_event(ev), acc._orders)
    return float(rdp_acc.compute_epsilon(np.asarray(acc._orders), curve, delta)[0])


def check_event(ev: events_pb2.DpEvent, delta: float, to_dp_event) -> tuple[list[str], list[str], dict]:
    """(problems, warnings, figures) of one logged event holding distributed steps: the sensitivity and the
    wrap bound recomputed for each step; the trust and own-share epsilons of the event alone."""
    problems: list[str] = []
    warns: list[str] = []
    figures: dict = {}
    for m in steps_of(ev):
        if not (m.gamma > 0 and m.clip > 0 and m.count_weight > 0 and 0 <= m.beta < 1 and m.dim >= 1 and 2 <= m.bits <= 62
                and all(math.isfinite(x) for x in (m.gamma, m.clip, m.count_weight))):
            problems.append(f"quantisation parameters out of range (gamma {m.gamma}, clip {m.clip}, beta {m.beta})")
            continue
        l2 = recomputed_l2(m)
        if not m.l2_sensitivity >= l2 * (1 - 1e-12):
            problems.append(f"logged L2 sensitivity {m.l2_sensitivity:.9g} is BELOW the recomputed {l2:.9g} "
                            f"(clip {m.clip:g}, gamma {m.gamma:.6g}, beta {m.beta:.4g}, dim {m.dim}, conditional rounding)")
        if m.shares > m.participants:
            problems.append(f"counts on {m.shares} honest shares among {m.participants} participants")
        w = wrap_bound(m)
        if w > WRAP_LIMIT:
            warns.append(f"modular wrap bound {w:.3g} at {m.bits} bits, {m.participants} participants (above {WRAP_LIMIT:g})")
        figures.update(ddg_l2_recomputed=l2, ddg_wrap_bound=w, ddg_shares=int(m.shares),
                       ddg_participants=int(m.participants), ddg_bits=int(m.bits), ddg_gamma=m.gamma)
    try:
        figures["ddg_trust_epsilon"] = epsilon_alone(ev, delta, to_dp_event)
        figures["ddg_own_epsilon"] = epsilon_alone(own_share(ev), delta, to_dp_event)
    except (NotImplementedError, ValueError) as ex:
        problems.append(f"cannot account the distributed steps: {ex}")
    return problems, warns, figures
