"""The auditor's INDEPENDENT epsilon recomputation, from the logged DP events alone.

The node's accountant (privacy/accounting/) flattens and merges event trees before calling
dp_accounting. This module does not import it (a test checks): it converts each logged event
(protobuf) to dp_accounting's own `dp_event` objects and composes privacy loss distributions with
dp_accounting's public PLD constructors (`dp_accounting.pld.privacy_loss_distribution`,
add/remove-one neighbouring, pessimistic discretisation), reading the cumulative epsilon after each
entry. It composes exactly as `dp_accounting.pld.PLDAccountant` does and adds what that accountant
lacks: the discrete Gaussian (no dp_event exists for it) and Poisson-sampled discrete mechanisms,
both with the library's exact PLDs for integer queries (`from_discrete_gaussian_mechanism`,
`from_discrete_laplace_mechanism`; Canonne, Kamath & Steinke 2020, "The Discrete Gaussian for
Differential Privacy", NeurIPS, https://arxiv.org/abs/2004.00010). Poisson sampling of a composite
event is ONE shared sample: a composite of Gaussians only is the Gaussian of the composed mu (Dong,
Roth & Su 2019, https://arxiv.org/abs/1905.02383, Corollary 2.1) on that sample, i.e. a
Poisson-subsampled Gaussian of noise multiplier 1/mu (Zhu, Dong & Wang 2022,
https://arxiv.org/abs/2106.08567, Theorem 11); dp_accounting's RDP accountant reads the same shape
this way (`PoissonSampledDpEvent` over Composed/SelfComposed Gaussians). Any other composite under
sampling is accounted without amplification (sound: subsampling never increases the divergence).

dp_accounting's RDP accountant is run as a second, looser sound bound; the recomputed epsilon is the
smaller of the two. This protects ARCHITECTURE.md invariant 5 (epsilon is never under-reported): a
claim below this recomputation is caught by the `epsilon` check.
"""

from __future__ import annotations

import functools
import math

import attr
import numpy as np
from dp_accounting import dp_event as dpe
from dp_accounting.pld import common as pld_common
from dp_accounting.pld import privacy_loss_distribution as pld_lib
from dp_accounting.rdp import rdp_privacy_accountant as rdp_acc

from privacy.audit import ddg
from privacy.events import EventError
from protos import events_pb2

# A first pass on a grid coarser than the nodes' 1e-4: still pessimistic (an upper bound), ~10x
# faster, usually within the 6th digit. For discrete mechanisms it can be ~2% looser, so a claim
# that falls below it is recomputed on the fine grid before it is called under-reported.
VALUE_DISCRETIZATION_INTERVAL = 1e-3
FINE_DISCRETIZATION_INTERVAL = 1e-4


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DiscreteGaussianDpEvent(dpe.DpEvent):
    """Discrete Gaussian N_Z(0, sigma^2) on an integer query of L2 sensitivity `sensitivity`
    (Canonne, Kamath & Steinke 2020, https://arxiv.org/abs/2004.00010). dp_accounting has a PLD for
    it but no event."""

    sigma: float
    sensitivity: int


@attr.s(frozen=True, slots=True, auto_attribs=True)
class EpsilonDeltaDpEvent(dpe.DpEvent):
    """A mechanism known only to be (epsilon, delta)-DP (thresholded key selection). dp_accounting
    0.6 has no event for it; its PLD is the library's `from_privacy_parameters`, the (eps, delta)
    randomized-response pair that dominates every (eps, delta)-DP mechanism (Kairouz, Oh &
    Viswanath 2015, "The Composition Theorem for Differential Privacy",
    https://arxiv.org/abs/1311.0776, Sec. 3). No RDP curve exists for delta > 0."""

    epsilon: float
    delta: float


