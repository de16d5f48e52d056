"""Private key selection (privacy/mechanisms.py `noisy_key_selection`) and its event (a discrete
Gaussian composed with an (epsilon, delta) event): OpenDP's privacy map, the threshold, statistical
checks of what is released, and the node's accountant agreeing with the auditor's recomputation."""

import math

import pytest

from privacy import samplers
from privacy.accounting import Accountant, AccountingError, epsilon_by_method, epsilon_of
from privacy.audit.recompute import recompute_epsilons
from privacy.events import (
    DiscreteGaussianEvent,
    EpsilonDeltaEvent,
    EventError,
    SelfComposedEvent,
    event_from_dict,
    event_from_proto,
)
from privacy.mechanisms import MechanismError, noisy_key_selection, selection_threshold

DELTA = 1e-6


def test_event_round_trips_and_refuses_bad_fields():
    e = EpsilonDeltaEvent(0.8, 1e-9)
    assert event_from_proto(e.to_proto()) == e and event_from_dict(e.to_dict()) == e
    with pytest.raises(EventError, match="EpsilonDeltaEvent.delta"):
        EpsilonDeltaEvent(1.0, 1.5)
    with pytest.raises(EventError, match="EpsilonDeltaEvent.epsilon"):
        EpsilonDeltaEvent(-1.0, 0.0)


def test_accounting_of_epsilon_delta_is_pld_only_and_matches_the_auditor():
    history = [SelfComposedEvent(DiscreteGaussianEvent(6.0, 1), 6), EpsilonDeltaEvent(1.0, 1e-8),
               SelfComposedEvent(DiscreteGaussianEvent(6.0, 1), 6)]
    # alone: the (1, 1e-8) pair costs just under 1 at delta 1e-6 (its infinite-loss mass is 1e-8 < delta)
    alone = epsilon_of([history[1]], DELTA)
    assert alone.method == "pld" and alone.rho is None and 0.99 < alone.epsilon <= 1.0
    # delta of the event above the target delta: no finite epsilon reaches it
    assert epsilon_of([EpsilonDeltaEvent(1.0, 1e-5)], DELTA).epsilon > 10
    with pytest.raises(AccountingError):
        epsilon_by_method(history, DELTA, "rdp")  # no RDP curve for delta > 0
    assert not Accountant("rdp").supports(history[1]) and not Accountant("zcdp").supports(history[1])
    # the node's cumulative claims equal the auditor's independent recomputation (both PLD, pessimistic);
    # RDP becomes unbounded from the (eps, delta) event on, never silently skipping it
    audit = recompute_epsilons([e.to_proto() for e in history], DELTA, interval=1e-4)
    for i, (pld, rdp) in enumerate(audit):
        ours = epsilon_of(history[: i + 1], DELTA).epsilon
        assert ours == pytest.approx(pld, rel=1e-3)
        assert (rdp == math.inf) == (i >= 1)
    # composition is not free: three events cost more than one, and at most their sum (basic composition)
    three = epsilon_of([SelfComposedEvent(history[1], 3)], DELTA).epsilon
    assert alone.epsilon < three <= 3.0


def test_threshold_is_the_smallest_meeting_delta():
    for k, sigma, delta in ((1, 3.0, 1e-8), (2, 6.0, 1e-8), (6, 10.0, 1e-9)):
        t = selection_threshold(sigma, k, delta)
        assert samplers.gaussian_threshold_privacy(sigma, t, k)[1] <= delta
        assert samplers.gaussian_threshold_privacy(sigma, t - 1, k)[1] > delta
        assert samplers.gaussian_threshold_privacy(sigma, t, k)[0] == pytest.approx(k / (2 * sigma**2))  # rho
    with pytest.raises(MechanismError, match="delta"):
        selection_threshold(1.0, 1, 0.0)


def test_selection_costs_the_asked_epsilon_like_a_query():
    sel = noisy_key_selection([("a", "x")], 2, 1.0, DELTA, 1e-8)
    gauss, approx = sel.event.events
    assert gauss == SelfComposedEvent(DiscreteGaussianEvent(sel.sigma, 1), 2)
    assert approx == EpsilonDeltaEvent(0.0, sel.selection_delta) and 0 < sel.selection_delta <= 1e-8
    assert 0.98 < epsilon_of([sel.event], DELTA).epsilon <= 1.0
    with pytest.raises(MechanismError, match="selection_delta"):
        noisy_key_selection([], 2, 1.0, DELTA, DELTA)


