"""Aggregate releases with contribution bounding per contributor, noised by secure integer samplers.

The unit of privacy is one contributor (ARCHITECTURE.md invariant 4). Every mechanism here:
1. bounds each contributor's influence (`bound_contributions`): at most `max_partitions`
   partitions, at most `max_rows_per_partition` rows in each, values clamped to [lo, hi];
   which rows survive is chosen uniformly at random, never by content order, and each person's
   choice is their own: fresh `secrets` draws, or a generator seeded by HMAC(key, contributor) when a
   key is given, so one person's presence never changes which rows of another person count;
2. computes the exact integer answer on the bounded rows (sums of reals in fixed point);
3. adds integer noise from privacy.samplers (discrete Gaussian by default, or discrete Laplace);
4. returns the noised integers together with the exact DpEvent the release amounts to.

Why the events are sound. Neighbouring datasets differ by one contributor (add/remove). After
bounding, that contributor changes at most m = max_partitions cells, each by at most
c = max_rows_per_partition (counts) or c = rows * max|value| (sums). Noise is independent per cell,
so the release is a product mechanism: untouched cells have identical distributions on both
datasets and contribute no privacy loss, and a touched cell shifted by |d| <= c is dominated by a
shift of exactly c (discrete Gaussian and discrete Laplace are log-concave, hence monotone
likelihood ratio location families, so the test between shifts 0 and c is at least as informative as
between 0 and d). The release is therefore accounted as the m-fold composition of the scalar
mechanism with sensitivity c, `SelfComposedEvent(DiscreteGaussianEvent(sigma, c), m)`, which is
exact for a contributor who does touch m cells by c each. (For the continuous Gaussian this equals
L2 sensitivity c*sqrt(m); per-coordinate composition avoids the small penalty of the multivariate
discrete Gaussian analysis in Canonne, Kamath & Steinke 2020, Section 4,
https://arxiv.org/abs/2004.00010.)

Partitions must be public (given by the caller, not read from the data), so that which cells
exist reveals nothing; rows in other partitions are dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import secrets
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Sequence

from privacy import samplers
from privacy.accounting import epsilon_of
from privacy.accounting.calibration import calibrate_noise, discrete_gaussian_sigma_for
from privacy.events import (
    ComposedEvent,
    DiscreteGaussianEvent,
    DiscreteLaplaceEvent,
    DpEvent,
    EpsilonDeltaEvent,
    SelfComposedEvent,
)

NOISE_KINDS = ("discrete_gaussian", "discrete_laplace")


class MechanismError(ValueError):
    """A mechanism's parameters or inputs are invalid (the message names which)."""


@dataclass(frozen=True)
class NoisyRelease:
    """What a mechanism releases, and what it costs."""

    values: Any  # noised integers: dict partition -> int, or a single int
    event: DpEvent  # the exact DP event of this release
    noise: str  # "discrete_gaussian" or "discrete_laplace"
    noise_parameter: float  # sigma or scale, in integer units of the answer
    sensitivity: int  # per-cell sensitivity c after bounding
    cells: int  # number of released cells
    resolution: float = 1.0  # fixed-point factor: released value = integer / resolution
    decoded: Any = None  # the answer in natural units (sums: float; mean: float)
    extra: dict = field(default_factory=dict)

    def epsilon(self, delta: float) -> float:
        """This release's own epsilon at `delta`, by the ledger's accountant."""
        return epsilon_of([self.event], delta).epsilon

    def payload(self) -> dict:
        """What leaves the node: the noised values, their decoding and the public noise parameters."""
        vals = self.values
        if isinstance(vals, dict):
            vals = {str(k): int(v) for k, v in vals.items()}
        return {
            "values": vals,
            "decoded": self.decoded,
            "noise": self.noise,
            "noise_parameter": self.noise_parameter,
            "sensitivity": self.sensitivity,
            "resolution": self.resolution,
            **self.extra,
        }

    def to_json_bytes(self) -> bytes:
        """`payload()` as canonical JSON bytes."""
        return json.dumps(self.payload(), sort_keys=True, separators=(",", ":")).encode()


# --- contribution bounding -------------------------------------------------------------------------


