"""Noise calibration: the smallest noise whose release stays within a target epsilon.

Owns the inverse of the accountant; protects ARCHITECTURE.md invariant 5: every noise level
returned has been checked against a sound upper bound at least as large as what the ledger's own
accountant (privacy/accounting/__init__.py `epsilon_of`) will claim, so a calibrated release never
exceeds its target.

Calibration is a pure function of its arguments, so each answer is cached (issue 16: a node calibrates
once per plan and per query shape, not once per release); `noise_multiplier_within_filter` starts from the
ledger's running filter state (privacy/accounting/running.py) instead of replaying the history at every
bisection step.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

from privacy.accounting.filter import new_state, state_epsilon
from privacy.accounting.history import AccountingError
from privacy.accounting.pld import VALUE_DISCRETIZATION_INTERVAL, pld_epsilon
from privacy.accounting.rdp import rdp_epsilon
from privacy.accounting.running import FilterState
from privacy.events import DiscreteGaussianEvent, DiscreteLaplaceEvent, DpEvent, SelfComposedEvent, dpsgd_event

# Hard ceiling on a calibrated noise parameter (per unit of sensitivity and of sqrt(uses)): a target that
# needs more is refused rather than searched for (the search would run for minutes; the answer would be noise).
MAX_NOISE = 1e4


def calibrate_noise(make_event: Callable[[float], DpEvent], target_epsilon: float, delta: float, lo: float = 1e-3,
                    hi: float = 1.0, rel_tol: float = 1e-3, floor: float = 0.3, ceiling: float = MAX_NOISE) -> float:
    """Smallest noise parameter x >= floor (to rel_tol) with epsilon_of([make_event(x)]) <= target,
    by bisection (epsilon falls as noise grows). Sound: the returned x has been checked against the
    same accountant the ledger uses. Noise below `floor` is never searched: PLDs at tiny noise need
    gigabytes, and such noise levels give no meaningful protection anyway. A target that needs noise
    above `ceiling` is refused (AccountingError naming the target)."""
    if not (target_epsilon > 0):
        raise AccountingError(f"target epsilon must be > 0, got {target_epsilon!r}")

    def ok(x: float) -> bool:
        # Sound and fast: PLD with a 10x coarser pessimistic discretization (never below the fine
        # PLD), or RDP, whichever is smaller. ok(x) implies the ledger's own accountant agrees.
        ev = [make_event(x)]
        try:
            if pld_epsilon(ev, delta, interval=10 * VALUE_DISCRETIZATION_INTERVAL) <= target_epsilon:
                return True  # RDP could only confirm it: not evaluated (issue 16, the calibration hot path)
        except AccountingError:  # no PLD (the distributed discrete Gaussian): RDP alone
            pass
        try:
            return rdp_epsilon(ev, delta) <= target_epsilon
        except Exception:  # events RDP does not support
            return False

    hi = max(hi, floor)
    if ok(hi) and ok(floor):  # the least noise ever searched is already enough (tested only then: PLDs at
        return floor          # the floor are the costliest)
    return _smallest_noise(ok, floor, hi, ceiling, rel_tol,
                           f"target epsilon {target_epsilon:g} at delta {delta:g} needs noise above the ceiling "
                           f"{ceiling:g}: refused")


def _smallest_noise(ok: Callable[[float], bool], lo: float, hi: float, ceiling: float, rel_tol: float,
                    refusal: str) -> float:
    """The smallest x in (lo, ceiling] with ok(x), to rel_tol, given not ok(lo) and ok monotone in x:
    double hi until ok (AccountingError `refusal` past `ceiling`), then bisect. The returned x was
    checked with ok itself."""
    while not ok(hi):
        if hi >= ceiling:
            raise AccountingError(refusal)
        lo, hi = hi, min(hi * 2.0, ceiling)
    while hi - lo > rel_tol * hi:
        mid = (lo + hi) / 2.0
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


@functools.lru_cache(maxsize=1024)
def noise_multiplier_for(target_epsilon: float, delta: float, sampling_probability: float, steps: int) -> float:
    """DP-SGD noise multiplier (sigma / clipping norm) so that `steps` Poisson-sampled Gaussian steps
    cost at most `target_epsilon` at `delta`, by the same accountant as the ledger."""
    return calibrate_noise(lambda z: dpsgd_event(sampling_probability, z, steps), target_epsilon, delta)


def noise_multiplier_within_filter(history: Sequence[DpEvent] | FilterState, sampling_probability: float, steps: int, cap: float,
                                   delta: float, at_least: float, rel_tol: float = 1e-3) -> float:
    """Smallest DP-SGD noise multiplier >= `at_least` whose `steps` steps, after `history`, stay within
    the (cap, delta) privacy filter (privacy/accounting/filter.py), by bisection on the filter itself:
    a training plan made this way is never stopped by the cap half-way. `history`: the events, or the
    ledger's running filter state (`Ledger.filter_state()`)."""
    if isinstance(history, FilterState):
        base = history
    else:
        base = new_state()
        for e in history:
            base.add(e)

    def ok(z: float) -> bool:
        return state_epsilon(base.copy().add(dpsgd_event(sampling_probability, z, steps)), delta) <= cap

    start = max(at_least, 1e-3)
    if ok(start):
        return start
    return _smallest_noise(ok, start, 2 * start, 1e7, rel_tol,
                           f"no noise level keeps this plan within the cap {cap} at delta {delta}")


@functools.lru_cache(maxsize=1024)
def discrete_gaussian_sigma_for(target_epsilon: float, delta: float, sensitivity: int = 1, count: int = 1) -> float:
    """sigma of a discrete Gaussian on integer queries with sensitivity `sensitivity`, used `count` times."""
    return calibrate_noise(
        lambda s: SelfComposedEvent(DiscreteGaussianEvent(s, sensitivity), int(count)), target_epsilon, delta,
        ceiling=MAX_NOISE * max(1, int(sensitivity)) * max(1, int(count)) ** 0.5,
    )


@functools.lru_cache(maxsize=1024)
def discrete_laplace_scale_for(target_epsilon: float, delta: float = 0.0, sensitivity: int = 1, count: int = 1) -> float:
    """Scale t of a discrete Laplace (pmf ~ exp(-|x|/t)) used `count` times.

    delta == 0: pure DP by basic composition, t = count * sensitivity / eps (each use is
    (sensitivity / t)-DP; Dwork & Roth 2014, "The Algorithmic Foundations of Differential Privacy",
    Theorem 3.16, https://www.cis.upenn.edu/~aaroth/Papers/privacybook.pdf).
    delta > 0: the PLD accountant's (tighter) answer.
    """
    if delta == 0:
        if not (target_epsilon > 0):
            raise AccountingError(f"target epsilon must be > 0, got {target_epsilon!r}")
        return count * sensitivity / target_epsilon
    return calibrate_noise(
        lambda t: SelfComposedEvent(DiscreteLaplaceEvent(t, sensitivity), int(count)), target_epsilon, delta,
        ceiling=MAX_NOISE * max(1, int(sensitivity)) * max(1, int(count)) ** 0.5,
    )
