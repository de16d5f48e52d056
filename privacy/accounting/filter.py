"""The privacy filter that enforces a community's cap under an ADAPTIVE coordinator (issue 10, finding 4).

The coordinator is untrusted and picks each release's parameters (epsilon, bounds, rounds) after
seeing earlier answers; the node stops at its cap. Composition theorems for parameters fixed in
advance (PLD, and plain RDP composition) do not cover a stopping rule on adaptively chosen
parameters (Rogers, Roth, Ullman & Vadhan 2016, "Privacy Odometers and Filters: Pay-as-you-Go
Composition", https://arxiv.org/abs/1605.08294). The cap is enforced instead by a Renyi DP filter
(Feldman & Zrnic 2021, "Individual Privacy Accounting via a Renyi Filter", NeurIPS, Theorem 3.1,
https://arxiv.org/abs/2008.11193): at a fixed order alpha, an adaptive sequence whose running sum of
RDP bounds never exceeds B(alpha) is (alpha, B(alpha))-RDP. Over a grid A of orders FIXED HERE in
advance, the filter admits a release while SOME order stays within its budget

    S(alpha) = sum of the releases' RDP at alpha <= B(alpha) = cap - log(|A| / delta) / (alpha - 1),

and the whole interaction is then (cap, delta)-DP: if the privacy loss L exceeds the cap at the end,
some order alpha was within budget all along, so the transcript is the one its single-order filter
produced, whose loss exceeds the cap with probability <= exp((alpha-1)(B(alpha) - cap)) = delta/|A|
(Markov on E[exp((alpha-1) L)] <= exp((alpha-1) B(alpha)), the RDP -> (eps, delta) conversion of
Mironov 2017, "Renyi Differential Privacy", Proposition 3, https://arxiv.org/abs/1702.07476); a union
bound over the |A| orders gives delta.

`filter_epsilon(events, delta)` = min over A of S(alpha) + log(|A|/delta)/(alpha-1): the running
figure the filter compares with the cap (a release is admitted iff it stays <= the cap). Ledger
entries claim it with accountant "rdp-filter", schedule "adaptive". The tight PLD figure
(privacy/accounting/pld.py) is reported only for what was fixed in advance: a training plan
committed in the ledger before its first round (privacy/ledger.py, `plan_event`). Protects
ARCHITECTURE.md invariant 5 (epsilon is never under-reported) and invariant 2 (the cap holds).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from privacy.accounting.history import flatten
from privacy.accounting.running import FilterState
from privacy.events import DpEvent, EpsilonDeltaEvent

# The filter's orders: part of its definition, fixed in advance (never chosen after seeing data).
FILTER_ORDERS: tuple[float, ...] = (
    1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 32.0, 48.0, 64.0,
    128.0, 256.0,
)
# The share of the filter's delta reserved, fixed in advance, for (epsilon, delta) releases (thresholded key
# selection). The pure part is always filtered at (1 - share) * delta and those releases may spend at most
# share * delta in all, so the total is delta whatever the coordinator asks for. A split that followed the
# history (delta - the deltas spent so far) would change the filter's budget with the coordinator's
# choices; the filter's guarantee holds only at a level fixed in advance, so that total could reach
# about 2 * delta.
SELECTION_DELTA_SHARE = 0.25
FILTER_METHOD = "rdp-filter"
ADAPTIVE = "adaptive"  # schedule label: parameters chosen as the releases came (the filter's figure)
PLAN_FIXED = "plan-fixed"  # schedule label: a training plan committed in the ledger before its first round


def _slack(delta: float) -> np.ndarray:
    orders = np.asarray(FILTER_ORDERS)
    return math.log(len(FILTER_ORDERS) / delta) / (orders - 1.0)


def filter_budget(cap: float, delta: float) -> np.ndarray:
    """B(alpha) per order of FILTER_ORDERS: the RDP budget curve of a (cap, delta) filter (its pure part,
    at the (1 - SELECTION_DELTA_SHARE) * delta that is not reserved for (epsilon, delta) releases)."""
    return cap - _slack((1 - SELECTION_DELTA_SHARE) * delta)


def approximate_delta(events: Sequence[DpEvent]) -> float:
    """The summed delta of the history's (epsilon, delta) events (EpsilonDeltaEvent), each use counted."""
    return float(sum(n * ev.delta for (ev, _), n in flatten(events).items() if isinstance(ev, EpsilonDeltaEvent)))


