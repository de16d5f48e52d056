"""Privacy accounting: compose a history of DP events into (epsilon, delta), and rho where it applies.

Sound, then tight (DESIGN invariant 5). Methods, tightest first:

* "pld"  Privacy loss distributions (Meiser & Mohammadi 2018; Koskela et al. 2020; Doroshenko et
         al. 2022 "Connect the Dots"), computed by Google's dp_accounting with *pessimistic*
         discretisation, so the number is an upper bound on the true epsilon. Add/remove
         neighbouring; Poisson subsampling handled by the ADD/REMOVE pair of PLDs.
* "rdp"  Renyi DP (Mironov 2017; subsampled Gaussian: Mironov, Talwar & Zhang 2019), converted to
         (eps, delta) with dp_accounting's conversion. Looser; a fallback only.
* "zcdp" zero-concentrated DP (Bun & Steinke 2016), only for histories without subsampling.

`epsilon_of` computes every sound method that applies and reports the smallest number, naming the
method that produced it. The unit of privacy is one contributor (invariant 4).

How a history is reduced (all steps exact or conservative, never optimistic):
1. The event tree is flattened to a multiset {(mechanism, q): count}. SelfComposed multiplies
   counts, Composed concatenates, nested Poisson sampling multiplies rates (independent Poisson
   samples are a Poisson sample). Poisson sampling *of a composite* (the same sample reused by
   several mechanisms) is accounted WITHOUT amplification (q = 1): subsampling never increases the
   hockey-stick divergence (joint convexity), so this is sound, merely loose.
2. All unsubsampled continuous Gaussians are merged into one Gaussian with
   mu^2 = sum count * (Delta/sigma)^2: composition of Gaussian mechanisms is exactly a Gaussian
   mechanism (Dong, Roth & Su 2019, Gaussian DP, Corollary 2.1).
3. Each group's PLD is built once and self-composed `count` times (FFT), then the groups composed.
"""

from __future__ import annotations

import logging

import functools
import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from dp_accounting import dp_event as dpe
from dp_accounting.pld import privacy_loss_distribution as pld_lib
from dp_accounting.rdp import rdp_privacy_accountant as rdp_lib

from privacy.events import (
    ComposedEvent,
    DiscreteGaussianEvent,
    DiscreteLaplaceEvent,
    DpEvent,
    GaussianEvent,
    LaplaceEvent,
    NoOpEvent,
    PoissonSampledEvent,
    SelfComposedEvent,
    event_from_dict,
    event_to_dict,
)

# dp_accounting's RDP logs a warning for every fractional order it cannot evaluate at large q and
# then excludes that order (still a sound bound); keep the logs readable.
logging.getLogger("absl").setLevel(logging.ERROR)

METHODS = ("pld", "rdp", "zcdp")
# dp_accounting's own default; with pessimistic rounding each discretisation step only adds loss.
VALUE_DISCRETIZATION_INTERVAL = 1e-4
_BASE = (GaussianEvent, DiscreteGaussianEvent, LaplaceEvent, DiscreteLaplaceEvent)


class AccountingError(ValueError):
    """The history cannot be accounted by the requested method."""


@dataclass(frozen=True)
class EpsilonReport:
    epsilon: float
    delta: float
    method: str  # which method produced `epsilon`
    rho: float | None = None  # zCDP rho of the whole history, None where zCDP does not apply

    def to_dict(self) -> dict:
        return asdict(self)


# --- step 1: flatten ----------------------------------------------------------------------------


def flatten(events: Iterable[DpEvent]) -> Counter:
    """Multiset {(base mechanism, sampling probability): count} of a history (see module doc)."""
    out: Counter = Counter()
    for e in events:
        _flatten(e, 1, 1.0, out)
    return out


def _flatten(event: DpEvent, count: int, q: float, out: Counter) -> None:
    if count == 0 or isinstance(event, NoOpEvent):
        return
    if isinstance(event, _BASE):
        out[(event, q)] += count
    elif isinstance(event, SelfComposedEvent):
        if q < 1.0 and count > 0 and not isinstance(event.event, (_BASE, NoOpEvent)):
            q = 1.0  # sampling shared by a composite: no amplification (sound, see module doc)
        _flatten(event.event, count * event.count, q, out)
    elif isinstance(event, ComposedEvent):
        # q < 1 here means one Poisson sample feeds several mechanisms: drop amplification.
        for e in event.events:
            _flatten(e, count, 1.0 if q < 1.0 else q, out)
    elif isinstance(event, PoissonSampledEvent):
        _flatten(event.event, count, q * event.sampling_probability, out)
    else:
        raise AccountingError(f"not a DP event: {type(event).__name__}")