def bound_contributions(
    rows: Iterable[Sequence],
    max_partitions: int,
    max_rows_per_partition: int,
    clamp: tuple[float, float] | None = None,
    rng: secrets.SystemRandom | None = None,
    key: bytes | None = None,
) -> list[tuple]:
    """Keep at most `max_partitions` partitions per contributor and `max_rows_per_partition` rows in
    each, chosen uniformly at random; clamp values into `clamp`.

    Each contributor's choice uses only their own randomness: with `key`, a generator seeded by
    HMAC-SHA256(key, contributor) (reproducible, secret to the node); otherwise fresh draws from
    `rng`, which must be a CSPRNG (default `secrets.SystemRandom`), never a shared seeded stream.
    rows: (contributor, partition) or (contributor, partition, value). Returns rows in the same form.
    """
    if max_partitions < 1 or max_rows_per_partition < 1:
        raise MechanismError("max_partitions and max_rows_per_partition must be >= 1")
    if clamp is not None and not (clamp[0] <= clamp[1]):
        raise MechanismError(f"clamp must be (lo, hi) with lo <= hi, got {clamp!r}")
    shared: random.Random = rng or secrets.SystemRandom()
    by_contributor: dict[Hashable, dict[Hashable, list]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if len(row) not in (2, 3):
            raise MechanismError(f"a row is (contributor, partition[, value]), got {row!r}")
        by_contributor[row[0]][row[1]].append(row)
    out: list[tuple] = []
    for contributor, parts in by_contributor.items():
        own = random.Random(_person_seed(key, contributor)) if key is not None else shared  # a per-person choice
        keys = list(parts)
        if len(keys) > max_partitions:
            keys = own.sample(keys, max_partitions)
        for k in keys:
            kept = parts[k]
            if len(kept) > max_rows_per_partition:
                kept = own.sample(kept, max_rows_per_partition)
            for row in kept:
                if clamp is not None and len(row) == 3:
                    v = float(row[2])
                    if math.isnan(v):
                        continue  # a NaN is dropped, never counted
                    row = (row[0], row[1], min(max(v, clamp[0]), clamp[1]))
                out.append(tuple(row))
    return out


def _person_seed(key: bytes, contributor: Hashable) -> int:
    """HMAC-SHA256(key, contributor): the seed of one contributor's own bounding choice."""
    return int.from_bytes(hmac.new(key, b"cairn/bounding/v1\x1f" + repr(contributor).encode(), hashlib.sha256).digest(), "big")


# --- noise calibration ----------------------------------------------------------------------------


def _event(noise: str, param: float, sensitivity: int, cells: int) -> DpEvent:
    scalar: DpEvent
    if noise == "discrete_gaussian":
        scalar = DiscreteGaussianEvent(param, sensitivity)
    elif noise == "discrete_laplace":
        scalar = DiscreteLaplaceEvent(param, sensitivity)
    else:
        raise MechanismError(f"unknown noise {noise!r} (known: {', '.join(NOISE_KINDS)})")
    return scalar if cells == 1 else SelfComposedEvent(scalar, cells)


def _noise_parameter(noise, sigma, target_epsilon, delta, make_event: Callable[[float], DpEvent]) -> float:
    if (sigma is None) == (target_epsilon is None):
        raise MechanismError("give exactly one of sigma (noise parameter) or target_epsilon")
    if sigma is not None:
        sigma = float(sigma)
        if not (sigma > 0 and math.isfinite(sigma)):
            raise MechanismError(f"noise parameter must be finite and > 0, got {sigma!r}")
        return sigma
    if delta is None:
        raise MechanismError("target_epsilon needs delta")
    return calibrate_noise(make_event, float(target_epsilon), float(delta))


# --- mechanisms -----------------------------------------------------------------------------------


def noisy_counts(
    rows: Iterable[Sequence],
    partitions: Sequence[Hashable],
    max_partitions: int,
    max_rows_per_partition: int = 1,
    *,
    sigma: float | None = None,
    target_epsilon: float | None = None,
    delta: float | None = None,
    noise: str = "discrete_gaussian",
    rng=None,
    key: bytes | None = None,
) -> NoisyRelease:
    """Noisy number of (bounded) rows per public partition. `sigma` is the noise parameter
    (discrete Gaussian sigma or discrete Laplace scale), or calibrate it from target_epsilon at delta.
    `rng`, `key`: the bounding's randomness (`bound_contributions`)."""
    partitions = list(dict.fromkeys(partitions))
    if not partitions:
        raise MechanismError("partitions must be a non-empty public list")
    wanted = set(partitions)
    rows = [r for r in rows if r[1] in wanted]
    bounded = bound_contributions(rows, max_partitions, max_rows_per_partition, rng=rng, key=key)
    counts = dict.fromkeys(partitions, 0)
    for r in bounded:
        counts[r[1]] += 1
    m = min(max_partitions, len(partitions))
    c = int(max_rows_per_partition)
    param = _noise_parameter(noise, sigma, target_epsilon, delta, lambda p: _event(noise, p, c, m))
    noised = samplers.add_noise([counts[p] for p in partitions], noise, param)
    values = {p: int(v) for p, v in zip(partitions, noised)}
    return NoisyRelease(values, _event(noise, param, c, m), noise, param, c, len(partitions), decoded=values)


def noisy_histogram(
    rows: Iterable[Sequence],
    bins: Sequence[Hashable],
    max_bins: int = 1,
    max_rows_per_bin: int = 1,
    **kwargs,
) -> NoisyRelease:
    """Noisy histogram of rows (contributor, bin) over public `bins` (e.g. ratings 1..5)."""
    return noisy_counts(rows, bins, max_bins, max_rows_per_bin, **kwargs)


def _fixed_point(lo: float, hi: float, resolution: float) -> tuple[int, int]:
    if not (resolution > 0 and math.isfinite(resolution)):
        raise MechanismError(f"resolution must be finite and > 0, got {resolution!r}")
    return round(lo * resolution), round(hi * resolution)


def _bounded_sum(rows, clamp, max_rows, resolution, rng) -> tuple[int, int, int]:
    """(integer sum, bounded row count, per-contributor sum sensitivity) in fixed point."""
    lo, hi = clamp
    bounded = bound_contributions(((r[0], 0, r[1]) for r in rows), 1, max_rows, clamp=(lo, hi), rng=rng)
    total = sum(round(r[2] * resolution) for r in bounded)
    ilo, ihi = _fixed_point(lo, hi, resolution)
    # add/remove one contributor moves the sum by at most max_rows * max |value| (Dwork & Roth 2014, Def. 3.1, https://doi.org/10.1561/0400000042)
    sens = max_rows * max(abs(ilo), abs(ihi), 1)
    return total, len(bounded), sens


def noisy_sum(
    rows: Iterable[Sequence],
    clamp: tuple[float, float],
    max_rows: int = 1,
    resolution: float = 100.0,
    *,
    sigma: float | None = None,
    target_epsilon: float | None = None,
    delta: float | None = None,
    noise: str = "discrete_gaussian",
    rng=None,
) -> NoisyRelease:
    """Noisy sum of values, rows (contributor, value): values clamped to `clamp`, at most `max_rows`
    per contributor, scaled to integers by `resolution` (0.01 steps at 100). `sigma` is in integer
    (fixed-point) units."""
    total, _, sens = _bounded_sum(rows, clamp, max_rows, resolution, rng)
    param = _noise_parameter(noise, sigma, target_epsilon, delta, lambda p: _event(noise, p, sens, 1))
    noised = int(samplers.add_noise([total], noise, param)[0])
    return NoisyRelease(noised, _event(noise, param, sens, 1), noise, param, sens, 1,
                        resolution=resolution, decoded=noised / resolution)


def noisy_mean(
    rows: Iterable[Sequence],
    clamp: tuple[float, float],
    max_rows: int = 1,
    resolution: float = 100.0,
    *,
    sigma: float | None = None,
    target_epsilon: float | None = None,
    delta: float | None = None,
    noise: str = "discrete_gaussian",
    rng=None,
) -> NoisyRelease:
    """Noisy mean = noisy sum / noisy count (post-processing of two releases, composed).

    Noise is set proportionally to each part's sensitivity (sigma_sum = k * c_sum,
    sigma_count = k * c_count), so both parts spend about the same; `sigma` here is that factor k.
    values = {"sum": noisy integer sum, "count": noisy count}; decoded = their ratio in natural units.
    """
    rows = list(rows)
    total, n, c_sum = _bounded_sum(rows, clamp, max_rows, resolution, rng)
    c_count = int(max_rows)

    def make(k: float) -> DpEvent:
        return ComposedEvent((_event(noise, k * c_sum, c_sum, 1), _event(noise, k * c_count, c_count, 1)))

    k = _noise_parameter(noise, sigma, target_epsilon, delta, make)
    s = int(samplers.add_noise([total], noise, k * c_sum)[0])
    cnt = int(samplers.add_noise([n], noise, k * c_count)[0])
    mean = (s / resolution) / max(cnt, 1)
    lo, hi = clamp
    mean = min(max(mean, lo), hi)  # post-processing: the mean of clamped values lies in [lo, hi]
    return NoisyRelease({"sum": s, "count": cnt}, make(k), noise, k, c_sum, 2, resolution=resolution,
                        decoded=mean, extra={"count_sensitivity": c_count})


# --- private key selection (keys read from the data) -------------------------------------------------


@dataclass(frozen=True)
class KeySelection:
    """Keys found in the data whose noisy count of distinct contributors passed the threshold."""

    keys: dict[str, int]  # released key -> its noisy count (only keys past the threshold)
    event: DpEvent  # Composed(SelfComposed(DiscreteGaussian(sigma, 1), max_keys), EpsilonDelta(0, delta))
    sigma: float  # discrete Gaussian parameter on each count
    threshold: int  # noisy count a key needs to be released
    max_keys: int  # keys one contributor may add (contribution bound)
    selection_delta: float  # OpenDP's bound on releasing a key only the added person holds


def selection_threshold(sigma: float, max_keys: int, delta: float) -> int:
    """The smallest integer threshold at which `samplers.gaussian_threshold_privacy` says delta <= `delta`
    (doubling, then bisection on OpenDP's privacy map: delta falls as the threshold grows)."""
    if not (0 < delta < 1):
        raise MechanismError(f"delta must be in (0, 1), got {delta!r}")
    lo, hi = 1, 2
    while samplers.gaussian_threshold_privacy(sigma, hi, max_keys)[1] > delta:
        lo, hi = hi, hi * 2
        if hi > 1 << 40:
            raise MechanismError(f"no threshold reaches delta {delta} at sigma {sigma}")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if samplers.gaussian_threshold_privacy(sigma, mid, max_keys)[1] <= delta:
            hi = mid
        else:
            lo = mid
    return hi


def selection_event(sigma: float, max_keys: int, selection_delta: float) -> DpEvent:
    """The event of a Gaussian-thresholded key selection: the discrete Gaussian on the counts of the
    keys both neighbours hold (at most max_keys cells move by 1), composed with a (0, delta) event for
    the keys only the added person holds (released with probability <= selection_delta). Sound: the
    release is a post-processing of (Gaussian counts, the indicator "a new key passed"), and the pair
    of that indicator's laws is dominated by the (0, delta) randomized-response pair; a composition is
    dominated by the product of dominating pairs (Zhu, Dong & Wang 2022, "Optimal Accounting of
    Differential Privacy via Characteristic Function", Theorem 10, https://arxiv.org/abs/2106.08567)."""
    return ComposedEvent((_event("discrete_gaussian", sigma, 1, int(max_keys)), EpsilonDeltaEvent(0.0, selection_delta)))


def noisy_key_selection(rows: Iterable[Sequence], max_keys: int, epsilon: float, delta: float,
                        selection_delta: float, rng=None) -> KeySelection:
    """Differentially private partition selection: which keys (e.g. model names) the data holds.

    rows: (contributor, key). Each contributor keeps at most `max_keys` distinct keys (chosen at
    random, `bound_contributions`) and counts once in each; every key's count of contributors gets
    discrete Gaussian noise, and only keys whose noisy count reaches a threshold are released with
    their noisy counts (Gaussian thresholding: Korolova et al. 2009, "Releasing Search Queries and
    Clicks Privately", https://doi.org/10.1145/1526709.1526733; Desfontaines et al. 2022,
    "Differentially Private Partition Selection", https://arxiv.org/abs/2006.03684; Gopi et al. 2020,
    "Differentially Private Set Union", https://arxiv.org/abs/2002.09745). The threshold is the
    smallest at which OpenDP's proven privacy map of `make_gaussian_threshold` (Rogers 2023,
    https://arxiv.org/abs/2309.09170) bounds by `selection_delta` the chance that a key only one
    person holds is released: that threshold is what keeps a rare, possibly identifying key private.
    sigma is calibrated so that the whole event (`selection_event`) costs at most `epsilon` at `delta`
    by the ledger's accountant, like every aggregate query.
    """
    k = int(max_keys)
    if k < 1:
        raise MechanismError(f"max_keys must be >= 1, got {max_keys!r}")
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise MechanismError(f"epsilon must be finite and > 0, got {epsilon!r}")
    if not (0 < selection_delta < delta < 1):
        raise MechanismError(f"need 0 < selection_delta < delta < 1, got {selection_delta!r}, {delta!r}")
    sigma = discrete_gaussian_sigma_for(float(epsilon), float(delta) - float(selection_delta), 1, k)
    while epsilon_of([selection_event(sigma, k, selection_delta)], delta).epsilon > epsilon:
        sigma *= 1.01  # pessimistic PLD rounding: a little more noise until the ledger's figure fits
    threshold = selection_threshold(sigma, k, selection_delta)
    d = samplers.gaussian_threshold_privacy(sigma, threshold, k)[1]
    bounded = bound_contributions(((r[0], str(r[1])) for r in rows), k, 1, rng=rng)
    kept = samplers.gaussian_threshold(dict(Counter(r[1] for r in bounded)), sigma, threshold)
    return KeySelection(dict(sorted(kept.items())), selection_event(sigma, k, d), sigma, threshold, k, d)
