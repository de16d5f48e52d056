"""Privacy accounting: compose a history of DP events into (epsilon, delta), and rho where it applies.

Owns the one number a release is checked against; protects ARCHITECTURE.md invariant 5 (sound, then
tight: epsilon is never under-reported; among sound methods the tightest is reported, naming the
method). Methods, tightest first, one module each:

  pld.py    privacy loss distributions by dp_accounting, pessimistic discretisation (tight)
  rdp.py    Renyi DP, converted to (eps, delta) (looser; a fallback only)
  zcdp.py   zero-concentrated DP, only for histories without subsampling
  ddg.py    the distributed discrete Gaussian's RDP / zCDP (issue 11; no PLD: RDP accounts it)

Those compose parameters FIXED IN ADVANCE. A node's cap is enforced against an adaptive coordinator
by the Renyi privacy filter of filter.py (`adaptive_epsilon`, method "rdp-filter"); the tight PLD
figure is reported only for what was fixed in advance (a committed training plan). Every
EpsilonReport says which: `method` and `fixed_in_advance`.

history.py reduces a history (flatten, merge Gaussians) the same way for every method;
calibration.py inverts the accountant (the noise that reaches a target epsilon, cached per question);
running.py keeps the filter's running state, added to release by release (issue 16: a ledger never
replays its history; `new_state`, `state_report` give the same figure as `adaptive_epsilon`, bit for bit).

`epsilon_of` computes every sound method that applies and reports the smallest number, naming the
method that produced it. The unit of privacy is one contributor (ARCHITECTURE.md invariant 4).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from privacy.accounting.filter import ADAPTIVE, FILTER_METHOD, PLAN_FIXED, filter_epsilon, new_state, state_epsilon
from privacy.accounting.history import AccountingError, flatten
from privacy.accounting.pld import pld_epsilon
from privacy.accounting.rdp import rdp_epsilon
from privacy.accounting.running import FilterState
from privacy.accounting.zcdp import zcdp_epsilon, zcdp_rho
from privacy.events import DpEvent, SelfComposedEvent, event_from_dict, event_to_dict

__all__ = [
    "METHODS",
    "ADAPTIVE",
    "Accountant",
    "AccountingError",
    "EpsilonReport",
    "FILTER_METHOD",
    "FilterState",
    "PLAN_FIXED",
    "adaptive_epsilon",
    "epsilon_by_method",
    "epsilon_of",
    "flatten",
    "new_state",
    "projected_epsilon",
    "state_epsilon",
    "state_report",
]

METHODS = ("pld", "rdp", "zcdp")


@dataclass(frozen=True)
class EpsilonReport:
    """The cumulative privacy loss of a history: `epsilon` at `delta`, by `method`."""

    epsilon: float
    delta: float
    method: str  # which method produced `epsilon`
    rho: float | None = None  # zCDP rho of the whole history, None where zCDP does not apply
    # True: a composition bound, valid for parameters fixed before the releases ran ("pld", "rdp",
    # "zcdp"). False: the privacy filter's figure (FILTER_METHOD), valid under adaptive choices.
    fixed_in_advance: bool = True

    @property
    def label(self) -> str:
        """How reports name this figure: its method and whether the schedule was fixed in advance."""
        return f"{self.method}, {'schedule fixed in advance' if self.fixed_in_advance else 'adaptive (privacy filter)'}"

    def to_dict(self) -> dict:
        """JSON-able form: epsilon, delta, method, rho, fixed_in_advance."""
        return asdict(self)


def _check_delta(delta: float) -> None:
    if not (0 < delta < 1):
        raise AccountingError(f"delta must be in (0, 1), got {delta!r}")


def epsilon_by_method(events: Sequence[DpEvent], delta: float, method: str) -> float:
    """Epsilon at `delta` of the history by one named method (one of METHODS)."""
    _check_delta(delta)
    events = list(events)
    if method == "pld":
        return pld_epsilon(events, delta)
    if method == "rdp":
        return rdp_epsilon(events, delta)
    if method == "zcdp":
        rho = zcdp_rho(events)
        if rho is None:
            raise AccountingError("zcdp does not apply to a history with Poisson subsampling or an "
                                  "(epsilon, delta) event with delta > 0")
        return zcdp_epsilon(rho, delta)
    raise AccountingError(f"unknown accounting method {method!r} (known: {', '.join(METHODS)})")


def epsilon_of(events: Iterable[DpEvent], delta: float) -> EpsilonReport:
    """The tightest sound epsilon for `events` at `delta`, naming the method that produced it.

    PLD first; RDP is computed too (cheap) and wins only if it is smaller, which is still sound
    because each is an upper bound. If PLD cannot be computed (e.g. a numerically extreme history
    that exhausts memory), RDP is the fallback; a history with an (epsilon, delta) event (delta > 0)
    has no RDP bound, and PLD alone accounts it.
    """
    _check_delta(delta)
    events = list(events)
    if len(events) == 1:  # one release or one committed plan: computed once per event (issue 16)
        return _single_epsilon(events[0], float(delta))
    return _epsilon_of(events, delta)


@functools.lru_cache(maxsize=2048)
def _single_epsilon(event: DpEvent, delta: float) -> EpsilonReport:
    return _epsilon_of([event], delta)


def _epsilon_of(events: list[DpEvent], delta: float) -> EpsilonReport:
    rho = zcdp_rho(events)
    candidates: list[tuple[float, str]] = []
    try:
        candidates.append((pld_epsilon(events, delta), "pld"))
    except (MemoryError, ValueError, OverflowError, FloatingPointError):
        pass
    try:
        candidates.append((rdp_epsilon(events, delta), "rdp"))
    except AccountingError:
        if not candidates:
            raise
    eps, method = min(candidates, key=lambda c: (c[0], METHODS.index(c[1])))
    return EpsilonReport(epsilon=eps, delta=delta, method=method, rho=rho)


def adaptive_epsilon(events: Iterable[DpEvent], delta: float) -> EpsilonReport:
    """The Renyi privacy filter's figure for `events` at `delta` (privacy/accounting/filter.py): what a
    node's cap is enforced against, sound when each release's parameters were chosen adaptively."""
    _check_delta(delta)
    return EpsilonReport(epsilon=filter_epsilon(list(events), delta), delta=delta, method=FILTER_METHOD,
                         fixed_in_advance=False)


def state_report(state: FilterState, delta: float) -> EpsilonReport:
    """The privacy filter's figure of a running state (privacy/accounting/running.py) at `delta`: the same
    number `adaptive_epsilon` gives for the history the state was built from."""
    _check_delta(delta)
    return EpsilonReport(epsilon=state_epsilon(state, delta), delta=delta, method=FILTER_METHOD, fixed_in_advance=False)


def projected_epsilon(history_events: Iterable[DpEvent], new_event: DpEvent, delta: float) -> EpsilonReport:
    """What the history would cost with `new_event` added (for checks before a release)."""
    return epsilon_of([*history_events, new_event], delta)


class Accountant:
    """Accumulates events; `get_epsilon(delta)` by the chosen method ("pld" default, "rdp", "zcdp").

    The interface of dp_accounting's PrivacyAccountant (compose, get_epsilon); `state` and
    `load_state_dict()` / `from_state()` carry the method and the events' dict form.
    """

    def __init__(self, method: str = "pld") -> None:
        if method not in METHODS:
            raise AccountingError(f"unknown accounting method {method!r} (known: {', '.join(METHODS)})")
        self.method = method
        self._events: list[DpEvent] = []

    def supports(self, event: DpEvent) -> bool:
        """Whether this accountant's method can account `event`."""
        try:
            flatten([event])
        except AccountingError:
            return False
        if self.method == "zcdp":
            return zcdp_rho([event]) is not None
        if self.method == "rdp":
            try:
                rdp_epsilon([event], 0.5)
            except AccountingError:
                return False
        return True

    def compose(self, event: DpEvent, count: int = 1) -> Accountant:
        """Add `event`, run `count` times; returns self (chainable)."""
        if not self.supports(event):
            raise AccountingError(f"method {self.method!r} does not support {event!r}")
        if count != 1:
            event = SelfComposedEvent(event, count)
        self._events.append(event)
        return self

    @property
    def events(self) -> tuple:
        """The events composed so far, in order."""
        return tuple(self._events)

    def get_epsilon(self, delta: float) -> float:
        """Epsilon at `delta` of everything composed so far, by this accountant's method."""
        return epsilon_by_method(self._events, delta, self.method)

    @property
    def state(self) -> dict:
        """The method and the events (dict form): JSON-able."""
        return {"method": self.method, "events": [event_to_dict(e) for e in self._events]}

    @classmethod
    def from_state(cls, state: dict) -> Accountant:
        """An accountant holding `state` (checked: unknown methods and bad events are refused)."""
        acc = cls(state["method"])
        acc._events = [event_from_dict(d) for d in state.get("events", [])]
        return acc

    def load_state_dict(self, state: dict) -> None:
        """Replace this accountant's method and events with `state` (checked as in `from_state`)."""
        other = Accountant.from_state(state)
        self.method, self._events = other.method, other._events
