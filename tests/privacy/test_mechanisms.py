import math
from collections import Counter

import numpy as np
import pytest

from privacy import samplers
from privacy.accounting import epsilon_of
from privacy.events import ComposedEvent, DiscreteGaussianEvent, DiscreteLaplaceEvent, SelfComposedEvent
from privacy.mechanisms import (
    MechanismError,
    bound_contributions,
    noisy_counts,
    noisy_histogram,
    noisy_mean,
    noisy_sum,
)
from tests.privacy.dp_testing import empirical_epsilon_lower_bound

DELTA = 1e-6


def test_bounding_holds_per_contributor():
    rows = [("alice", p, v) for p in range(10) for v in range(-20, 30)] + [("bob", 0, 1.5)]
    out = bound_contributions(rows, max_partitions=3, max_rows_per_partition=4, clamp=(0.0, 5.0))
    alice = [r for r in out if r[0] == "alice"]
    per_part = Counter(r[1] for r in alice)
    assert len(per_part) == 3 and all(n == 4 for n in per_part.values())
    assert all(0.0 <= r[2] <= 5.0 for r in out)
    assert ("bob", 0, 1.5) in out


def test_bounding_choice_is_uniform_and_random():
    """Which partitions survive is uniform over the contributor's partitions, not the first ones."""
    rows = [("c", p) for p in range(6)]
    kept = Counter()
    runs = 3000
    for _ in range(runs):
        kept.update(r[1] for r in bound_contributions(rows, 2, 1))
    for p in range(6):  # each kept w.p. 1/3: sd of the frequency ~ 0.0086
        assert abs(kept[p] / runs - 1 / 3) < 0.05


def test_counts_unbiased_with_reported_variance_and_event():
    parts = list(range(20_000))
    rows = [(f"u{p}-{j}", p) for p in parts for j in range(p % 4)]
    rel = noisy_counts(rows, parts, max_partitions=1, sigma=4.0)
    assert rel.event == DiscreteGaussianEvent(4.0, 1)
    err = np.array([rel.values[p] - (p % 4) for p in parts], dtype=float)
    var = samplers.discrete_gaussian_variance(4.0)
    assert abs(err.mean()) < 5 * math.sqrt(var / len(parts))
    assert abs(err.var() - var) < 5 * math.sqrt(2 * var * var / len(parts))


def test_counts_event_composes_over_partitions_with_row_sensitivity():
    rows = [("a", "x"), ("a", "y"), ("a", "y"), ("b", "z")]
    rel = noisy_counts(rows, ["x", "y", "z"], max_partitions=2, max_rows_per_partition=3, sigma=10.0)
    assert rel.event == SelfComposedEvent(DiscreteGaussianEvent(10.0, 3), 2)
    lap = noisy_counts(rows, ["x", "y", "z"], max_partitions=5, sigma=4.0, noise="discrete_laplace")
    assert lap.event == SelfComposedEvent(DiscreteLaplaceEvent(4.0, 1), 3)  # only 3 public partitions
    assert set(rel.values) == {"x", "y", "z"}


def test_counts_calibrated_from_target_epsilon():
    rel = noisy_counts([("a", 1)], [1, 2, 3, 4], max_partitions=2, target_epsilon=0.5, delta=DELTA)
    assert rel.epsilon(DELTA) <= 0.5
    assert epsilon_of([SelfComposedEvent(DiscreteGaussianEvent(rel.noise_parameter * 0.99, 1), 2)], DELTA).epsilon > 0.5
    with pytest.raises(MechanismError, match="exactly one"):
        noisy_counts([("a", 1)], [1], 1, sigma=1.0, target_epsilon=1.0, delta=DELTA)


def test_statistical_dp_of_counts_on_neighbouring_datasets():
    """100,000 independent partitions: in D each holds 2 one-row contributors; D' adds, to every
    partition, a different contributor with 7 rows there. Per partition the outputs on D and D' are
    samples of M(D) and M(D') for a pair of neighbours (the added contributor touches that cell
    only), so the empirical epsilon lower bound must stay under the release's claimed epsilon. The
    7 rows make the test fail if contribution bounding does not hold."""
    n, sigma, delta = 100_000, 1.0, 1e-3
    parts = list(range(n))
    d = [(f"a{p}", p) for p in parts] + [(f"b{p}", p) for p in parts]
    d_prime = d + [(f"x{p}", p) for p in parts for _ in range(7)]
    r1 = noisy_counts(d, parts, max_partitions=1, max_rows_per_partition=1, sigma=sigma)
    r2 = noisy_counts(d_prime, parts, max_partitions=1, max_rows_per_partition=1, sigma=sigma)
    assert r1.event == r2.event
    x = np.array([r1.values[p] for p in parts])
    y = np.array([r2.values[p] for p in parts])
    lb = empirical_epsilon_lower_bound(x, y, delta)
    assert lb <= epsilon_of([r1.event], delta).epsilon


def test_histogram_over_public_bins_drops_other_values():
    rows = [(f"u{i}", i % 5 + 1) for i in range(500)] + [("v", 99)]
    h = noisy_histogram(rows, bins=[1, 2, 3, 4, 5], sigma=2.0)
    assert set(h.values) == {1, 2, 3, 4, 5}
    assert all(abs(h.values[b] - 100) < 20 for b in h.values)


def test_sum_unbiased_fixed_point_and_event():
    rows = [(f"u{i}", (i % 7) * 0.37) for i in range(300)] + [("big", 1e9)]
    true = sum(round(min(max(v, 0.0), 2.5) * 100) for _, v in rows) / 100
    runs = [noisy_sum(rows, clamp=(0.0, 2.5), max_rows=1, resolution=100, sigma=50.0) for _ in range(3000)]
    r0 = runs[0]
    assert r0.event == DiscreteGaussianEvent(50.0, 250)  # 1 row * 2.5 * 100
    assert isinstance(r0.values, int)
    decoded = np.array([r.decoded for r in runs])
    var = samplers.discrete_gaussian_variance(50.0) / 100**2
    assert abs(decoded.mean() - true) < 5 * math.sqrt(var / len(runs))
    assert abs(decoded.var() - var) < 6 * math.sqrt(2 * var * var / len(runs))


def test_mean_is_noisy_sum_over_noisy_count():
    rows = [(f"u{i}", 1.0 + (i % 3)) for i in range(3000)] + [(f"u{i}", 100.0) for i in range(10)]
    rel = noisy_mean(rows, clamp=(1.0, 3.0), max_rows=1, resolution=10, target_epsilon=1.0, delta=DELTA)
    assert isinstance(rel.event, ComposedEvent) and len(rel.event.events) == 2
    assert rel.epsilon(DELTA) <= 1.0
    assert rel.decoded == pytest.approx(min(max(rel.values["sum"] / 10 / rel.values["count"], 1.0), 3.0))
    assert abs(rel.decoded - 2.0) < 0.1
