"""The distributed discrete Gaussian (Kairouz, Liu & Steinke 2021, https://arxiv.org/abs/2102.06387): rounding,
noise shares, the field, and the accounting both ways (privacy/distributed_dp.py, privacy/accounting/ddg.py)."""

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.special import logsumexp

from privacy.accounting import adaptive_epsilon, epsilon_of, new_state, state_report
from privacy.accounting.ddg import ddg_curve, step_rdp, tau
from privacy.distributed_dp import (
    DdgError,
    ddg_epsilons,
    ddg_event,
    ddg_own_event,
    decode,
    from_field,
    gradient_and_count,
    gradient_bound,
    noise_share,
    own_share_event,
    plan_ddg,
    quantize_person,
    step_event,
    to_field,
)
from privacy.events import (
    DistributedDiscreteGaussianEvent,
    EventError,
    GaussianEvent,
    dpsgd_event,
    event_from_dict,
    event_from_proto,
)
from privacy.samplers import SecureUniform, discrete_gaussian_variance
from tests.privacy.dp_testing import empirical_epsilon_lower_bound

P = plan_ddg(clip=1.0, noise_multiplier=1.0, dim=50, participants=5, min_honest=3, bits=32)


def test_plan_reaches_the_target_with_h_shares_and_bounds_the_wrap():
    assert P.min_honest * (P.share_sigma * P.gamma) ** 2 == pytest.approx((P.noise_multiplier * P.clip) ** 2, rel=1e-12)
    assert P.wrap_log_probability <= math.log(2.0**-40)
    assert P.count_weight / P.gamma == pytest.approx(P.count_units, abs=1e-6)
    # the signal bound plus the noise fill the field: gamma is not needlessly coarse
    assert P.max_people * P.l2_bound < 2.0**31 < 1.01 * P.max_people * P.l2_bound + 50 * P.share_sigma * math.sqrt(5)
    with pytest.raises(DdgError, match="min_honest"):
        plan_ddg(1.0, 1.0, 10, participants=2, min_honest=3)


def test_conditional_rounding_is_unbiased_and_within_the_bound():
    rng = np.random.default_rng(0)
    p = plan_ddg(1.0, 1.0, 200, 3, 2, bits=16, max_people=10)  # coarse gamma: rounding matters
    g = rng.normal(size=200)
    g *= 0.999 / np.linalg.norm(g)
    draws = np.array([quantize_person(g, p, rng) for _ in range(2000)])
    bound = gradient_bound(p.clip, p.gamma, p.beta, p.dim)
    assert np.all(np.linalg.norm(draws[:, :-1].astype(float), axis=1) <= bound)
    assert np.all(draws[:, -1] == p.count_units)
    mean = draws[:, :-1].mean(axis=0) * p.gamma
    # per coordinate the rounding's sd is <= gamma/2; the mean of 2000 draws is within 6 sd / sqrt(2000)
    assert np.max(np.abs(mean - g)) < 6 * 0.5 * p.gamma / math.sqrt(2000) + 1e-12
    big = quantize_person(10 * g, p, rng)  # clipped first
    assert np.linalg.norm(big[:-1].astype(float)) <= bound


def test_noise_shares_variance_and_h_shares_reach_the_target():
    p = plan_ddg(1.0, 1.0, 4999, 4, 3, bits=20, max_people=20)
    rng = SecureUniform(seed=7)
    shares = np.array([noise_share(p, rng) for _ in range(3)], dtype=float)  # 3 x 5000 draws
    v = discrete_gaussian_variance(p.share_sigma)
    n = shares.size
    assert shares.var() == pytest.approx(v, rel=6 * math.sqrt(2 / n))
    total = shares.sum(axis=0) * p.gamma  # h shares in real units
    assert total.var() == pytest.approx((p.noise_multiplier * p.clip) ** 2, rel=6 * math.sqrt(2 / total.size))


def test_decode_of_the_modular_sum_is_the_real_sum():
    rng = np.random.default_rng(1)
    vals = [rng.integers(-(2**29), 2**29, size=64) for _ in range(5)]
    total = np.zeros(64, dtype=np.uint64)
    for v in vals:
        total = (total + to_field(v, 32)) % np.uint64(2**32)
    assert np.array_equal(from_field(total, 32), np.sum(vals, axis=0))
    # and through the parameters: people + shares, decoded and divided by the noisy count
    p = plan_ddg(1.0, 0.5, 30, 3, 2, bits=32, max_people=1000)
    grads = [rng.normal(size=30) for _ in range(40)]
    grads = [g / max(1.0, np.linalg.norm(g)) for g in grads]
    field = np.zeros(31, dtype=np.uint64)
    exact = np.zeros(31, dtype=np.int64)
    for node in range(3):
        vec = noise_share(p, SecureUniform(seed=node))
        for g in grads[node::3]:
            vec = vec + quantize_person(g, p, rng)
        exact += vec
        field = (field + to_field(vec, p.bits)) % np.uint64(2**32)
    dec = decode(field, p)
    assert np.array_equal(dec, exact.astype(float) * p.gamma)
    gsum, count = gradient_and_count(dec, p)
    assert count == pytest.approx(40, abs=6 * 0.5 * math.sqrt(1.5) / p.count_weight)
    assert np.allclose(gsum, np.sum(grads, axis=0), atol=6 * 0.5 * math.sqrt(1.5) + 1e-6)


