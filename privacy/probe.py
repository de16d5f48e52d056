"""Empirical privacy lower bounds from one training run (the math; node/probe.py runs the experiment).

Steinke, Nasr & Jagielski 2023, "Privacy Auditing with One (1) Training Run" (NeurIPS 2023,
https://arxiv.org/abs/2305.08846):
m canaries are each included in the training data independently with probability 1/2. After
training, the auditor scores every canary, guesses "in" for the k+ highest scores and "out" for the
k- lowest, and abstains on the rest: r = k+ + k- guesses, v of them correct. If the training is
(eps, delta)-DP, the number of correct guesses is stochastically dominated, up to a delta term, by
Binomial(r, e^eps / (1 + e^eps)) (their Theorem 5.2):

    P[V >= v] <= P[Bin(r, p) >= v] + 2 m delta * max_{1<=i<=v} P[v - i <= Bin(r, p) < v] / i,
    p = e^eps / (1 + e^eps).

So if the observed v has probability below `alpha` (e.g. 0.05) under (eps, delta)-DP, the training
is not (eps, delta)-DP: with confidence 1 - alpha, epsilon is at least the largest such eps.
`epsilon_lower_bound` finds it by bisection (the p-value grows with eps).

The guarantee needs the guesses fixed before looking at memberships; choosing among several k after
looking would need a correction, so `best_lower_bound` splits alpha over the candidates (Bonferroni).
The unit here is whatever was included with probability 1/2: for user-level DP-SGD, a canary is a
whole contributor. Checks ARCHITECTURE.md invariant 5 from the outside: an empirical lower bound
above the ledger's claimed epsilon would show the claim under-reported.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats


def p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """P[>= v correct of r guesses] under (eps, delta)-DP with m canaries (Theorem 5.2 above)."""
    if not (0 <= v <= r <= m):
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    if eps < 0 or not (0 <= delta <= 1):
        raise ValueError("need eps >= 0 and delta in [0, 1]")
    p = 1.0 / (1.0 + math.exp(-eps))
    tail = float(stats.binom.sf(v - 1, r, p))  # P[Bin >= v]
    slope, acc = 0.0, 0.0
    for i in range(1, v + 1):
        acc += float(stats.binom.pmf(v - i, r, p))  # P[v - i <= Bin < v]
        slope = max(slope, acc / i)
    return min(1.0, tail + 2.0 * m * delta * slope)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float = 0.0, alpha: float = 0.05, iters: int = 60) -> float:
    """Largest eps for which `v` correct of `r` guesses has p-value < alpha (0 if none)."""
    if r == 0 or p_value(m, r, v, 0.0, delta) >= alpha:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(m, r, v, hi, delta) < alpha:
        lo, hi = hi, hi * 2
        if hi > 1e3:
            return math.inf
    for _ in range(iters):
        mid = (lo + hi) / 2
        if p_value(m, r, v, mid, delta) < alpha:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class ProbeGuess:
    """One choice of k+ / k- guesses: r guesses, v correct, and the epsilon lower bound they give."""

    k_plus: int
    k_minus: int
    guesses: int  # r
    correct: int  # v
    epsilon_lower_bound: float


def guess_and_count(scores: Sequence[float], members: Sequence[bool], k_plus: int, k_minus: int) -> tuple[int, int]:
    """(r, v): guess "in" for the k_plus highest scores, "out" for the k_minus lowest."""
    s = np.asarray(scores, dtype=np.float64)
    mem = np.asarray(members, dtype=bool)
    if len(s) != len(mem):
        raise ValueError("scores and members differ in length")
    k_plus, k_minus = min(k_plus, len(s)), min(k_minus, len(s) - min(k_plus, len(s)))
    order = np.argsort(-s, kind="stable")
    top, bottom = order[:k_plus], order[len(s) - k_minus:] if k_minus else order[:0]
    v = int(mem[top].sum() + (~mem[bottom]).sum())
    return k_plus + k_minus, v


def best_lower_bound(scores: Sequence[float], members: Sequence[bool], delta: float, alpha: float = 0.05,
                     ks: Sequence[tuple[int, int]] | None = None) -> tuple[ProbeGuess, list[ProbeGuess]]:
    """The best bound over candidate (k+, k-), each at level alpha / len(ks) (Bonferroni), so the
    maximum is still a (1 - alpha)-confidence lower bound."""
    m = len(scores)
    if ks is None:
        ks = default_ks(m)
    level = alpha / len(ks)
    out = []
    for kp, km in ks:
        r, v = guess_and_count(scores, members, kp, km)
        out.append(ProbeGuess(kp, km, r, v, epsilon_lower_bound(m, r, v, delta, level)))
    return max(out, key=lambda g: g.epsilon_lower_bound), out


def default_ks(m: int) -> list[tuple[int, int]]:
    """The candidate (k+, k-) guess counts `best_lower_bound` tries for m canaries."""
    return sorted({(max(1, m // d), max(1, m // d)) for d in (20, 10, 5)} | {(max(1, m // 10), 0)})


def ideal_lower_bound(m: int, eps: float, delta: float, alpha: float = 0.05,
                      ks: Sequence[tuple[int, int]] | None = None) -> float:
    """How far a one-run audit with m canaries can get against a mechanism exactly at (eps, delta).

    The most an (eps, 0)-DP mechanism lets any attacker get right is a fraction e^eps / (1 + e^eps) of
    its guesses (Steinke, Nasr & Jagielski 2023, Theorem 5.2, the same bound `p_value` uses). Give the
    audit that expected number of correct guesses, for each candidate (k+, k-), and return the best
    bound it proves: the ceiling of this method with these canaries, whatever the attack. The gap from
    it up to eps is the method's own looseness (SNJ 2023, Section 7: with m in the hundreds it falls
    well short of eps unless eps is small); the gap from the measured bound up to it is the attack's.
    The f-DP analysis of the same experiment (Mahloujifar, Melis & Chaudhuri 2024, "Auditing f-Differential
    Privacy in One Run", https://arxiv.org/abs/2410.22235) narrows the first gap.
    """
    ks = list(ks) if ks is not None else default_ks(m)
    p = 1.0 / (1.0 + math.exp(-eps)) if math.isfinite(eps) else 1.0
    level = alpha / len(ks)
    best = 0.0
    for kp, km in ks:
        r = min(m, kp + km)
        best = max(best, epsilon_lower_bound(m, r, int(math.floor(r * p)), delta, level))
    return best


@dataclass
class ProbeResult:
    """A one-run audit: the claimed epsilon of the training and the empirical lower bound against it."""

    canaries: int  # m
    included: int
    noise_multiplier: float
    sampling_probability: float
    steps: int
    delta: float
    alpha: float
    claimed_epsilon: float  # what the accountant says for this training at delta
    epsilon_lower_bound: float  # empirical, with confidence 1 - alpha
    guesses: int
    correct: int
    k_plus: int
    k_minus: int
    seconds: float = 0.0
    source: str = "synthetic"

    @property
    def consistent(self) -> bool:
        """The empirical bound does not contradict the claim."""
        return self.epsilon_lower_bound <= self.claimed_epsilon

    def to_dict(self) -> dict:
        """JSON-able form, with `consistent`."""
        return {**asdict(self), "consistent": self.consistent}
