import math

import numpy as np
import pytest
from scipy import stats

from privacy import samplers
from privacy.accounting import epsilon_of
from privacy.events import DiscreteGaussianEvent, DiscreteLaplaceEvent
from tests.privacy.dp_testing import empirical_epsilon_lower_bound

N = 100_000


def chi_square_p(draws, pmf_fn, width):
    xs = np.arange(-width, width + 1)
    expected = pmf_fn(xs) * len(draws)
    observed = np.array([(draws == x).sum() for x in xs], dtype=float)
    # merge both tails into the end bins so totals match
    tail_lo = (draws < -width).sum()
    tail_hi = (draws > width).sum()
    observed[0] += tail_lo
    observed[-1] += tail_hi
    expected[0] += len(draws) * (1 - pmf_fn(xs).sum()) / 2
    expected[-1] += len(draws) * (1 - pmf_fn(xs).sum()) / 2
    return stats.chisquare(observed, expected).pvalue


@pytest.mark.parametrize("sigma", [0.7, 3.0, 25.0])
def test_discrete_gaussian_moments_and_pmf(sigma):
    x = samplers.discrete_gaussian(sigma, N)
    assert x.dtype == np.int64 and len(x) == N
    var = samplers.discrete_gaussian_variance(sigma)
    assert abs(x.mean()) < 5 * math.sqrt(var / N)
    # Var of the sample variance ~ (mu4 - var^2)/n, mu4 ~ 3 var^2 for a near-Gaussian
    assert abs(x.var() - var) < 5 * math.sqrt(2 * var * var / N) + 1e-9
    width = max(3, int(3 * sigma))
    assert chi_square_p(x, lambda v: samplers.discrete_gaussian_pmf(sigma, v), width) > 1e-6


@pytest.mark.parametrize("scale", [0.5, 2.0, 15.0])
def test_discrete_laplace_moments_and_pmf(scale):
    x = samplers.discrete_laplace(scale, N)
    var = samplers.discrete_laplace_variance(scale)
    assert abs(x.mean()) < 5 * math.sqrt(var / N)
    assert abs(x.var() - var) < 6 * math.sqrt(5 * var * var / N) + 1e-9  # Laplace kurtosis ~6
    width = max(3, int(3 * scale))
    assert chi_square_p(x, lambda v: samplers.discrete_laplace_pmf(scale, v), width) > 1e-6


def test_single_draws_and_bad_parameters():
    assert isinstance(samplers.discrete_gaussian(2.0), int)
    assert isinstance(samplers.discrete_laplace(2.0), int)
    assert len(samplers.discrete_gaussian(2.0, 0)) == 0
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="sigma"):
            samplers.discrete_gaussian(bad, 3)
        with pytest.raises(ValueError, match="scale"):
            samplers.discrete_laplace(bad, 3)


def test_draws_are_not_repeatable():
    # a CSPRNG: two fresh vectors of 1000 draws never coincide
    assert not np.array_equal(samplers.discrete_gaussian(5.0, 1000), samplers.discrete_gaussian(5.0, 1000))


def test_statistical_dp_discrete_laplace():
    """Neighbouring answers 0 and 1 (sensitivity 1), scale 1: claimed eps = 1 (pure)."""
    delta = 1e-6
    x = samplers.add_noise(np.zeros(N, dtype=np.int64), "discrete_laplace", 1.0)
    y = samplers.add_noise(np.ones(N, dtype=np.int64), "discrete_laplace", 1.0)
    claimed = epsilon_of([DiscreteLaplaceEvent(1.0, 1)], delta).epsilon
    lb = empirical_epsilon_lower_bound(x, y, delta)
    assert lb <= claimed
    # power: the test would catch a sampler using half the claimed scale (true eps 2)
    assert lb > 0.8 * claimed


def test_statistical_dp_discrete_gaussian():
    delta = 1e-3
    sigma = 1.0
    x = samplers.add_noise(np.zeros(N, dtype=np.int64), "discrete_gaussian", sigma)
    y = samplers.add_noise(np.ones(N, dtype=np.int64), "discrete_gaussian", sigma)
    claimed = epsilon_of([DiscreteGaussianEvent(sigma, 1)], delta).epsilon
    lb = empirical_epsilon_lower_bound(x, y, delta)
    assert lb <= claimed
    # power: above what a sampler with sigma 2x larger than real would claim
    assert lb > epsilon_of([DiscreteGaussianEvent(2 * sigma, 1)], delta).epsilon


def test_sampling_leaves_opendps_contrib_flag_as_it_was():
    from opendp.mod import GLOBAL_FEATURES

    before = "contrib" in GLOBAL_FEATURES
    samplers._vector_measurement.cache_clear()
    samplers.discrete_gaussian(3.0, 4)
    samplers.discrete_laplace(2.0, 4)
    assert ("contrib" in GLOBAL_FEATURES) == before