def _merge_gaussians(groups: Counter) -> Counter:
    """Step 2: merge unsubsampled Gaussians into one (Dong, Roth & Su 2019, Cor. 2.1)."""
    mu2 = 0.0
    out: Counter = Counter()
    for (ev, q), n in groups.items():
        if isinstance(ev, GaussianEvent) and q == 1.0:
            mu2 += n * (ev.sensitivity / ev.sigma) ** 2
        else:
            out[(ev, q)] += n
    if mu2 > 0:
        out[(GaussianEvent(sigma=1.0 / math.sqrt(mu2), sensitivity=1.0), 1.0)] += 1
    return out


def _sorted_groups(groups: Counter) -> list:
    # Deterministic order, so that the same multiset always yields the same float (the auditor
    # recomputes the ledger's claims and compares).
    return sorted(groups.items(), key=lambda kv: (repr(kv[0]), kv[1]))


# --- PLD ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _group_pld(ev: DpEvent, q: float, count: int, interval: float):
    if isinstance(ev, GaussianEvent):
        base = pld_lib.from_gaussian_mechanism(
            standard_deviation=ev.sigma,
            sensitivity=ev.sensitivity,
            pessimistic_estimate=True,
            value_discretization_interval=interval,
            sampling_prob=q,
        )
    elif isinstance(ev, DiscreteGaussianEvent):
        # Exact PLD of the discrete Gaussian (Canonne, Kamath & Steinke 2020). dp_accounting truncates
        # the noise where its tail mass is < 1e-30; the sampler does not truncate, so the two
        # mechanisms differ by < 1e-30 in total variation: < 1e-30 extra delta per use, far below
        # any delta we report.
        base = pld_lib.from_discrete_gaussian_mechanism(
            sigma=ev.sigma,
            sensitivity=int(ev.sensitivity),
            pessimistic_estimate=True,
            value_discretization_interval=interval,
            sampling_prob=q,
        )
    elif isinstance(ev, LaplaceEvent):
        base = pld_lib.from_laplace_mechanism(
            parameter=ev.scale,
            sensitivity=ev.sensitivity,
            pessimistic_estimate=True,
            value_discretization_interval=interval,
            sampling_prob=q,
        )
    elif isinstance(ev, DiscreteLaplaceEvent):
        # dp_accounting's discrete Laplace parameter a is the inverse scale: pmf ~ exp(-a|x|).
        base = pld_lib.from_discrete_laplace_mechanism(
            parameter=1.0 / ev.scale,
            sensitivity=int(ev.sensitivity),
            pessimistic_estimate=True,
            value_discretization_interval=interval,
            sampling_prob=q,
        )
    else:  # pragma: no cover - flatten only yields base events
        raise AccountingError(f"no PLD for {ev!r}")
    return base.self_compose(count) if count > 1 else base


def pld_epsilon(events: Sequence[DpEvent], delta: float, interval: float = VALUE_DISCRETIZATION_INTERVAL) -> float:
    groups = _sorted_groups(_merge_gaussians(flatten(events)))
    if not groups:
        return 0.0
    total = None
    for (ev, q), n in groups:
        g = _group_pld(ev, q, n, interval)
        total = g if total is None else total.compose(g)
    return float(max(0.0, total.get_epsilon_for_delta(delta)))


# --- RDP ----------------------------------------------------------------------------------------


def _rdp_event(ev: DpEvent, q: float) -> dpe.DpEvent:
    """A dp_accounting event whose RDP curve upper-bounds ours."""
    if isinstance(ev, GaussianEvent):
        g = dpe.GaussianDpEvent(ev.sigma / ev.sensitivity)
        return dpe.PoissonSampledDpEvent(q, g) if q < 1.0 else g
    if isinstance(ev, DiscreteGaussianEvent):
        # Discrete Gaussian is (Delta/sigma)^2/2-zCDP, the continuous Gaussian's RDP curve
        # (Canonne, Kamath & Steinke 2020, Theorem 4). Subsampling: no amplification claimed.
        return dpe.GaussianDpEvent(ev.sigma / ev.sensitivity)
    if isinstance(ev, LaplaceEvent):
        return dpe.LaplaceDpEvent(ev.scale / ev.sensitivity)
    if isinstance(ev, DiscreteLaplaceEvent):
        # Pure eps0-DP implies eps0^2/2-zCDP (Bun & Steinke 2016, Prop. 1.4) = RDP of a Gaussian
        # with noise multiplier 1/eps0. Subsampling: no amplification claimed.
        eps0 = ev.sensitivity / ev.scale
        return dpe.GaussianDpEvent(1.0 / eps0)
    raise AccountingError(f"no RDP for {ev!r}")  # pragma: no cover