def to_dp_event(ev: events_pb2.DpEvent) -> dpe.DpEvent:
    """A ledger event (protobuf) as dp_accounting's own event objects. Noise multipliers are
    sigma / sensitivity (Gaussian, L2) and scale / sensitivity (Laplace, L1); dp_accounting's
    discrete Laplace parameter is the inverse scale (pmf ~ exp(-a|x|))."""
    which = ev.WhichOneof("event")
    if which == "gaussian":
        return dpe.GaussianDpEvent(noise_multiplier=ev.gaussian.sigma / ev.gaussian.sensitivity)
    if which == "discrete_gaussian":
        return DiscreteGaussianDpEvent(sigma=ev.discrete_gaussian.sigma, sensitivity=int(ev.discrete_gaussian.sensitivity))
    if which == "laplace":
        return dpe.LaplaceDpEvent(noise_multiplier=ev.laplace.scale / ev.laplace.sensitivity)
    if which == "discrete_laplace":
        return dpe.DiscreteLaplaceDpEvent(noise_parameter=1.0 / ev.discrete_laplace.scale,
                                          sensitivity=int(ev.discrete_laplace.sensitivity))
    if which == "poisson_sampled":
        return dpe.PoissonSampledDpEvent(sampling_probability=ev.poisson_sampled.sampling_probability,
                                         event=to_dp_event(ev.poisson_sampled.event))
    if which == "self_composed":
        return dpe.SelfComposedDpEvent(event=to_dp_event(ev.self_composed.event), count=int(ev.self_composed.count))
    if which == "composed":
        return dpe.ComposedDpEvent(events=[to_dp_event(e) for e in ev.composed.events])
    if which == "no_op":
        return dpe.NoOpDpEvent()
    if which == "epsilon_delta":
        return EpsilonDeltaDpEvent(epsilon=ev.epsilon_delta.epsilon, delta=ev.epsilon_delta.delta)
    if which == ddg.KIND:  # issue 11: accounted by privacy/audit/ddg.py (RDP only)
        return ddg.to_event(ev.distributed_discrete_gaussian)
    raise EventError("DpEvent message has no event set")


def gaussian_noise_multiplier(event: dpe.DpEvent) -> float | None:
    """1/mu of a nested Composed/SelfComposed structure of Gaussians only (mu^2 = sum of
    1/noise_multiplier^2, Dong, Roth & Su 2019, Corollary 2.1); 0 for a zero-noise part; None for
    any other event (a single Gaussian is not a composite and is handled directly)."""
    def inv2(e: dpe.DpEvent) -> float | None:
        if isinstance(e, dpe.GaussianDpEvent):
            return math.inf if e.noise_multiplier == 0 else e.noise_multiplier ** -2
        if isinstance(e, dpe.NoOpDpEvent):
            return 0.0
        if isinstance(e, dpe.SelfComposedDpEvent):
            v = inv2(e.event)
            return None if v is None else (0.0 if e.count == 0 else v * e.count)
        if isinstance(e, dpe.ComposedDpEvent):
            parts = [inv2(x) for x in e.events]
            return None if any(v is None for v in parts) else float(sum(parts))  # type: ignore[arg-type]
        return None
    if not isinstance(event, (dpe.SelfComposedDpEvent, dpe.ComposedDpEvent)):
        return None
    total = inv2(event)
    if total is None or total == 0:
        return None
    return 0.0 if math.isinf(total) else 1.0 / math.sqrt(total)


