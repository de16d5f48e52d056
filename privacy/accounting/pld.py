"""Epsilon by privacy loss distributions: the tight method (ARCHITECTURE.md invariant 5).

Privacy loss distributions (Meiser & Mohammadi 2018, "Tight on Budget? Tight Bounds for r-Fold
Approximate Differential Privacy", https://eprint.iacr.org/2017/1034; Koskela, Jaelkoe & Honkela
2020, "Computing Tight Differential Privacy Guarantees Using FFT", https://arxiv.org/abs/1906.03049;
Doroshenko et al. 2022, "Connect the Dots: Tighter Discrete Approximations of Privacy Loss
Distributions", https://arxiv.org/abs/2207.04380), computed by Google's dp_accounting with
*pessimistic* discretisation, so the number is an upper bound on the true epsilon. Add/remove
neighbouring; Poisson subsampling handled by the ADD/REMOVE pair of PLDs.

Step 3 of the reduction (after privacy/accounting/history.py): each group's PLD is built once and
self-composed `count` times (FFT), then the groups composed.
"""

from __future__ import annotations

import functools
from typing import Sequence

from dp_accounting.pld import common as pld_common
from dp_accounting.pld import privacy_loss_distribution as pld_lib

from privacy.accounting.history import AccountingError, flatten, merge_gaussians, sorted_groups
from privacy.events import (
    DiscreteGaussianEvent,
    DiscreteLaplaceEvent,
    DpEvent,
    EpsilonDeltaEvent,
    GaussianEvent,
    LaplaceEvent,
)

# dp_accounting's own default; with pessimistic rounding each discretisation step only adds loss.
VALUE_DISCRETIZATION_INTERVAL = 1e-4


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
        # Exact PLD of the discrete Gaussian (Canonne, Kamath & Steinke 2020,
        # https://arxiv.org/abs/2004.00010). dp_accounting truncates the noise where its tail mass
        # is < 1e-30; the sampler does not truncate, so the two mechanisms differ by < 1e-30 in
        # total variation: < 1e-30 extra delta per use, far below any delta we report.
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
    elif isinstance(ev, EpsilonDeltaEvent):
        # The (eps, delta) randomized-response pair dominates every (eps, delta)-DP mechanism (Kairouz,
        # Oh & Viswanath 2015, https://arxiv.org/abs/1311.0776, Sec. 3); dp_accounting's pessimistic PLD
        # of it. Poisson sampling of it is not amplified (q ignored: sound, merely loose).
        base = pld_lib.from_privacy_parameters(
            pld_common.DifferentialPrivacyParameters(ev.epsilon, ev.delta),
            value_discretization_interval=interval,
        )
    else:  # DistributedDiscreteGaussianEvent: no PLD is proven for a sum of discrete Gaussians; RDP accounts it
        raise AccountingError(f"no PLD for {ev!r}")
    return base.self_compose(count) if count > 1 else base


def clear_cache() -> None:
    """Forget the PLDs built so far (for benchmarks that time a cold start)."""
    _group_pld.cache_clear()


def pld_epsilon(events: Sequence[DpEvent], delta: float, interval: float = VALUE_DISCRETIZATION_INTERVAL) -> float:
    """Epsilon at `delta` of the whole history by pessimistic PLDs (an upper bound)."""
    groups = sorted_groups(merge_gaussians(flatten(events)))
    if not groups:
        return 0.0
    (ev, q), n = groups[0]
    total = _group_pld(ev, q, n, interval)
    for (ev, q), n in groups[1:]:
        total = total.compose(_group_pld(ev, q, n, interval))
    return float(max(0.0, total.get_epsilon_for_delta(delta)))