def rdp_epsilon(events: Sequence[DpEvent], delta: float) -> float:
    acc = rdp_lib.RdpAccountant()
    for (ev, q), n in _sorted_groups(flatten(events)):
        acc.compose(_rdp_event(ev, q), n)
    return float(acc.get_epsilon(delta))


# --- zCDP ---------------------------------------------------------------------------------------


def zcdp_rho(events: Sequence[DpEvent]) -> float | None:
    """rho of the whole history, or None if any part is subsampled (zCDP has no tight amplification)."""
    rho = 0.0
    for (ev, q), n in flatten(events).items():
        if q < 1.0:
            return None
        if isinstance(ev, (GaussianEvent, DiscreteGaussianEvent)):
            # Bun & Steinke 2016 Prop. 1.6; discrete: Canonne, Kamath & Steinke 2020 Thm. 4.
            rho += n * (ev.sensitivity / ev.sigma) ** 2 / 2.0
        else:  # Laplace / discrete Laplace are pure eps0-DP: eps0^2/2-zCDP (Bun & Steinke, Prop. 1.4)
            eps0 = ev.sensitivity / ev.scale
            rho += n * eps0 * eps0 / 2.0
    return rho


def zcdp_epsilon(rho: float, delta: float) -> float:
    """(eps, delta) from rho-zCDP via the RDP conversion (Canonne, Kamath & Steinke 2020, Prop. 12)."""
    if rho == 0:
        return 0.0
    acc = rdp_lib.RdpAccountant()
    acc.compose(dpe.ZCDpEvent(rho))
    return float(acc.get_epsilon(delta))


# --- choosing the method --------------------------------------------------------------------------


def _check_delta(delta: float) -> None:
    if not (0 < delta < 1):
        raise AccountingError(f"delta must be in (0, 1), got {delta!r}")


def epsilon_by_method(events: Sequence[DpEvent], delta: float, method: str) -> float:
    _check_delta(delta)
    events = list(events)
    if method == "pld":
        return pld_epsilon(events, delta)
    if method == "rdp":
        return rdp_epsilon(events, delta)
    if method == "zcdp":
        rho = zcdp_rho(events)
        if rho is None:
            raise AccountingError("zcdp does not apply to a history with Poisson subsampling")
        return zcdp_epsilon(rho, delta)
    raise AccountingError(f"unknown accounting method {method!r} (known: {', '.join(METHODS)})")


def epsilon_of(events: Iterable[DpEvent], delta: float) -> EpsilonReport:
    """The tightest sound epsilon for `events` at `delta`, naming the method that produced it.

    PLD first; RDP is computed too (cheap) and wins only if it is smaller, which is still sound
    because each is an upper bound. If PLD cannot be computed (e.g. a numerically extreme history
    that exhausts memory), RDP is the fallback.
    """
    _check_delta(delta)
    events = list(events)
    rho = zcdp_rho(events)
    candidates: list[tuple[float, str]] = []
    try:
        candidates.append((pld_epsilon(events, delta), "pld"))
    except (MemoryError, ValueError, OverflowError, FloatingPointError):
        pass
    candidates.append((rdp_epsilon(events, delta), "rdp"))
    eps, method = min(candidates, key=lambda c: (c[0], METHODS.index(c[1])))
    return EpsilonReport(epsilon=eps, delta=delta, method=method, rho=rho)


def projected_epsilon(history_events: Iterable[DpEvent], new_event: DpEvent, delta: float) -> EpsilonReport:
    """What the history would cost with `new_event` added (for checks before a release)."""
    return epsilon_of([*history_events, new_event], delta)


# --- stateful accountant (dp_accounting-style interface) -------------------------------------------