class PLDComposer:
    """Cumulative privacy loss distribution of a sequence of dp_events (add/remove-one, pessimistic).

    Each mechanism's PLD is built by the same public constructor, with the same arguments, as
    dp_accounting's PLDAccountant uses for it, so the two agree where both apply."""

    def __init__(self, interval: float = VALUE_DISCRETIZATION_INTERVAL):
        self.interval = interval
        self.pld = pld_lib.identity(value_discretization_interval=interval)
        self.non_private = False  # a zero-noise mechanism: epsilon is infinite
        self.no_pld = False  # a distributed discrete Gaussian step: no PLD is proven for it (RDP accounts it)

    def compose(self, event: dpe.DpEvent, count: int = 1) -> None:
        """Compose `event`, `count` times."""
        vdi = self.interval
        if isinstance(event, dpe.NoOpDpEvent):
            return
        if ddg.contains(event):
            self.no_pld = True
            return
        if isinstance(event, dpe.SelfComposedDpEvent):
            self.compose(event.event, event.count * count)
            return
        if isinstance(event, dpe.ComposedDpEvent):
            for e in event.events:
                self.compose(e, count)
            return
        q, inner = 1.0, event
        while isinstance(inner, dpe.PoissonSampledDpEvent):  # independent Poisson samples multiply
            q *= inner.sampling_probability
            inner = inner.event
        sampled = isinstance(event, dpe.PoissonSampledDpEvent)
        if isinstance(inner, (dpe.GaussianDpEvent, dpe.LaplaceDpEvent)) and sampled and q == 0:
            return  # nobody sampled
        if isinstance(inner, dpe.GaussianDpEvent):
            if inner.noise_multiplier == 0:
                self.non_private = True
            elif sampled:
                self._add(pld_lib.from_gaussian_mechanism(standard_deviation=inner.noise_multiplier,
                                                          value_discretization_interval=vdi, sampling_prob=q),
                          count, always=True)
            else:  # count Gaussians compose to one, with sigma / sqrt(count)
                self.pld = self.pld.compose(pld_lib.from_gaussian_mechanism(
                    standard_deviation=inner.noise_multiplier / math.sqrt(count), value_discretization_interval=vdi))
        elif isinstance(inner, dpe.LaplaceDpEvent):
            if inner.noise_multiplier == 0:
                self.non_private = True
            else:
                kw = {"sampling_prob": q} if sampled else {}
                self._add(pld_lib.from_laplace_mechanism(parameter=inner.noise_multiplier,
                                                         value_discretization_interval=vdi, **kw), count, always=True)
        elif isinstance(inner, DiscreteGaussianDpEvent):
            self._add(pld_lib.from_discrete_gaussian_mechanism(
                sigma=inner.sigma, sensitivity=inner.sensitivity, value_discretization_interval=vdi, sampling_prob=q), count)
        elif isinstance(inner, dpe.DiscreteLaplaceDpEvent):
            if inner.noise_parameter == 0:
                self.non_private = True
            else:
                self._add(pld_lib.from_discrete_laplace_mechanism(
                    parameter=inner.noise_parameter, sensitivity=inner.sensitivity, value_discretization_interval=vdi,
                    sampling_prob=q), count, always=q == 1.0)
        elif isinstance(inner, EpsilonDeltaDpEvent):  # sampling of it: no amplification claimed
            self._add(pld_lib.from_privacy_parameters(
                pld_common.DifferentialPrivacyParameters(inner.epsilon, inner.delta), value_discretization_interval=vdi),
                count, always=True)
        elif sampled and (nm := gaussian_noise_multiplier(inner)) is not None:
            if nm == 0:
                self.non_private = True
            else:  # one shared sample feeding only Gaussians: one subsampled Gaussian (module doc)
                self._add(pld_lib.from_gaussian_mechanism(standard_deviation=nm, value_discretization_interval=vdi,
                                                          sampling_prob=q), count, always=True)
        elif sampled:
            self.compose(inner, count)  # sampling of another composite: no amplification claimed (sound, loose)
        else:
            raise EventError(f"the auditor cannot account {type(event).__name__}")

    def _add(self, pld, count: int, always: bool = False) -> None:
        self.pld = self.pld.compose(pld.self_compose(count) if (always or count > 1) else pld)

    def epsilon(self, delta: float) -> float:
        """Cumulative epsilon at `delta` of everything composed so far."""
        return math.inf if self.non_private or self.no_pld else float(self.pld.get_epsilon_for_delta(delta))


def _rdp_event(event: dpe.DpEvent) -> dpe.DpEvent:
    """An RDP-accountable upper bound: discrete Gaussian -> Gaussian RDP curve (Canonne, Kamath &
    Steinke 2020, https://arxiv.org/abs/2004.00010, Theorem 4); discrete Laplace eps0-DP ->
    eps0^2/2-zCDP (Bun & Steinke 2016, "Concentrated Differential Privacy: Simplifications,
    Extensions, and Lower Bounds", https://arxiv.org/abs/1605.02065, Proposition 1.4); sampling of
    those and of composites: no amplification."""
    if isinstance(event, DiscreteGaussianDpEvent):
        return dpe.GaussianDpEvent(event.sigma / event.sensitivity)
    if isinstance(event, dpe.DiscreteLaplaceDpEvent):
        return dpe.GaussianDpEvent(1.0 / (event.sensitivity * event.noise_parameter))
    if isinstance(event, EpsilonDeltaDpEvent):
        if event.delta > 0:
            raise NotImplementedError("no RDP curve for an (epsilon, delta) event with delta > 0")
        return dpe.GaussianDpEvent(1.0 / event.epsilon) if event.epsilon > 0 else dpe.NoOpDpEvent()
    if isinstance(event, dpe.SelfComposedDpEvent):
        return dpe.SelfComposedDpEvent(_rdp_event(event.event), event.count)
    if isinstance(event, dpe.ComposedDpEvent):
        return dpe.ComposedDpEvent([_rdp_event(e) for e in event.events])
    if isinstance(event, dpe.PoissonSampledDpEvent):
        if isinstance(event.event, dpe.GaussianDpEvent) or gaussian_noise_multiplier(event.event) is not None:
            return event  # dp_accounting reads a shared sample of Gaussians as one subsampled Gaussian
        return _rdp_event(event.event)
    return event