def test_events_round_trip_and_own_share_is_shares_one():
    ev = ddg_event(P, 0.02, 100)
    assert event_from_proto(ev.to_proto()) == ev and event_from_dict(ev.to_dict()) == ev
    assert own_share_event(ev) == ddg_own_event(P, 0.02, 100)
    assert step_event(P, 1).shares == 1 and step_event(P).shares == P.min_honest


def test_trust_epsilon_below_own_and_both_compose_with_the_rest():
    trust, own = ddg_epsilons(P, 0.02, 100, 1e-6)
    assert 0 < trust < own
    both = epsilon_of([ddg_event(P, 0.02, 100), dpsgd_event(0.01, 1.0, 50)], 1e-6)
    assert both.epsilon > trust and both.method == "rdp"
    st = new_state().add(ddg_event(P, 0.02, 100))  # the running filter (privacy/accounting/running.py)
    assert adaptive_epsilon([ddg_event(P, 0.02, 100)], 1e-6).epsilon == state_report(st, 1e-6).epsilon


def test_trust_epsilon_tends_to_the_central_gaussian_as_gamma_shrinks():
    # one step, no subsampling: the curve is alpha/2 (l2/sigma_total)^2 -> the Gaussian's with z * clip / |(clip, w)|
    for bits, rel in ((20, 5e-2), (32, 1e-3), (48, 1e-6)):
        p = plan_ddg(1.0, 1.0, 1000, 4, 2, bits=bits, max_people=100)
        central = epsilon_of([GaussianEvent(sigma=1.0, sensitivity=math.hypot(1.0, p.count_weight))], 1e-6).epsilon
        trust = epsilon_of([step_event(p)], 1e-6).epsilon
        assert trust >= central * (1 - 1e-3)  # never below the central figure (the rdp/pld gap aside)
        assert trust == pytest.approx(epsilon_of([step_event(plan_ddg(1.0, 1.0, 1000, 4, 2, bits=62, max_people=100))],
                                                 1e-6).epsilon, rel=rel)
    # subsampled: sound (above the central Gaussian's PLD) and within 50% of it
    central = epsilon_of([dpsgd_event(0.01, 1.0, 1000, clip_norm=1.0)], 1e-6).epsilon
    trust, _ = ddg_epsilons(plan_ddg(1.0, 1.0, 1000, 4, 2, count_weight=1e-3), 0.01, 1000, 1e-6)
    assert central <= trust <= 1.5 * central


def test_tau_term_matters_at_small_sigma():
    assert tau(0.5, 1) == 0.0 and tau(0.5, 3) > 0.1 and tau(5.0, 10) < 1e-100
    ev = _lattice(0.8, 3, 10, 3.0)  # a coarse lattice: few steps of noise
    a = np.array([2.0, 8.0])
    ev1 = replace(ev, shares=1)
    assert np.all(step_rdp(ev, a) >= a / 2 * (ev.l2_sensitivity / (math.sqrt(3) * ev.sigma)) ** 2)
    assert np.all(step_rdp(ev, a) < step_rdp(ev1, a))


def test_dp_statistical_check_on_a_small_sum_of_shares():
    """Empirical lower bound (tests/privacy/dp_testing.py) on a scalar DDG with 3 shares of sigma 1.5 and
    sensitivity 2: never above the accounted epsilon."""
    ev = _lattice(1.5, 3, 1, 2.0)
    rng = SecureUniform(seed=3)
    n = 100_000
    x = sum(noise_share_raw(1.5, n, rng) for _ in range(3))
    y = sum(noise_share_raw(1.5, n, rng) for _ in range(3)) + 2
    claimed = epsilon_of([ev], 1e-3).epsilon
    found = empirical_epsilon_lower_bound(x, y, 1e-3)
    assert 0.25 * claimed < found <= claimed  # the test has power, and the claim holds


def noise_share_raw(sigma, n, rng):
    from privacy.samplers import discrete_gaussian_vector

    return discrete_gaussian_vector(sigma, n, rng)


# --- adversarial review (issue 11): the bounds checked against exact divergences, forged events refused ---------


def _lattice(sigma, shares, dim, l2, participants=None, **kw):
    """A step of a given lattice sensitivity: a tiny clip and beta near 1 keep the rounding's recomputed bound
    (privacy/ddg_rules.py) below `l2`, and count_weight 0.4 rounds to 0 count units."""
    args = dict(sigma=sigma, shares=shares, dim=dim, l2_sensitivity=l2, clip=1e-9, gamma=1.0, beta=0.99,
                count_weight=0.4, bits=32, participants=participants or shares, max_people=1)
    return DistributedDiscreteGaussianEvent(**{**args, **kw})