class Accountant:
    """Accumulates events; `get_epsilon(delta)` by the chosen method ("pld" default, "rdp", "zcdp")."""

    def __init__(self, method: str = "pld") -> None:
        if method not in METHODS:
            raise AccountingError(f"unknown accounting method {method!r} (known: {', '.join(METHODS)})")
        self.method = method
        self._events: list[DpEvent] = []

    def supports(self, event: DpEvent) -> bool:
        try:
            groups = flatten([event])
        except AccountingError:
            return False
        if self.method == "zcdp":
            return all(q == 1.0 for (_, q) in groups)
        return True

    def compose(self, event: DpEvent, count: int = 1) -> "Accountant":
        if not self.supports(event):
            raise AccountingError(f"method {self.method!r} does not support {event!r}")
        if count != 1:
            event = SelfComposedEvent(event, count)
        self._events.append(event)
        return self

    @property
    def events(self) -> tuple:
        return tuple(self._events)

    def get_epsilon(self, delta: float) -> float:
        return epsilon_by_method(self._events, delta, self.method)

    def get_rho(self) -> float | None:
        return zcdp_rho(self._events)

    @property
    def state(self) -> dict:
        return {"method": self.method, "events": [event_to_dict(e) for e in self._events]}

    def state_dict(self) -> dict:
        return self.state

    @classmethod
    def from_state(cls, state: dict) -> "Accountant":
        acc = cls(state["method"])
        acc._events = [event_from_dict(d) for d in state.get("events", [])]
        return acc

    def load_state_dict(self, state: dict) -> None:
        other = Accountant.from_state(state)
        self.method, self._events = other.method, other._events


# --- calibration ---------------------------------------------------------------------------------


def calibrate_noise(make_event, target_epsilon: float, delta: float, lo: float = 1e-3, hi: float = 1.0,
                    rel_tol: float = 1e-3, floor: float = 0.3) -> float:
    """Smallest noise parameter x >= floor (to rel_tol) with epsilon_of([make_event(x)]) <= target,
    by bisection (epsilon falls as noise grows). Sound: the returned x has been checked against the
    same accountant the ledger uses. Noise below `floor` is never searched: PLDs at tiny noise need
    gigabytes, and such noise levels give no meaningful protection anyway."""
    if not (target_epsilon > 0):
        raise AccountingError(f"target epsilon must be > 0, got {target_epsilon!r}")

    def ok(x: float) -> bool:
        # Sound and fast: PLD with a 10x coarser pessimistic discretization (never below the fine
        # PLD), or RDP, whichever is smaller. ok(x) implies the ledger's own accountant agrees.
        ev = [make_event(x)]
        bound = pld_epsilon(ev, delta, interval=10 * VALUE_DISCRETIZATION_INTERVAL)
        try:
            bound = min(bound, rdp_epsilon(ev, delta))
        except Exception:  # events RDP does not support
            pass
        return bound <= target_epsilon

    hi, lo = max(hi, floor), floor
    while not ok(hi):  # grow until enough noise (cheap: large noise, small PLDs)
        lo, hi = hi, hi * 2.0
        if hi > 1e7:
            raise AccountingError(f"no noise level reaches epsilon {target_epsilon} at delta {delta}")
    if lo == floor and ok(floor):  # the starting noise was already enough: is the floor?
        return floor
    while hi - lo > rel_tol * hi:
        mid = (lo + hi) / 2.0
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def noise_multiplier_for(target_epsilon: float, delta: float, sampling_probability: float, steps: int) -> float:
    """DP-SGD noise multiplier (sigma / clipping norm) so that `steps` Poisson-sampled Gaussian steps
    cost at most `target_epsilon` at `delta`, by the same accountant as the ledger."""
    return calibrate_noise(
        lambda s: SelfComposedEvent(PoissonSampledEvent(sampling_probability, GaussianEvent(s, 1.0)), int(steps)),
        target_epsilon, delta,
    )


def discrete_gaussian_sigma_for(target_epsilon: float, delta: float, sensitivity: int = 1, count: int = 1) -> float:
    """sigma of a discrete Gaussian on integer queries with sensitivity `sensitivity`, used `count` times."""
    return calibrate_noise(
        lambda s: SelfComposedEvent(DiscreteGaussianEvent(s, sensitivity), int(count)), target_epsilon, delta
    )


def discrete_laplace_scale_for(target_epsilon: float, delta: float = 0.0, sensitivity: int = 1, count: int = 1) -> float:
    """Scale t of a discrete Laplace (pmf ~ exp(-|x|/t)) used `count` times.

    delta == 0: pure DP by basic composition, t = count * sensitivity / eps (Dwork et al. 2006).
    delta > 0: the PLD accountant's (tighter) answer.
    """
    if delta == 0:
        if not (target_epsilon > 0):
            raise AccountingError(f"target epsilon must be > 0, got {target_epsilon!r}")
        return count * sensitivity / target_epsilon
    return calibrate_noise(
        lambda t: SelfComposedEvent(DiscreteLaplaceEvent(t, sensitivity), int(count)), target_epsilon, delta
    )