def _rdp_compose(acc: rdp_acc.RdpAccountant, event: dpe.DpEvent, count: int = 1) -> None:
    """Compose `event` into the RDP accountant: a distributed step by privacy/audit/ddg.py's curve (added to the
    accountant's running curve, as its own `compose` does), anything else by dp_accounting."""
    if ddg.contains(event):
        acc._rdp = acc._rdp + count * ddg.curve_of(event, acc._orders)
    else:
        acc.compose(_rdp_event(event), count)


# The node's privacy filter (privacy/accounting/filter.py, Feldman & Zrnic 2021,
# https://arxiv.org/abs/2008.11193, with a union bound over these orders): its orders are part of its
# public definition, restated here so that the auditor recomputes the filter figure with its own code.
FILTER_ORDERS: tuple[float, ...] = (
    1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 32.0, 48.0, 64.0,
    128.0, 256.0,
)
# ... and the share of delta it reserves, fixed in advance, for (epsilon, delta) releases: the pure part
# is filtered at (1 - share) * delta, and those releases may spend at most share * delta in all.
SELECTION_DELTA_SHARE = 0.25


def _approximate(event: dpe.DpEvent, count: int = 1) -> tuple[dpe.DpEvent, float]:
    """(the event with each (eps, delta) part replaced by its pure eps part, the summed delta of those
    parts): a release delta-close in total variation to a pure eps-DP one (Rogers 2023,
    https://arxiv.org/abs/2309.09170) enters the filter by its pure part and spends delta of its delta."""
    if isinstance(event, EpsilonDeltaDpEvent):
        pure = dpe.GaussianDpEvent(1.0 / event.epsilon) if event.epsilon > 0 else dpe.NoOpDpEvent()
        return pure, count * event.delta
    if isinstance(event, dpe.SelfComposedDpEvent):
        inner, d = _approximate(event.event, count * event.count)
        return dpe.SelfComposedDpEvent(inner, event.count), d
    if isinstance(event, dpe.ComposedDpEvent):
        parts = [_approximate(e, count) for e in event.events]
        return dpe.ComposedDpEvent([p for p, _ in parts]), sum(d for _, d in parts)
    if isinstance(event, dpe.PoissonSampledDpEvent) and isinstance(event.event, EpsilonDeltaDpEvent):
        return _approximate(event.event, count)  # no amplification claimed
    return event, 0.0


def _filter_terms(raw: bytes) -> tuple[np.ndarray, float]:
    """One logged event's contribution to the filter: (its RDP curve at FILTER_ORDERS by dp_accounting's
    accountant, +inf where it cannot be evaluated or has no curve; the delta it spends)."""
    try:
        pure, d = _approximate(to_dp_event(events_pb2.DpEvent.FromString(raw)))
        acc = rdp_acc.RdpAccountant(orders=list(FILTER_ORDERS))
        _rdp_compose(acc, pure)
        return np.where(np.isnan(acc._rdp), np.inf, acc._rdp), float(d)
    except (NotImplementedError, ValueError, TypeError):
        return np.full(len(FILTER_ORDERS), np.inf), 0.0