def _log_pmf_of_sum(sigma, shares, radius=60):
    """Exact log pmf of a sum of `shares` N_Z(0, sigma^2), by log-space convolution (support truncated at
    `radius` per share: the mass beyond is below exp(-radius^2 / (2 sigma^2)))."""
    x = np.arange(-radius, radius + 1)
    one = -x * x / (2 * sigma * sigma)
    one -= logsumexp(one)
    out = one
    for _ in range(shares - 1):
        new = np.full(out.size + one.size - 1, -np.inf)
        for i, v in enumerate(one):
            new[i: i + out.size] = np.logaddexp(new[i: i + out.size], out + v)
        out = new
    return out


def _renyi(lp, lq, a):
    m = np.isfinite(lp) & np.isfinite(lq)
    return float(logsumexp(a * lp[m] + (1 - a) * lq[m]) / (a - 1))


def _shifted(lp, s):
    out = np.full_like(lp, -np.inf)
    out[s:] = lp[: lp.size - s] if s else lp
    return out


def test_step_curve_upper_bounds_the_exact_renyi_divergence_of_a_sum_of_shares():
    """Kairouz, Liu & Steinke 2021 Prop. 14 as accounted (privacy/accounting/ddg.py) is >= the exact Renyi
    divergence of the sum of h discrete Gaussians shifted by an integer vector (d1, d2), the count coordinate
    included, at orders 1.5..32, sigma down to the theorem's floor 1/2; and Zhu & Wang 2019's subsampled bound
    (ddg_curve) is >= the exact divergence of the Poisson mixture, in both directions (add and remove)."""
    orders = [1.5, 2.0, 8.0, 32.0]
    for sigma, h in ((0.5, 2), (0.8, 3), (1.5, 2), (1.0, 1)):
        lp = _log_pmf_of_sum(sigma, h)
        for d1, d2 in ((1, 0), (1, 1), (2, 1)):
            ev = _lattice(sigma, h, 1, math.hypot(d1, d2))
            bound = step_rdp(ev, np.array(orders))
            exact = [_renyi(lp, _shifted(lp, d1), a) + _renyi(lp, _shifted(lp, d2), a) for a in orders]
            assert np.all(bound >= np.array(exact) * (1 - 1e-9)), (sigma, h, d1, d2, bound, exact)
        ev = _lattice(sigma, h, 1, 2.0)
        for q in (0.1, 0.5):
            mix = np.logaddexp(math.log1p(-q) + lp, math.log(q) + _shifted(lp, 2))  # count coordinate: 0 units
            exact = [max(_renyi(mix, lp, a), _renyi(lp, mix, a)) for a in orders]
            assert np.all(ddg_curve(ev, q, orders) >= np.array(exact) * (1 - 1e-9)), (sigma, h, q)


def test_forged_events_are_refused_by_rule_at_construction():
    """A ledger entry or a coordinator's parameters the bounds do not cover never reach an accountant: the
    constructor (and so event_from_proto / event_from_dict) refuses, naming the rule of privacy/ddg_rules.py."""
    ok = step_event(P)
    for change, rule in (({"shares": 0}, "ddg_counts"), ({"participants": 0}, "ddg_counts"), ({"bits": 1}, "ddg_counts"),
                         ({"bits": 64}, "ddg_counts"), ({"shares": 6}, "ddg_shares"),
                         ({"l2_sensitivity": P.l2_bound / 2}, "ddg_sensitivity"), ({"gamma": 0.0}, "finite and > 0"),
                         ({"sigma": math.nan}, "finite and > 0"), ({"beta": 1.0}, r"\[0, 1\)")):
        with pytest.raises(EventError, match=rule):
            replace(ok, **change)
        d = ok.to_dict()
        d["distributed_discrete_gaussian"].update(change)
        with pytest.raises(EventError, match=rule):
            event_from_dict(d)
    replace(ok, beta=0.999999)  # a larger beta only lowers the bound: the logged sensitivity still covers it
    with pytest.raises(EventError, match="ddg_sigma_floor"):
        _lattice(0.3, 3, 1, 2.0)  # Theorem 1 / Prop. 14 assume sigma >= 1/2 for a sum of shares
    assert _lattice(0.3, 1, 1, 2.0).shares == 1  # one share: a plain discrete Gaussian, private at any sigma
    forged = ok.to_proto()
    forged.distributed_discrete_gaussian.l2_sensitivity = 1.0
    with pytest.raises(EventError, match="ddg_sensitivity"):
        event_from_proto(forged)


def test_auditor_refuses_what_the_theorem_does_not_cover():
    """The auditor's own conversion (privacy/audit/ddg.py) refuses a sum of shares below sigma 1/2 and more
    honest shares than participants, so no figure is recomputed for them (the entry FAILs)."""
    from privacy.audit import ddg as audit_ddg

    m = step_event(P).to_proto().distributed_discrete_gaussian
    audit_ddg.to_event(m)
    for field, value, why in (("sigma", 0.3, "sigma >= 1/2"), ("participants", 2, "shares <= participants"),
                              ("sigma", math.inf, "finite sigma")):
        bad = type(m)()
        bad.CopyFrom(m)
        setattr(bad, field, value)
        with pytest.raises(ValueError, match=why):
            audit_ddg.to_event(bad)