def test_selection_releases_common_keys_never_a_rare_one():
    # 300 people hold "common"; 3 people hold "rare"; one person holds a unique name. The threshold
    # at 2 keys per person, epsilon 1, is ~36: "common" passes always, the others never (a key only
    # one person holds passes with probability < 1e-8 per run, by OpenDP's privacy map).
    rows = [(f"u{i}", "common") for i in range(300)] + [(f"r{i}", "rare") for i in range(3)] + [("solo", "my-name")]
    released = {"common": 0, "rare": 0, "my-name": 0}
    for _ in range(200):
        sel = noisy_key_selection(rows, 2, 1.0, DELTA, 1e-8)
        for k in sel.keys:
            released[k] += 1
        assert all(v >= sel.threshold for v in sel.keys.values())
    assert released == {"common": 200, "rare": 0, "my-name": 0}


def test_noisy_counts_are_unbiased_with_the_stated_noise():
    # keys far above the threshold: the released noisy count is count + discrete Gaussian(sigma)
    rows = [(f"u{i}", f"k{i % 4}") for i in range(4 * 500)]
    vals, sigma = [], None
    for _ in range(100):
        sel = noisy_key_selection(rows, 1, 0.5, DELTA, 1e-8)
        assert set(sel.keys) == {"k0", "k1", "k2", "k3"}
        sigma = sel.sigma
        vals += [v - 500 for v in sel.keys.values()]
    var = samplers.discrete_gaussian_variance(sigma)
    mean = sum(vals) / len(vals)
    assert abs(mean) < 5 * math.sqrt(var / len(vals))
    emp = sum(v * v for v in vals) / len(vals)
    assert 0.7 * var < emp < 1.3 * var


def test_contribution_bound_per_person():
    # one person with 50 keys adds at most max_keys of them: no key reaches the threshold through them
    rows = [("one", f"key-{i}") for i in range(50)]
    assert noisy_key_selection(rows, 3, 1.0, DELTA, 1e-8).keys == {}
    with pytest.raises(MechanismError, match="max_keys"):
        noisy_key_selection(rows, 0, 1.0, DELTA, 1e-8)


def test_privacy_filter_spends_the_selection_delta_and_matches_the_auditor():
    from privacy.accounting.filter import approximate_delta, filter_epsilon
    from privacy.audit.recompute import recompute_filter_epsilons

    gauss = SelfComposedEvent(DiscreteGaussianEvent(6.0, 1), 6)
    history = [gauss, EpsilonDeltaEvent(1.0, 1e-8), gauss, SelfComposedEvent(EpsilonDeltaEvent(1.0, 1e-8), 2)]
    assert approximate_delta(history) == pytest.approx(3e-8)
    audit = recompute_filter_epsilons([e.to_proto() for e in history], DELTA)
    ours = [filter_epsilon(history[: i + 1], DELTA) for i in range(len(history))]
    assert ours == pytest.approx(audit, rel=1e-9)
    # each release costs something; the selections' deltas come out of the share reserved for them in
    # advance, so the pure part's figure is the same as if they had no delta at all
    assert all(b > a for a, b in zip(ours, ours[1:]))
    pure_only = filter_epsilon([gauss, EpsilonDeltaEvent(1.0, 0.0), gauss, SelfComposedEvent(EpsilonDeltaEvent(1.0, 0.0), 2)], DELTA)
    assert ours[-1] == pytest.approx(pure_only, rel=1e-12)
    # selections whose deltas use up the filter's delta: no finite figure, so the cap refuses
    assert filter_epsilon([EpsilonDeltaEvent(1.0, 6e-7), EpsilonDeltaEvent(1.0, 6e-7)], DELTA) == math.inf
    assert recompute_filter_epsilons([EpsilonDeltaEvent(1.0, 6e-7).to_proto()] * 2, DELTA)[-1] == math.inf