@functools.lru_cache(maxsize=256)
def _filter_cached(events_blob: tuple[bytes, ...], delta: float) -> tuple[float, ...]:
    # ONE pass over the entries (issue 16): the running RDP sum per order and the running delta are the
    # prefix state; each distinct logged event's curve is evaluated once (a ledger repeats the same few
    # mechanisms: the daily query, the rounds of one plan).
    terms: dict[bytes, tuple[np.ndarray, float]] = {}
    running = np.zeros(len(FILTER_ORDERS))
    spent_delta = 0.0  # by (eps, delta) events, out of the reserved SELECTION_DELTA_SHARE * delta
    left = (1 - SELECTION_DELTA_SHARE) * delta  # the pure part's delta, fixed in advance
    slack = np.array([math.log(len(FILTER_ORDERS) / left) / (a - 1.0) for a in FILTER_ORDERS])
    out = []
    for raw in events_blob:
        if raw not in terms:
            terms[raw] = _filter_terms(raw)
        curve, d = terms[raw]
        spent_delta += d
        running = running + curve
        if spent_delta > SELECTION_DELTA_SHARE * delta * (1 + 1e-12):  # checked first: a (0, delta_i)
            out.append(math.inf)  # release has no pure part, but its delta still counts
        elif not np.any(running > 0):
            out.append(0.0)
        else:
            out.append(float(np.min(running + slack)))
    return tuple(out)


def recompute_filter_epsilons(events: list[events_pb2.DpEvent], delta: float) -> list[float]:
    """The Renyi privacy filter's cumulative figure after each event (min over FILTER_ORDERS of the
    summed RDP + log(|orders|/delta)/(order-1)), by dp_accounting's RDP accountant directly: what a
    node's "rdp-filter" claim must be at least, and what its cap is checked against."""
    blob = tuple(e.SerializeToString(deterministic=True) for e in events)
    return list(_filter_cached(blob, float(delta)))


@functools.lru_cache(maxsize=256)
def _recompute_cached(events_blob: tuple[bytes, ...], delta: float, interval: float) -> tuple[tuple[float, float], ...]:
    pld = PLDComposer(interval)
    rdp = rdp_acc.RdpAccountant()
    out = []
    rdp_ok = True  # once an event has no RDP bound, RDP bounds nothing after it either
    for raw in events_blob:
        ev = to_dp_event(events_pb2.DpEvent.FromString(raw))
        pld.compose(ev)
        p = pld.epsilon(delta)
        r = math.inf
        if rdp_ok:
            try:
                _rdp_compose(rdp, ev)
                r = float(rdp.get_epsilon(delta))
            except (NotImplementedError, ValueError, TypeError):
                rdp_ok = False
        out.append((p, r))
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _total_cached(events_blob: tuple[bytes, ...], delta: float, interval: float) -> tuple[float, float]:
    counts: dict[bytes, int] = {}
    for raw in events_blob:  # one pass: identical logged events composed once, `count` times
        counts[raw] = counts.get(raw, 0) + 1
    pld = PLDComposer(interval)
    rdp = rdp_acc.RdpAccountant()
    rdp_ok = True
    for raw, n in sorted(counts.items()):
        ev = to_dp_event(events_pb2.DpEvent.FromString(raw))
        pld.compose(ev, n)
        if rdp_ok:
            try:
                _rdp_compose(rdp, ev, n)
            except (NotImplementedError, ValueError, TypeError):
                rdp_ok = False
    return pld.epsilon(delta), float(rdp.get_epsilon(delta)) if rdp_ok else math.inf


def recompute_total(events: list[events_pb2.DpEvent], delta: float,
                    interval: float = VALUE_DISCRETIZATION_INTERVAL) -> tuple[float, float]:
    """(PLD epsilon, RDP epsilon) of the WHOLE history at `delta`, in one pass (composition of parameters fixed
    in advance commutes, so each distinct event is composed once with its count): the figure of the last entry
    without the per-prefix figures `recompute_epsilons` gives."""
    blob = tuple(e.SerializeToString(deterministic=True) for e in events)
    return _total_cached(blob, float(delta), float(interval))


def recompute_epsilons(events: list[events_pb2.DpEvent], delta: float,
                       interval: float = VALUE_DISCRETIZATION_INTERVAL) -> list[tuple[float, float]]:
    """Cumulative (PLD epsilon, RDP epsilon) after each event, at `delta`, by dp_accounting directly."""
    blob = tuple(e.SerializeToString(deterministic=True) for e in events)
    return list(_recompute_cached(blob, float(delta), float(interval)))
