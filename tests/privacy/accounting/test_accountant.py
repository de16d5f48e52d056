"""The accountant against dp_accounting's PLD accountant and against independent exact computations.

"Never below" is checked against *certified lower bounds* on the true epsilon: exact closed forms
(Gaussian: Balle & Wang 2018), brute-force sums over the discrete pmfs, and dp_accounting's PLD
with optimistic rounding (which under-estimates the truth).
"""

import math

import numpy as np
import pytest
from dp_accounting import dp_event as de
from dp_accounting.pld import privacy_loss_distribution as pld_lib
from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
from scipy import optimize, stats

from privacy.accounting import (
    Accountant,
    AccountingError,
    epsilon_by_method,
    epsilon_of,
    projected_epsilon,
)
from privacy.events import (
    ComposedEvent,
    DiscreteGaussianEvent,
    DiscreteLaplaceEvent,
    GaussianEvent,
    LaplaceEvent,
    NoOpEvent,
    PoissonSampledEvent,
    SelfComposedEvent,
)

DELTA = 1e-6


def dp_accounting_pld(events, delta=DELTA):
    acc = PLDAccountant()
    for e in events:
        acc.compose(e)
    return acc.get_epsilon(delta)


def optimistic_dpsgd(sigma, q, steps, delta=DELTA):
    pld = pld_lib.from_gaussian_mechanism(
        sigma, sampling_prob=q, pessimistic_estimate=False, use_connect_dots=False
    ).self_compose(steps)
    return pld.get_epsilon_for_delta(delta)


def exact_gaussian_epsilon(mu, delta):
    """Balle & Wang 2018, Thm. 8: delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)."""
    def f(eps):
        return stats.norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2) - delta
    return optimize.brentq(f, 0.0, 500.0, xtol=1e-12)


def exact_epsilon_from_loss(losses, probs, delta):
    """Smallest eps with E_P[(1 - e^(eps - L))_+] <= delta, for a privacy-loss r.v. L under P."""
    def f(eps):
        return np.sum(probs * np.clip(1.0 - np.exp(eps - losses), 0.0, None)) - delta
    if f(0.0) <= 0:
        return 0.0
    return optimize.brentq(f, 0.0, float(losses.max()) + 1.0, xtol=1e-12)


def discrete_gaussian_pmf(sigma, support):
    w = np.exp(-(support.astype(float) ** 2) / (2 * sigma * sigma))
    return w / w.sum()


GRID = [(1.0, 0.01, 1000), (0.8, 0.02, 300), (1.5, 0.1, 200), (2.0, 0.2, 100), (4.0, 0.05, 2000), (0.6, 0.005, 500)]


@pytest.mark.parametrize("sigma,q,steps", GRID)
def test_dpsgd_grid_matches_dp_accounting_pld_and_is_sound(sigma, q, steps):
    ours = epsilon_of([SelfComposedEvent(PoissonSampledEvent(q, GaussianEvent(sigma)), steps)], DELTA)
    ref = dp_accounting_pld([de.SelfComposedDpEvent(de.PoissonSampledDpEvent(q, de.GaussianDpEvent(sigma)), steps)])
    lower = optimistic_dpsgd(sigma, q, steps)
    assert ours.method == "pld"
    assert abs(ours.epsilon - ref) <= 0.02 * ref
    assert ours.epsilon >= lower  # never under-reports
    assert ours.rho is None  # subsampled: no zCDP claim


def test_rdp_is_looser_at_sigma_1_q_001_1000_steps():
    ev = SelfComposedEvent(PoissonSampledEvent(0.01, GaussianEvent(1.0)), 1000)
    pld = epsilon_by_method([ev], DELTA, "pld")
    rdp = epsilon_by_method([ev], DELTA, "rdp")
    assert rdp > 1.05 * pld  # the "about 15% looser"
    assert epsilon_of([ev], DELTA).epsilon == pytest.approx(pld)


@pytest.mark.parametrize("n,sigma", [(1, 3.0), (10, 10.0), (200, 30.0)])
def test_composed_gaussians_against_the_exact_formula(n, sigma):
    ours = epsilon_of([GaussianEvent(sigma, 2.0)] * n, DELTA)
    exact = exact_gaussian_epsilon(math.sqrt(n) * 2.0 / sigma, DELTA)
    assert exact <= ours.epsilon <= 1.02 * exact
    assert ours.rho == pytest.approx(n * 4.0 / (2 * sigma * sigma))


def test_mixed_history_against_dp_accounting():
    """DP-SGD rounds interleaved with Gaussian, Laplace and discrete Laplace aggregates."""
    ours, ref = [], []
    for r in range(4):
        ours.append(SelfComposedEvent(PoissonSampledEvent(0.02, GaussianEvent(1.2)), 150))
        ref.append(de.SelfComposedDpEvent(de.PoissonSampledDpEvent(0.02, de.GaussianDpEvent(1.2)), 150))
        ours.append(ComposedEvent((GaussianEvent(8.0, 2.0), LaplaceEvent(20.0, 1.0))))
        ref.append(de.ComposedDpEvent([de.GaussianDpEvent(4.0), de.LaplaceDpEvent(20.0)]))
        ours.append(SelfComposedEvent(DiscreteLaplaceEvent(25.0, 1), 3))
        ref.append(de.SelfComposedDpEvent(de.DiscreteLaplaceDpEvent(1 / 25.0, 1), 3))
    e_ours = epsilon_of(ours, DELTA)
    e_ref = dp_accounting_pld(ref)
    assert e_ours.method == "pld"
    assert abs(e_ours.epsilon - e_ref) <= 0.02 * e_ref
    # a certified lower bound: the same history with optimistic rounding
    low = None
    for _ in range(4):
        parts = [
            pld_lib.from_gaussian_mechanism(1.2, sampling_prob=0.02, pessimistic_estimate=False, use_connect_dots=False).self_compose(150),
            pld_lib.from_gaussian_mechanism(4.0, pessimistic_estimate=False, use_connect_dots=False),
            pld_lib.from_laplace_mechanism(20.0, pessimistic_estimate=False, use_connect_dots=False),
            pld_lib.from_discrete_laplace_mechanism(1 / 25.0, pessimistic_estimate=False).self_compose(3),
        ]
        for p in parts:
            low = p if low is None else low.compose(p)
    assert e_ours.epsilon >= low.get_epsilon_for_delta(DELTA)
    assert epsilon_by_method(ours, DELTA, "rdp") >= e_ours.epsilon


