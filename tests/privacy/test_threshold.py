"""The noisy min_contributors test (privacy/release.py `ReleaseGate.check_contributors`; issue 10, finding 2).

The exact number of eligible contributors must not leave the node: the decision "enough contributors"
is a DP release of [n + Z >= min_contributors], Z discrete Gaussian from the secure sampler, accounted
in the ledger as its own entry before the decision.
"""

import math
import sqlite3

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy.events import DiscreteGaussianEvent, event_from_proto
from privacy.ledger import Ledger
from privacy.policy import Policy, PolicyError
from privacy.release import TOO_FEW, PolicyViolation, ReleaseGate
from privacy.samplers import discrete_gaussian_pmf


def make_gate(**kw):
    conn = sqlite3.connect(":memory:", isolation_level=None)
    policy = Policy(community="t", **({"min_contributors": 20, "min_contributors_noise": 3.0, "epsilon_cap": 1e6} | kw))
    return ReleaseGate(Ledger(conn, Ed25519PrivateKey.generate(), "n"), policy)


def passes(gate, n) -> bool:
    try:
        gate.check_contributors("coverage", n)
        return True
    except PolicyViolation as e:
        assert e.rule == "min_contributors" and str(e).endswith(TOO_FEW)
        return False


def test_pass_rate_is_the_discrete_gaussian_tail():
    """Statistical check: P(pass | n) = P(Z >= min - n); 200 trials each at n = 17 and n = 23, within
    5 binomial sd of the exact tail of N_Z(0, 9) (fails by chance ~1e-6)."""
    xs = np.arange(-60, 61)
    pmf = discrete_gaussian_pmf(3.0, xs)
    trials = 200
    for n in (17, 23):
        gate = make_gate()
        p = float(pmf[xs >= 20 - n].sum())
        k = sum(passes(gate, n) for _ in range(trials))
        sd = math.sqrt(trials * p * (1 - p))
        assert abs(k - trials * p) < 5 * sd, (n, k, p)
    # every test was accounted before its decision: one ledger entry each, refusals included
    entries = gate.ledger.entries()
    assert len(entries) == trials
    assert {e.body.release_kind for e in entries} == {"threshold:coverage"}
    assert event_from_proto(entries[0].body.event) == DiscreteGaussianEvent(3.0, 1)
    assert all(not e.body.contributors for e in entries)


def test_refusal_says_no_count():
    gate = make_gate(min_contributors=50)
    with pytest.raises(PolicyViolation) as e:
        gate.check_contributors("coverage", 17)
    assert str(e.value) == f"refused by policy rule privacy.min_contributors: {TOO_FEW}"
    assert "17" not in str(e.value) and "50" not in str(e.value)


def test_exact_threshold_only_when_the_policy_says_so():
    gate = make_gate(min_contributors_noise=0.0)
    gate.check_contributors("coverage", 20)
    with pytest.raises(PolicyViolation, match="exact threshold, made public by this community's policy"):
        gate.check_contributors("coverage", 19)
    assert len(gate.ledger) == 0  # nothing random, nothing spent
    with pytest.raises(PolicyError, match="min_contributors_noise"):
        Policy(community="t", min_contributors_noise=-1.0)


def test_the_test_itself_respects_the_cap():
    gate = make_gate(epsilon_cap=0.5, min_contributors_noise=1.0)  # one DG(1) test costs more than 0.5
    with pytest.raises(PolicyViolation) as e:
        gate.check_contributors("coverage", 1000)
    assert e.value.rule == "epsilon_cap" and len(gate.ledger) == 0


def test_release_runs_the_test_after_the_cache_and_none_skips_it():
    gate = make_gate()
    req = {"q": 1}
    first = gate.release("coverage", req, contributors=500, event=DiscreteGaussianEvent(50.0, 1), payload=b"x")
    again = gate.release("coverage", req, contributors=500, event=DiscreteGaussianEvent(50.0, 1), payload=b"x")
    assert again.cached and [e.body.release_kind for e in gate.ledger.entries()] == ["threshold:coverage", "coverage"]
    assert first.seq == 1
    gate.release("coverage", {"q": 2}, contributors=None, event=DiscreteGaussianEvent(50.0, 1), payload=b"y")
    assert len(gate.ledger) == 3  # None: the caller ran the test already (a training plan's first round)
