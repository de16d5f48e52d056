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
event is accounted without amplification (sound: post-processing).

dp_accounting's RDP accountant is run as a second, looser sound bound; the recomputed epsilon is the
smaller of the two. This protects ARCHITECTURE.md invariant 5 (epsilon is never under-reported): a
claim below this recomputation is caught by the `epsilon` check.
"""

from __future__ import annotations

import functools
import math

import attr
from dp_accounting import dp_event as dpe
from dp_accounting.pld import privacy_loss_distribution as pld_lib
from dp_accounting.rdp import rdp_privacy_accountant as rdp_acc

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
    raise EventError("DpEvent message has no event set")


class PLDComposer:
    """Cumulative privacy loss distribution of a sequence of dp_events (add/remove-one, pessimistic).

    Each mechanism's PLD is built by the same public constructor, with the same arguments, as
    dp_accounting's PLDAccountant uses for it, so the two agree where both apply."""

    def __init__(self, interval: float = VALUE_DISCRETIZATION_INTERVAL):
        self.interval = interval
        self.pld = pld_lib.identity(value_discretization_interval=interval)
        self.non_private = False  # a zero-noise mechanism: epsilon is infinite

    def compose(self, event: dpe.DpEvent, count: int = 1) -> None:
        """Compose `event`, `count` times."""
        vdi = self.interval
        if isinstance(event, dpe.NoOpDpEvent):
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
        elif sampled:
            self.compose(event.event, count)  # sampling of a composite: no amplification claimed (sound, loose)
        else:
            raise EventError(f"the auditor cannot account {type(event).__name__}")

    def _add(self, pld, count: int, always: bool = False) -> None:
        self.pld = self.pld.compose(pld.self_compose(count) if (always or count > 1) else pld)

    def epsilon(self, delta: float) -> float:
        """Cumulative epsilon at `delta` of everything composed so far."""
        return math.inf if self.non_private else float(self.pld.get_epsilon_for_delta(delta))


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
    if isinstance(event, dpe.SelfComposedDpEvent):
        return dpe.SelfComposedDpEvent(_rdp_event(event.event), event.count)
    if isinstance(event, dpe.ComposedDpEvent):
        return dpe.ComposedDpEvent([_rdp_event(e) for e in event.events])
    if isinstance(event, dpe.PoissonSampledDpEvent):
        if isinstance(event.event, dpe.GaussianDpEvent):
            return event
        return _rdp_event(event.event)
    return event


@functools.lru_cache(maxsize=256)
def _recompute_cached(events_blob: tuple[bytes, ...], delta: float, interval: float) -> tuple[tuple[float, float], ...]:
    pld = PLDComposer(interval)
    rdp = rdp_acc.RdpAccountant()
    out = []
    for raw in events_blob:
        ev = to_dp_event(events_pb2.DpEvent.FromString(raw))
        pld.compose(ev)
        p = pld.epsilon(delta)
        try:
            rdp.compose(_rdp_event(ev))
            r = float(rdp.get_epsilon(delta))
        except (NotImplementedError, ValueError, TypeError):
            r = math.inf
        out.append((p, r))
    return tuple(out)


def recompute_epsilons(events: list[events_pb2.DpEvent], delta: float,
                       interval: float = VALUE_DISCRETIZATION_INTERVAL) -> list[tuple[float, float]]:
    """Cumulative (PLD epsilon, RDP epsilon) after each event, at `delta`, by dp_accounting directly."""
    blob = tuple(e.SerializeToString(deterministic=True) for e in events)
    return list(_recompute_cached(blob, float(delta), float(interval)))
