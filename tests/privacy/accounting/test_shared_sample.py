"""One Poisson sample feeding k mechanisms is ONE shared sample, not k independent samples (issue 10,
finding 3): the node's accountant and the auditor's independent recomputation both account
PoissonSampled(q, SelfComposed(Gaussian, k)) as a Poisson-subsampled Gaussian of noise multiplier
sigma/sqrt(k), as dp_accounting's RDP accountant does for the same shape."""

from __future__ import annotations

import math

import pytest
from dp_accounting import dp_event as dpe
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant
from scipy import optimize
from scipy.stats import norm

from privacy.accounting import epsilon_by_method, epsilon_of, flatten
from privacy.accounting.pld import pld_epsilon
from privacy.audit.recompute import recompute_epsilons
from privacy.events import ComposedEvent, GaussianEvent, LaplaceEvent, PoissonSampledEvent, SelfComposedEvent

Q, K, SIGMA, DELTA = 0.01, 100, 1.0, 1e-6
SHARED = PoissonSampledEvent(Q, SelfComposedEvent(GaussianEvent(SIGMA), K))
# The node's own PLD path on a 10x coarser (still pessimistic) grid: the fine grid costs ~30 s for a
# loss this large, the reduction under test is the same.
VDI = 1e-3


def node_pld(events) -> float:
    return pld_epsilon(events, DELTA, interval=VDI)


def exact_subsampled_gaussian_epsilon(q: float, mu: float, delta: float) -> float:
    """The exact epsilon at `delta` of the Poisson-subsampled Gaussian, add/remove: the hockey-stick
    divergence of (1-q)N(0,1) + qN(mu,1) against N(0,1) in closed form (the other direction is bounded
    by log(1/(1-q)), far below here), solved for epsilon."""
    def delta_of(eps: float) -> float:
        x0 = (math.log((math.exp(eps) - (1 - q)) / q) + mu * mu / 2) / mu
        return q * math.exp(norm.logsf(x0 - mu)) - math.exp(math.log(math.exp(eps) - (1 - q)) + norm.logsf(x0))
    return optimize.brentq(lambda e: delta_of(e) - delta, 1.0, 500.0, xtol=1e-10)


def test_shared_sample_matches_dp_accounting_not_k_independent_samples():
    node = node_pld([SHARED])
    # dp_accounting's PLD accountant on the equivalent single subsampled Gaussian (it refuses the
    # composite shape itself), and its RDP accountant on the very shape
    pld = pld_privacy_accountant.PLDAccountant(value_discretization_interval=VDI)
    pld.compose(dpe.PoissonSampledDpEvent(Q, dpe.GaussianDpEvent(SIGMA / math.sqrt(K))))
    assert node == pytest.approx(pld.get_epsilon(DELTA), rel=1e-9)
    rdp = rdp_privacy_accountant.RdpAccountant()
    rdp.compose(dpe.PoissonSampledDpEvent(Q, dpe.SelfComposedDpEvent(dpe.GaussianDpEvent(SIGMA), K)))
    assert epsilon_by_method([SHARED], DELTA, "rdp") == pytest.approx(rdp.get_epsilon(DELTA), rel=1e-9)
    # the old flattening into k independent samples said 0.95; a shared sample costs ~82
    independent = node_pld([SelfComposedEvent(PoissonSampledEvent(Q, GaussianEvent(SIGMA)), K)])
    assert independent < 1.0 < 75 < node < 90
    assert flatten([SHARED]) == {(GaussianEvent(SIGMA / math.sqrt(K), 1.0), Q): 1}


def test_shared_sample_is_sound_and_tight_against_the_closed_form():
    exact = exact_subsampled_gaussian_epsilon(Q, math.sqrt(K) / SIGMA, DELTA)
    node = node_pld([SHARED])
    assert exact * (1 - 1e-9) <= node <= exact * 1.01  # pessimistic PLD: an upper bound (to float noise), tight


def test_auditor_recomputes_the_shared_sample_independently():
    pld_e, rdp_e = recompute_epsilons([SHARED.to_proto()], DELTA, VDI)[-1]
    assert pld_e == pytest.approx(node_pld([SHARED]), rel=1e-9)
    assert rdp_e == pytest.approx(epsilon_by_method([SHARED], DELTA, "rdp"), rel=1e-9)
    # a claim at the old flattened figure is caught: far below the recomputation
    assert min(pld_e, rdp_e) > 75


def test_composed_gaussians_on_one_sample_merge_and_other_composites_claim_no_amplification():
    mixed = PoissonSampledEvent(Q, ComposedEvent((GaussianEvent(1.0), SelfComposedEvent(GaussianEvent(2.0, 2.0), 99))))
    assert flatten([mixed]) == flatten([SHARED])
    assert recompute_epsilons([mixed.to_proto()], DELTA, VDI)[-1] == pytest.approx(recompute_epsilons([SHARED.to_proto()], DELTA, VDI)[-1])
    # a Laplace in the composite: no amplification (sound), node and auditor alike
    lap = PoissonSampledEvent(Q, SelfComposedEvent(LaplaceEvent(20.0), 3))
    assert epsilon_of([lap], DELTA).epsilon == pytest.approx(epsilon_of([SelfComposedEvent(LaplaceEvent(20.0), 3)], DELTA).epsilon)
    assert min(recompute_epsilons([lap.to_proto()], DELTA)[-1]) >= epsilon_of([lap], DELTA).epsilon * (1 - 1e-9)


def test_dpsgd_shape_still_amplifies_each_step():
    # SelfComposed(PoissonSampled(...)): a fresh sample each step, unchanged
    ev = SelfComposedEvent(PoissonSampledEvent(Q, GaussianEvent(SIGMA)), K)
    assert flatten([ev]) == {(GaussianEvent(SIGMA), Q): K}
