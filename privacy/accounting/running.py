"""The privacy filter's running state: what a ledger has spent, updated entry by entry (issue 16).

The Renyi privacy filter (privacy/accounting/filter.py; Feldman & Zrnic 2021, "Individual Privacy
Accounting via a Renyi Filter", Theorem 3.1, https://arxiv.org/abs/2008.11193; Lecuyer 2021, "Practical
Privacy Filters and Odometers with Renyi Differential Privacy and Applications to Differentially Private
Deep Learning", https://arxiv.org/abs/2103.01379) needs only two numbers per history: the running SUM of
the releases' RDP curves at its fixed orders, and the running sum of the deltas its (epsilon, delta)
releases spend. Both compose additively, so a node keeps them and adds each new release, instead of
replaying its whole ledger on every append, budget query and plan.

Sums are kept EXACTLY: each float term (count x a mechanism's cached curve value, privacy/accounting/rdp.py
`event_curve`) is an integer multiple of 2^-1074, so the state holds integers scaled by 2^SCALE_BITS and adds
them without rounding. The figure rounds the exact sum UP to a float once. Integer addition is associative,
so the state after any sequence of entries is the same as the one built from scratch from the flattened
history (`FilterState.of(events)`, what `filter_epsilon` computes): the incremental figure is identical, bit
for bit, to the from-scratch one, and never below the exact sum of the terms (ARCHITECTURE.md invariant 5;
invariant 2: the cap is checked against it).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from privacy.accounting.history import flatten
from privacy.accounting.rdp import event_curve
from privacy.events import (
    DiscreteGaussianEvent,
    DiscreteLaplaceEvent,
    DpEvent,
    EpsilonDeltaEvent,
    GaussianEvent,
    LaplaceEvent,
    dpsgd_event,
)

SCALE_BITS = 1100  # every finite double is an integer multiple of 2^-1074


def exact(v: float) -> int:
    """`v` * 2^SCALE_BITS, exactly (finite `v`)."""
    n, d = float(v).as_integer_ratio()  # d is a power of two <= 2^1074
    return n * ((1 << SCALE_BITS) // d)


def float_up(x: int) -> float:
    """The smallest double >= x / 2^SCALE_BITS."""
    f = x / (1 << SCALE_BITS)  # int / int: correctly rounded
    if math.isfinite(f) and exact(f) < x:
        f = math.nextafter(f, math.inf)
    return f


@dataclass
class FilterState:
    """The running sums of a history at `orders`: RDP per order (exact, scaled), which orders are +inf (a
    curve the library could not evaluate there), and the deltas of (epsilon, delta) releases (exact)."""

    orders: tuple[float, ...]
    sums: list[int] = field(default_factory=list)
    infinite: list[bool] = field(default_factory=list)
    approx_delta: int = 0
    entries: int = 0

    def __post_init__(self) -> None:
        if not self.sums:
            self.sums = [0] * len(self.orders)
            self.infinite = [False] * len(self.orders)

    @classmethod
    def of(cls, events: Iterable[DpEvent], orders: Sequence[float]) -> FilterState:
        """The state of a whole history, from its flattened multiset (the from-scratch computation)."""
        st = cls(tuple(float(o) for o in orders))
        st._add_groups(flatten(events))
        return st

    def copy(self) -> FilterState:
        """An independent copy (projections add to it without touching this one)."""
        return FilterState(self.orders, list(self.sums), list(self.infinite), self.approx_delta, self.entries)

    def add(self, event: DpEvent, count: int = 1) -> FilterState:
        """Add one release (`count` times); returns self."""
        groups = flatten([event])
        if count != 1:
            groups = Counter({k: n * count for k, n in groups.items()})
        self._add_groups(groups)
        self.entries += 1
        return self

    def _add_groups(self, groups: Counter) -> None:
        for (ev, q), n in groups.items():
            if isinstance(ev, EpsilonDeltaEvent):
                self.approx_delta += n * exact(ev.delta)
            for k, v in enumerate(_exact_curve(ev, q, self.orders)):
                if v is None:
                    self.infinite[k] = True
                else:
                    self.sums[k] += n * v

    def curve(self) -> np.ndarray:
        """The running RDP curve, each order rounded up (+inf where any release is unbounded)."""
        return np.array([math.inf if inf else float_up(s) for s, inf in zip(self.sums, self.infinite)])

    def delta_spent(self) -> float:
        """The summed delta of the (epsilon, delta) releases, rounded up."""
        return float_up(self.approx_delta)

    def delta_exceeds(self, limit: float) -> bool:
        """Whether the summed delta of the (epsilon, delta) releases is above `limit`, exactly."""
        return self.approx_delta > exact(limit)

    def released(self) -> bool:
        """Whether any order has spent something (0 is the figure of a history that released nothing)."""
        return any(self.infinite) or any(s > 0 for s in self.sums)


_EXACT_CACHE: dict[tuple, tuple[int | None, ...]] = {}


def _exact_curve(ev: DpEvent, q: float, orders: tuple[float, ...]) -> tuple[int | None, ...]:
    """One use of a base mechanism's pure-part curve as exact scaled integers (None: +inf or NaN); cached."""
    key = (ev, q, orders)
    hit = _EXACT_CACHE.get(key)
    if hit is None:
        if len(_EXACT_CACHE) > 8192:
            _EXACT_CACHE.clear()
        curve = event_curve(ev, q, orders, pure_part=True)
        hit = _EXACT_CACHE[key] = tuple(exact(v) if math.isfinite(v) else None for v in curve)
    return hit


@functools.lru_cache(maxsize=8)
def fingerprint(orders: tuple[float, ...]) -> str:
    """A digest of the exact curves this code gives a few canonical mechanisms at `orders` (and SCALE_BITS): a
    saved state (privacy/ledger_sidecar.py) built by code whose curves differ (a fixed bug, another
    dp_accounting) is not reused, so a figure never rests on sums the current accountant would not give."""
    canon = [DiscreteGaussianEvent(7.0, 1), DiscreteLaplaceEvent(11.0, 1), EpsilonDeltaEvent(0.3, 1e-9),
             GaussianEvent(3.0, 1.0), LaplaceEvent(13.0, 1.0), dpsgd_event(0.01, 1.1, 1), dpsgd_event(0.05, 2.0, 1)]
    h = hashlib.sha256(f"scale {SCALE_BITS} orders {orders!r}".encode())
    for ev in canon:
        st = FilterState.of([ev], orders)
        h.update(repr((ev, [format(x, "x") for x in st.sums], st.infinite, format(st.approx_delta, "x"))).encode())
    return h.hexdigest()
