"""The vectorised exact discrete Gaussian and the lattice release DP-SGD uses (issue 10, finding 5)."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from privacy import samplers
from tests.privacy.test_samplers import chi_square_p

N = 100_000


@pytest.mark.parametrize("sigma", [0.3, 3.7, 40.0])
def test_vector_sampler_moments_and_pmf(sigma):
    x = samplers.discrete_gaussian_vector(sigma, N)
    assert x.dtype == np.int64 and len(x) == N
    var = samplers.discrete_gaussian_variance(sigma)
    assert abs(x.mean()) < 5 * math.sqrt(var / N)
    support = np.arange(-int(40 * sigma) - 10, int(40 * sigma) + 11)
    mu4 = float((samplers.discrete_gaussian_pmf(sigma, support) * support.astype(float) ** 4).sum())
    assert abs(x.var() - var) < 5 * math.sqrt((mu4 - var * var) / N)  # s.e. of a sample variance
    width = max(2, int(3 * sigma))
    assert chi_square_p(x, lambda v: samplers.discrete_gaussian_pmf(sigma, v), width) > 1e-6


def test_vector_sampler_large_sigma_binned():
    """DP-SGD's regime (sigma ~ 1e4 to 1e6): chi-square over 40 equal-mass bins of the exact pmf."""
    sigma = 31_622.7
    x = samplers.discrete_gaussian_vector(sigma, N)
    assert abs(x.mean()) < 5 * sigma / math.sqrt(N)
    assert x.var() == pytest.approx(sigma**2, rel=5 * math.sqrt(2 / N))
    support = np.arange(-int(12 * sigma), int(12 * sigma) + 1)
    cdf = np.cumsum(samplers.discrete_gaussian_pmf(sigma, support))
    edges = support[np.searchsorted(cdf, np.linspace(0, 1, 41)[1:-1])]
    idx = np.searchsorted(edges, x, side="right")
    observed = np.bincount(idx, minlength=40)
    probs = np.diff(np.concatenate([[0.0], cdf[np.searchsorted(support, edges)], [1.0]]))
    assert stats.chisquare(observed, probs / probs.sum() * N).pvalue > 1e-6


def test_exact_fallback_keeps_the_distribution(monkeypatch):
    """With a huge float margin, ~1 comparison in 10 goes to the 60-digit path: same distribution."""
    monkeypatch.setattr(samplers, "_MARGIN", 0.05)
    calls = []
    real = samplers._accept_exact
    monkeypatch.setattr(samplers, "_accept_exact", lambda *a: (calls.append(1), real(*a))[1])
    sigma = 2.5
    x = samplers.discrete_gaussian_vector(sigma, 20_000)
    assert len(calls) > 500
    assert chi_square_p(x, lambda v: samplers.discrete_gaussian_pmf(sigma, v), 8) > 1e-6


def test_randomness_is_aes_ctr_fresh_or_seeded():
    a = samplers.discrete_gaussian_vector(100.0, 1000, samplers.SecureUniform(7))
    b = samplers.discrete_gaussian_vector(100.0, 1000, samplers.SecureUniform(7))
    c = samplers.discrete_gaussian_vector(100.0, 1000)
    d = samplers.discrete_gaussian_vector(100.0, 1000)
    np.testing.assert_array_equal(a, b)  # tests only: a fixed seed keys AES by SHA-256(seed)
    assert not np.array_equal(c, d) and not np.array_equal(a, c)
    u = samplers.SecureUniform().uint32(200_000)
    counts = np.bincount(u >> 28, minlength=16)  # top 4 bits uniform
    assert stats.chisquare(counts).pvalue > 1e-6


def test_bad_parameters():
    for bad in (0.0, -1.0, float("nan"), float("inf"), 2.0**31):
        with pytest.raises(ValueError):
            samplers.discrete_gaussian_vector(bad, 3)
    with pytest.raises(ValueError):
        samplers.gaussian_on_lattice(np.zeros(3), 0.0, 1.0)


def test_lattice_rounding_sensitivity_is_C_plus_sqrt_d_gamma():
    """Neighbours' sums differ by one clipped gradient (norm <= C); after rounding they differ by at most
    C/gamma + sqrt(d) in integer units, adversarial half-way points included."""
    rng = np.random.default_rng(0)  # test inputs only, not privacy noise
    d, C, slack = 500, 1.0, 0.01
    gamma = slack * C / math.sqrt(d)
    worst = 0.0
    for _ in range(200):
        v = (rng.integers(-1000, 1000, d) + rng.choice([0.5 - 1e-12, -0.5 + 1e-12, 0.0], d)) * gamma
        g = rng.normal(size=d)
        g *= C / np.linalg.norm(g)
        diff = np.rint((v + g) / gamma) - np.rint(v / gamma)
        worst = max(worst, float(np.linalg.norm(diff)) / (C / gamma + math.sqrt(d)))
    assert worst <= 1.0


def test_lattice_release_noise_and_effective_sensitivity():
    d = 20_000
    v = np.linspace(-3, 3, d)
    out, c_eff = samplers.gaussian_on_lattice(v, 1.3, 0.7)
    gamma = 0.01 * 0.7 / math.sqrt(d)
    assert c_eff == pytest.approx(0.707)
    k = out / gamma
    assert np.max(np.abs(k - np.rint(k))) < 1e-6  # an integer lattice point per coordinate
    noise = np.rint(k) - np.rint(v / gamma)
    assert noise.std() * gamma == pytest.approx(1.3 * c_eff, rel=6 / math.sqrt(2 * d))  # noise multiplier z kept


@pytest.mark.parametrize("alpha,shift", [(2, 1), (3, 5), (5, 17)])
def test_integer_shift_renyi_moments_equal_the_gaussians(alpha, shift):
    """The accounting argument (CKS 2020, Proposition 5): for integer shifts v, E_{p}[(p(x-v)/p(x))^a]
    of the discrete Gaussian is exactly exp(a(a-1) v^2 / (2 s^2)), the continuous Gaussian's value."""
    s = 6.5
    xs = np.arange(-2000, 2001)
    log_p = np.log(samplers.discrete_gaussian_pmf(s, xs[np.abs(xs) < 150]))  # normaliser from the pmf
    log_z = float(-(0.0) - log_p[np.flatnonzero(xs[np.abs(xs) < 150] == 0)[0]])
    log_pmf = -(xs.astype(float) ** 2) / (2 * s * s) - log_z
    log_pmf_shift = -((xs - shift).astype(float) ** 2) / (2 * s * s) - log_z
    moment = float(np.exp(logsumexp((1 - alpha) * log_pmf + alpha * log_pmf_shift)))
    assert moment == pytest.approx(math.exp(alpha * (alpha - 1) * shift**2 / (2 * s * s)), rel=1e-9)