def filter_epsilon(events: Sequence[DpEvent], delta: float) -> float:
    """The filter's running figure for `events` at `delta`: the smallest cap whose filter admits them
    all (min over orders of S(alpha) + log(|A|/delta')/(alpha-1)); 0 for a history that released nothing.

    An (epsilon_i, delta_i) event (thresholded key selection) enters S(alpha) by its pure part and
    spends delta_i of the share of delta reserved for such events (SELECTION_DELTA_SHARE * delta; infinite
    once the deltas exceed it); the pure part is filtered at delta' = (1 - SELECTION_DELTA_SHARE) * delta.
    Sound by coupling: on a neighbour, such a release is delta_i-close in total variation to a pure
    epsilon_i-DP one (the Laplace mechanism on the keys both datasets hold; a key only the added
    person holds is released with probability <= delta_i: Rogers 2023, "A Unifying Privacy Analysis
    Framework for Unknown Domain Algorithms in Differential Privacy", https://arxiv.org/abs/2309.09170),
    so the whole adaptive transcript is sum delta_i-close to one of pure-DP releases, for which the
    filter above holds at delta' (the approximate-zCDP composition of Bun & Steinke 2016,
    https://arxiv.org/abs/1605.02065, Sec. 8, where the deltas add).

    From scratch: the history's running state (privacy/accounting/running.py) built from its flattened
    multiset; a ledger keeps the same state entry by entry and gets the same figure (`state_epsilon`)."""
    return state_epsilon(FilterState.of(events, FILTER_ORDERS), delta)


def new_state() -> FilterState:
    """The filter's state of an empty history (add releases with `.add(event)`)."""
    return FilterState(FILTER_ORDERS)


def state_epsilon(state: FilterState, delta: float) -> float:
    """The filter's figure (see `filter_epsilon`) of a running state at `delta`."""
    if state.delta_exceeds(SELECTION_DELTA_SHARE * delta * (1 + 1e-12)):  # before anything else
        return math.inf
    if not state.released():
        return 0.0
    # rounded UP: the sum S(alpha) + slack(alpha) is one float addition (round to nearest), and the slack's own
    # log and divisions are within 2 ulp; steps up cover both, so the figure is never below the exact
    # value of the terms (ARCHITECTURE.md invariant 5; the cap check `figure > cap` can then never admit a release
    # whose exact figure is above the cap by a rounding)
    slack = np.nextafter(np.nextafter(_slack((1 - SELECTION_DELTA_SHARE) * delta), np.inf), np.inf)
    figure = state.curve() + slack
    return float(np.min(np.nextafter(figure, np.inf)))


class RunningHistory(list):
    """A list of events that keeps the filter's running state of its items (`.state`) as they are appended:
    a verifier walking a ledger reads each prefix's figure with `state_epsilon(h.state, delta)` in one pass."""

    def __init__(self) -> None:
        super().__init__()
        self.state = new_state()

    def append(self, event: DpEvent) -> None:
        """Append `event` and add it to the running state."""
        super().append(event)
        self.state.add(event)


def filter_admits(events: Sequence[DpEvent], cap: float, delta: float) -> bool:
    """Whether a (cap, delta) filter admits the whole history `events` (the last one being the new
    release): some order has S(alpha) <= B(alpha), i.e. `filter_epsilon(events, delta) <= cap`."""
    return filter_epsilon(events, delta) <= cap
