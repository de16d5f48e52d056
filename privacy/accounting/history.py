"""How a history of DP events is reduced before any method accounts it (steps 1 and 2).

Owns the reduction every method shares; protects ARCHITECTURE.md invariant 5 (sound, then tight):
each step is exact or conservative, never optimistic.

1. The event tree is flattened to a multiset {(mechanism, q): count}. SelfComposed multiplies
   counts, Composed concatenates, nested Poisson sampling multiplies rates (independent Poisson
   samples are a Poisson sample). Poisson sampling *of a composite* is ONE shared sample feeding
   several mechanisms, never k independent samples:
   - a composite of continuous Gaussians only (e.g. PoissonSampled(q, SelfComposed(Gaussian, k))) is
     one Gaussian mechanism with mu^2 = sum count * (Delta/sigma)^2 (Dong, Roth & Su 2019, below), so
     the shared sample is a Poisson-subsampled Gaussian of noise multiplier 1/mu: Poisson subsampling
     of any mechanism dominated by the pair (N(0,1), N(mu,1)) is dominated by the subsampled pair
     (Zhu, Dong & Wang 2022, "Optimal Accounting of Differential Privacy via Characteristic
     Function", Theorem 11, https://arxiv.org/abs/2106.08567). This is what dp_accounting's RDP
     accountant does for the same shape (`_effective_gaussian_noise_multiplier`);
   - any other composite is accounted WITHOUT amplification (q = 1): subsampling never increases the
     hockey-stick divergence (joint convexity), so this is sound, merely loose.
2. All unsubsampled continuous Gaussians are merged into one Gaussian with
   mu^2 = sum count * (Delta/sigma)^2: composition of Gaussian mechanisms is exactly a Gaussian
   mechanism (Dong, Roth & Su 2019, "Gaussian Differential Privacy", Corollary 2.1 (v1),
   https://arxiv.org/abs/1905.02383).

The unit of privacy is one contributor (ARCHITECTURE.md invariant 4).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

from privacy.events import (
    ComposedEvent,
    DiscreteGaussianEvent,
    DiscreteLaplaceEvent,
    DistributedDiscreteGaussianEvent,
    DpEvent,
    EpsilonDeltaEvent,
    GaussianEvent,
    LaplaceEvent,
    NoOpEvent,
    PoissonSampledEvent,
    SelfComposedEvent,
)

# The mechanisms a history flattens to.
BASE_EVENTS = (GaussianEvent, DiscreteGaussianEvent, LaplaceEvent, DiscreteLaplaceEvent, EpsilonDeltaEvent,
               DistributedDiscreteGaussianEvent)  # the last: privacy/accounting/ddg.py


class AccountingError(ValueError):
    """The history cannot be accounted by the requested method."""


def flatten(events: Iterable[DpEvent]) -> Counter:
    """Multiset {(base mechanism, sampling probability): count} of a history (see module doc)."""
    out: Counter = Counter()
    for e in events:
        _flatten(e, 1, 1.0, out)
    return out


def _flatten(event: DpEvent, count: int, q: float, out: Counter) -> None:
    if count == 0 or isinstance(event, NoOpEvent):
        return
    if isinstance(event, BASE_EVENTS):
        out[(event, q)] += count
    elif isinstance(event, (SelfComposedEvent, ComposedEvent)) and q < 1.0:
        _shared_sample(event, count, q, out)  # one Poisson sample feeds every part (see module doc)
    elif isinstance(event, SelfComposedEvent):
        _flatten(event.event, count * event.count, q, out)
    elif isinstance(event, ComposedEvent):
        for e in event.events:
            _flatten(e, count, q, out)
    elif isinstance(event, PoissonSampledEvent):
        _flatten(event.event, count, q * event.sampling_probability, out)
    else:
        raise AccountingError(f"not a DP event: {type(event).__name__}")


def _shared_sample(event: DpEvent, count: int, q: float, out: Counter) -> None:
    """A composite run on ONE Poisson sample at rate q (module doc, step 1): Gaussians only -> one
    subsampled Gaussian with the composed mu; anything else -> its parts without amplification."""
    inner = flatten([event])
    if not inner:
        return
    if all(isinstance(ev, GaussianEvent) and qi == 1.0 for (ev, qi) in inner):
        mu2 = sum(n * (ev.sensitivity / ev.sigma) ** 2 for (ev, _), n in inner.items())
        out[(GaussianEvent(sigma=1.0 / math.sqrt(mu2), sensitivity=1.0), q)] += count
        return
    for key, n in inner.items():
        out[key] += n * count


def merge_gaussians(groups: Counter) -> Counter:
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


def sorted_groups(groups: Counter) -> list:
    """The groups in a deterministic order, so that the same multiset always yields the same float
    (the auditor recomputes the ledger's claims and compares)."""
    return sorted(groups.items(), key=lambda kv: (repr(kv[0]), kv[1]))