@pytest.mark.parametrize("sigma,k", [(2.0, 1), (5.0, 4), (0.9, 1)])
def test_discrete_gaussian_against_brute_force(sigma, k):
    """k scalar discrete Gaussians, sensitivity 1: the loss of each is (2x+1)/(2 sigma^2) under the
    shifted pmf, linear in x, so the k-fold loss is a function of the sum of k iid draws."""
    support = np.arange(-int(40 * sigma) - 10, int(40 * sigma) + 11)
    pmf = discrete_gaussian_pmf(sigma, support)
    total = pmf.copy()
    for _ in range(k - 1):
        total = np.convolve(total, pmf)
    s = np.arange(len(total)) + k * support[0]
    losses = (2 * s + k) / (2 * sigma * sigma)  # log P(x)/Q(x), P = N_Z(0) shifted by -1 ... symmetric
    exact = exact_epsilon_from_loss(losses, total, DELTA)
    ours = epsilon_of([SelfComposedEvent(DiscreteGaussianEvent(sigma, 1), k)], DELTA)
    assert exact <= ours.epsilon <= 1.02 * exact + 1e-3
    assert ours.rho == pytest.approx(k / (2 * sigma * sigma))


@pytest.mark.parametrize("scale,sens,k", [(2.0, 1, 1), (10.0, 2, 5)])
def test_discrete_laplace_against_brute_force(scale, sens, k):
    support = np.arange(-int(60 * scale), int(60 * scale) + 1)
    pmf = np.exp(-np.abs(support) / scale)
    pmf /= pmf.sum()
    # loss of one use under P = DLap(0): (|x - sens| - |x|)/scale
    one = (np.abs(support - sens) - np.abs(support)) / scale
    losses, probs = one, pmf
    for _ in range(k - 1):  # exact k-fold loss distribution by enumerating pairs (small supports)
        vals, inv = np.unique(np.round(np.add.outer(losses, one), 12), return_inverse=True)
        probs = np.bincount(inv.ravel(), weights=np.multiply.outer(probs, pmf).ravel())
        losses = vals
    exact = exact_epsilon_from_loss(losses, probs, DELTA)
    ours = epsilon_of([SelfComposedEvent(DiscreteLaplaceEvent(scale, sens), k)], DELTA)
    # losses are multiples of 1/scale, which the PLD grid represents exactly: equality up to float error
    assert exact * (1 - 1e-9) <= ours.epsilon <= 1.02 * exact + 1e-3
    assert ours.epsilon <= k * sens / scale + 1e-3  # never worse than basic composition


def test_subsampling_a_composite_claims_no_amplification():
    inner = ComposedEvent((GaussianEvent(2.0), LaplaceEvent(3.0)))
    assert epsilon_of([PoissonSampledEvent(0.01, inner)], DELTA).epsilon == pytest.approx(epsilon_of([inner], DELTA).epsilon)


def test_noop_and_empty_history_cost_nothing():
    assert epsilon_of([], DELTA).epsilon == 0.0
    assert epsilon_of([NoOpEvent(), SelfComposedEvent(GaussianEvent(1.0), 0)], DELTA).epsilon == 0.0


def test_accountant_interface_and_state_round_trip():
    acc = Accountant()
    ev = PoissonSampledEvent(0.05, GaussianEvent(1.3))
    acc.compose(ev, 200).compose(DiscreteGaussianEvent(6.0, 1))
    eps = acc.get_epsilon(DELTA)
    assert eps == pytest.approx(epsilon_of([SelfComposedEvent(ev, 200), DiscreteGaussianEvent(6.0, 1)], DELTA).epsilon)
    back = Accountant.from_state(acc.state)
    assert back.get_epsilon(DELTA) == eps and back.method == "pld"
    rdp = Accountant("rdp")
    rdp.load_state_dict(acc.state)
    assert rdp.method == "pld"
    z = Accountant("zcdp")
    assert not z.supports(ev)
    assert z.supports(GaussianEvent(1.0))
    with pytest.raises(AccountingError, match="does not support"):
        z.compose(ev)
    with pytest.raises(AccountingError, match="unknown accounting method"):
        Accountant("moments")
    with pytest.raises(AccountingError, match="delta"):
        acc.get_epsilon(0.0)


def test_zcdp_method_is_sound_but_looser_than_pld():
    hist = [GaussianEvent(4.0)] * 5
    exact = exact_gaussian_epsilon(math.sqrt(5) / 4.0, DELTA)
    z = epsilon_by_method(hist, DELTA, "zcdp")
    assert z >= exact and z >= epsilon_of(hist, DELTA).epsilon


def test_projected_epsilon_includes_the_new_event():
    hist = [GaussianEvent(5.0), LaplaceEvent(10.0)]
    new = DiscreteGaussianEvent(3.0)
    p = projected_epsilon(hist, new, DELTA)
    assert p.epsilon == epsilon_of(hist + [new], DELTA).epsilon
    assert p.epsilon > epsilon_of(hist, DELTA).epsilon
