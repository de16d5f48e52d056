"""The cap is a Renyi privacy filter (privacy/accounting/filter.py; issue 10, finding 4): sound when the
coordinator picks each release after seeing earlier answers. The tight PLD figure is labelled as a
figure for a schedule fixed in advance, and appears in the ledger only for committed training plans."""

from __future__ import annotations

import hashlib
import math
import sqlite3

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy.accounting import adaptive_epsilon, epsilon_of
from privacy.accounting.filter import FILTER_ORDERS, SELECTION_DELTA_SHARE, filter_admits, filter_budget, filter_epsilon
from privacy.accounting.rdp import rdp_curve
from privacy.audit.recompute import FILTER_ORDERS as AUDITOR_ORDERS
from privacy.audit.recompute import recompute_filter_epsilons
from privacy.events import DiscreteGaussianEvent, GaussianEvent, SelfComposedEvent, dpsgd_event
from privacy.ledger import Ledger
from privacy.policy import Policy
from privacy.release import PolicyViolation, ReleaseGate

DELTA = 1e-6
POLICY = Policy(community="t", epsilon_cap=3.0, delta=DELTA, min_contributors=1, max_release_cells=10,
                max_query_epsilon=1.0, min_contributors_noise=0.0)


def gate() -> ReleaseGate:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    return ReleaseGate(Ledger(conn, Ed25519PrivateKey.generate(), "n"), POLICY)


def test_filter_curve_is_the_gaussian_closed_form_and_the_auditor_uses_the_same_orders():
    assert AUDITOR_ORDERS == FILTER_ORDERS  # the filter's public definition, restated by the auditor
    k, sigma = 7, 4.0
    a = np.asarray(FILTER_ORDERS)
    curve = rdp_curve([SelfComposedEvent(GaussianEvent(sigma), k)], FILTER_ORDERS)
    np.testing.assert_allclose(curve, k * a / (2 * sigma**2), rtol=1e-12)  # Mironov 2017, Proposition 7
    pure_delta = (1 - SELECTION_DELTA_SHARE) * DELTA  # the share not reserved for (epsilon, delta) releases
    expected = float(np.min(k * a / (2 * sigma**2) + math.log(len(a) / pure_delta) / (a - 1)))
    assert filter_epsilon([SelfComposedEvent(GaussianEvent(sigma), k)], DELTA) == pytest.approx(expected, rel=1e-12)
    # sound and never below the tight fixed-in-advance figure
    assert filter_epsilon([SelfComposedEvent(GaussianEvent(sigma), k)], DELTA) > epsilon_of(
        [SelfComposedEvent(GaussianEvent(sigma), k)], DELTA).epsilon


def test_adaptive_coordinator_is_stopped_where_the_filter_says_and_never_past_the_cap():
    """A coordinator that picks each query's noise from the previous answer, asking until refused."""
    g = gate()
    sigmas, claims, refused_event = [], [], None
    prev = b"start"
    for i in range(200):
        sigma = 6.0 + (hashlib.sha256(prev).digest()[0] % 8)  # chosen after seeing the last answer
        event = DiscreteGaussianEvent(sigma, 1)
        try:
            rel = g.release("coverage", {"i": i}, event=event, payload=b"answer %d" % i, contributors=None)
        except PolicyViolation as e:
            assert e.rule == "epsilon_cap"
            refused_event = event
            break
        sigmas.append(sigma)
        claims.append(rel.claimed_epsilon)
        prev = rel.payload + rel.entry.entry_hash
    assert refused_event is not None and len(sigmas) > 3
    history = g.ledger.events()
    # every claim is the filter figure of its prefix, never above the cap; the refused release would pass it
    assert all(c <= POLICY.epsilon_cap for c in claims) and claims == sorted(claims)
    assert claims[-1] == adaptive_epsilon(history, DELTA).epsilon
    assert filter_admits(history, POLICY.epsilon_cap, DELTA)
    assert not filter_admits([*history, refused_event], POLICY.epsilon_cap, DELTA)
    # the auditor's independent recomputation agrees entry by entry, to float noise
    rec = recompute_filter_epsilons([e.to_proto() for e in history], DELTA)
    assert rec == pytest.approx(claims, rel=1e-12)
    # the tight PLD of the same sequence is below the cap: it is not what may gate an adaptive sequence
    pld = epsilon_of(history, DELTA)
    assert pld.fixed_in_advance and pld.epsilon < claims[-1]
    assert "schedule fixed in advance" in pld.label and "adaptive" in adaptive_epsilon(history, DELTA).label
    body = g.ledger.head().body
    assert (body.accountant, body.schedule, body.plan_id) == ("rdp-filter", "adaptive", "")


def test_filter_holds_its_delta_against_an_adaptive_adversary_monte_carlo():
    """Statistical check of the guarantee itself: Gaussian mechanisms whose noise an adversary picks after
    seeing the privacy loss so far (more signal when the loss is high), stopped by the filter at cap 1.0,
    delta 0.05. The realised privacy loss must exceed the cap with probability <= delta."""
    rng = np.random.default_rng(7)
    cap, delta, runs = 1.0, 0.05, 40_000
    a = np.asarray(FILTER_ORDERS)
    budget = filter_budget(cap, delta)

    def play(filtered: bool) -> tuple[float, float]:
        loss, spent_mu2 = np.zeros(runs), np.zeros(runs)  # Gaussian RDP at order a: a * sum(mu^2) / 2
        active = np.ones(runs, dtype=bool)
        for _ in range(60):
            mu = np.where(loss > 0.2, 0.6, 0.15)  # adaptive: push harder where the loss is already high
            ok = active.copy()
            if filtered:
                ok &= np.any((spent_mu2 + mu**2)[:, None] * a[None, :] / 2 <= budget[None, :], axis=1)
            loss = np.where(ok, loss + rng.normal(mu**2 / 2, mu), loss)  # one step's loss under D: N(mu^2/2, mu^2)
            spent_mu2 = np.where(ok, spent_mu2 + mu**2, spent_mu2)
            active &= ok
        return float(np.mean(loss > cap)), float(np.mean(spent_mu2))

    unfiltered, _ = play(False)
    p, spent = play(True)
    assert unfiltered > 0.5  # this adversary, unchecked, breaks the cap almost always
    assert p <= delta and spent > 0.05  # the filter lets it release, and holds the tail within delta


def test_default_training_plan_fits_the_filter_and_carries_its_fixed_in_advance_figure():
    from model.training_config import TRAINING
    from node.training import TrainRequest, make_plan

    policy = Policy(community="t")  # cap 8 at delta 1e-6, the defaults
    plan = make_plan(policy, TrainRequest(federation_id="f", round=1, rounds=TRAINING.rounds), 0.0, [])
    whole = plan.plan_event()
    assert filter_epsilon([whole], policy.delta) <= policy.epsilon_cap  # all planned rounds fit under the cap
    pld = epsilon_of([whole], policy.delta).epsilon
    assert pld < filter_epsilon([whole], policy.delta)
    g = ReleaseGate(Ledger(sqlite3.connect(":memory:", isolation_level=None), Ed25519PrivateKey.generate(), "n"), policy)
    for r in range(1, plan.rounds + 1):
        rel = g.release("train", {"round": r}, event=plan.event(), payload=b"u%d" % r, contributors=None,
                        round_id=f"f/{r}", plan=(plan.plan_id, whole))
        b = rel.entry.body
        assert b.plan_id == "train:f" and b.plan_accountant == "pld" and b.plan_epsilon == pytest.approx(pld)
        assert b.claimed_epsilon <= policy.epsilon_cap and b.schedule == "adaptive"
    assert set(g.ledger.plans(policy.delta)) == {"train:f"}
    # a plan, once committed, cannot change
    with pytest.raises(Exception, match="cannot change"):
        g.release("train", {"round": 9}, event=dpsgd_event(0.1, 9.0, 5), payload=b"x", contributors=None,
                  plan=(plan.plan_id, SelfComposedEvent(dpsgd_event(0.1, 9.0, 5), 2)))


def test_plan_fixed_label_only_for_committed_plans():
    g = gate()
    g.release("train", {"r": 1}, event=dpsgd_event(0.01, 5.0, 10), payload=b"a", contributors=None)
    b = g.ledger.head().body
    assert not b.plan_id and not b.HasField("plan_event") and b.plan_epsilon == 0 and not b.plan_accountant
    assert g.ledger.plans(DELTA) == {}


def test_selection_deltas_are_bounded_by_a_share_fixed_in_advance():
    """An adaptive coordinator asking for many (epsilon, delta_i) releases (key selection) cannot push the
    total delta past the policy's: the pure part is filtered at (1 - share) * delta whatever happened,
    and the deltas may spend at most share * delta, checked before anything else (a (0, delta_i)
    release has no pure part, but its delta counts)."""
    from privacy.accounting.filter import SELECTION_DELTA_SHARE
    from privacy.audit.recompute import SELECTION_DELTA_SHARE as AUDITOR_SHARE
    from privacy.events import EpsilonDeltaEvent

    assert AUDITOR_SHARE == SELECTION_DELTA_SHARE
    reserved = SELECTION_DELTA_SHARE * DELTA
    n = 50
    small = EpsilonDeltaEvent(0.0, reserved / n)
    within = [small] * n
    assert filter_epsilon(within, DELTA) == 0.0
    assert filter_epsilon([*within, small], DELTA) == math.inf  # one more than the reserved share
    only_delta = [EpsilonDeltaEvent(0.0, DELTA), EpsilonDeltaEvent(0.0, DELTA), EpsilonDeltaEvent(0.0, DELTA)]
    assert filter_epsilon(only_delta, DELTA) == math.inf
    rec = recompute_filter_epsilons([e.to_proto() for e in [*within, small]], DELTA)
    assert rec[n - 1] == 0.0 and rec[n] == math.inf
    # the pure part's slack does not move with the history: one Gaussian costs the same before and
    # after the selections
    g = GaussianEvent(3.0)
    assert filter_epsilon([g, *within], DELTA) == pytest.approx(filter_epsilon([g], DELTA), rel=1e-12)
