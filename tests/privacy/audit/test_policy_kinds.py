"""The auditor's policy check covers every kind (issue 15, item 7): an aggregate query's entry ("coverage",
as the node writes it, or "query:coverage") is held to allowed_releases, max_query_epsilon and
min_contributors like a training entry; each breach fails with its rule named."""

from __future__ import annotations

import sqlite3
import warnings

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy.accounting import epsilon_of
from privacy.audit.result import FAIL, PASS, WARN
from privacy.events import DiscreteGaussianEvent
from privacy.ledger import Ledger
from privacy.policy import Policy
from tests.privacy.audit.test_issue10_checks import DELTA, audit, resign

CHEAP = DiscreteGaussianEvent(200.0, 1)  # epsilon well under 0.1 at delta 1e-6
COSTLY = DiscreteGaussianEvent(2.0, 1)  # epsilon far above 0.1 (about 4)


def _ledger(policy: Policy, kinds_events: list[tuple[str, object, str]]):
    key = Ed25519PrivateKey.generate()
    led = Ledger(sqlite3.connect(":memory:", isolation_level=None), key, "n")
    for i, (kind, ev, rid) in enumerate(kinds_events):
        led.append(kind, ev, policy.delta, policy.sha256(), round_id=rid, request_hash=f"r{i}", payload=b"%d" % i)
    return led.export(), key


def _policy(**kw) -> Policy:
    return Policy(community="t", delta=DELTA, epsilon_cap=50.0, **kw)


THRESH = DiscreteGaussianEvent(6.0, 1)


@pytest.mark.parametrize("kind", ["coverage", "query:coverage"])
def test_an_honest_query_ledger_passes(tmp_path, kind):
    policy = _policy(max_query_epsilon=0.1)
    export, _ = _ledger(policy, [("threshold:coverage", THRESH, "r1"), (kind, CHEAP, "r1")])
    assert audit(export, tmp_path, policy)["policy"].status in (PASS, WARN)


@pytest.mark.parametrize("kind", ["coverage", "query:coverage"])
def test_a_query_kind_the_policy_does_not_allow_fails(tmp_path, kind):
    policy = _policy(allowed_releases=("train",), max_query_epsilon=0.1)
    export, _ = _ledger(policy, [("threshold:coverage", THRESH, "r1"), (kind, CHEAP, "r1")])
    c = audit(export, tmp_path, policy)["policy"]
    assert c.status == FAIL and "'coverage' is not allowed" in " ".join(c.problems) and "allowed_releases" in c.message


def test_a_query_above_max_query_epsilon_fails(tmp_path):
    policy = _policy(max_query_epsilon=0.1)
    assert epsilon_of([COSTLY], DELTA).epsilon > 0.1
    export, _ = _ledger(policy, [("threshold:coverage", THRESH, "r1"), ("coverage", COSTLY, "r1")])
    c = audit(export, tmp_path, policy)["policy"]
    assert c.status == FAIL and "max_query_epsilon" in c.message


def test_a_query_without_its_noisy_threshold_test_fails(tmp_path):
    policy = _policy(max_query_epsilon=0.1)
    export, _ = _ledger(policy, [("coverage", CHEAP, "r1")])
    c = audit(export, tmp_path, policy)["policy"]
    assert c.status == FAIL and "min_contributors" in c.message
    # one test per release: a second release on the same round needs its own
    export, _ = _ledger(policy, [("threshold:coverage", THRESH, "r1"), ("coverage", CHEAP, "r1"),
                                 ("coverage", CHEAP, "r1")])
    assert audit(export, tmp_path, policy)["policy"].status == FAIL


def test_a_query_with_too_few_contributors_fails(tmp_path):
    """An entry from before the noisy threshold recorded the exact count: 5 under a minimum of 20 fails."""
    policy = _policy(max_query_epsilon=0.1, min_contributors=20, min_contributors_noise=0.0)
    export, key = _ledger(policy, [("coverage", CHEAP, "r1")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export.entries[0].body.contributors = 5
    resign(export, key)
    c = audit(export, tmp_path, policy)["policy"]
    assert c.status == FAIL and "min_contributors 20" in c.message and "5 contributors" in c.message


def test_training_needs_one_threshold_test_per_plan(tmp_path):
    """A plan's rounds share the test made before its first release (even when that first round's release
    was cut short and round 2 is the plan's first entry); a plan with no test at all fails."""
    from privacy.events import SelfComposedEvent, dpsgd_event

    policy = _policy(max_query_epsilon=0.1)
    ev = dpsgd_event(0.2, 2.0, 3)
    key = Ed25519PrivateKey.generate()

    def ledger(with_test: bool):
        led = Ledger(sqlite3.connect(":memory:", isolation_level=None), key, "n")
        if with_test:
            led.append("threshold:train", THRESH, DELTA, policy.sha256(), round_id="f/1", request_hash="t")
        for r in (2, 3):
            led.append("train", ev, DELTA, policy.sha256(), round_id=f"f/{r}", request_hash=f"r{r}", payload=b"%d" % r,
                       plan=("train:f", SelfComposedEvent(ev, 3)))
        return led.export()

    assert audit(ledger(True), tmp_path, policy)["policy"].status in (PASS, WARN)
    c = audit(ledger(False), tmp_path, policy)["policy"]
    assert c.status == FAIL and "min_contributors" in c.message and "train" in c.message


def test_entries_under_an_earlier_policy_are_not_held_to_the_new_one(tmp_path):
    """Review 15: a community that stops allowing a kind (or lowers max_query_epsilon) by governance must not
    turn its honest earlier releases into FAILs; those entries are a WARN naming what was not checked, and a
    threshold test made under the old policy still counts for the release that follows under the new one."""
    old = _policy(max_query_epsilon=1.0)
    new = _policy(allowed_releases=("train",), max_query_epsilon=0.1)
    key = Ed25519PrivateKey.generate()
    led = Ledger(sqlite3.connect(":memory:", isolation_level=None), key, "n")
    led.append("threshold:coverage", THRESH, DELTA, old.sha256(), round_id="r1", request_hash="t1")
    led.append("coverage", COSTLY, DELTA, old.sha256(), round_id="r1", request_hash="q1", payload=b"1")
    led.append("threshold:train", THRESH, DELTA, old.sha256(), round_id="f/1", request_hash="t2")
    from privacy.events import SelfComposedEvent, dpsgd_event

    ev = dpsgd_event(0.2, 2.0, 3)
    led.append("train", ev, DELTA, new.sha256(), round_id="f/1", request_hash="r1", payload=b"t",
               plan=("train:f", SelfComposedEvent(ev, 1)))
    c = audit(led.export(), tmp_path, new)["policy"]
    assert c.status == WARN, (c.status, c.message, c.problems)
    assert "not checked" in " ".join(c.problems)
    # the same entries under the new policy's own hash: held to it, and they fail
    export, _ = _ledger(new, [("threshold:coverage", THRESH, "r1"), ("coverage", COSTLY, "r1")])
    assert audit(export, tmp_path, new)["policy"].status == FAIL


def test_a_real_nodes_honest_ledger_of_every_kind_passes(tmp_path):
    """Review 15: no false failure on what a node really writes: the noisy threshold tests, a coverage query
    and a key discovery at the per-query cap, a training plan's rounds, under a noisy min_contributors."""
    import json

    import numpy as np

    from node.consent import record_consent
    from node.node_dir import NodeDir
    from node.queries import answer_query
    from node.releases import open_gate
    from node.request_bounds import head_parameter_count
    from node.schema import Feedback
    from node.training import train_round
    from protos import query_pb2
    from tests.node.test_queries import rec

    policy = Policy(community="q", min_contributors=5, epsilon_cap=20.0, max_query_epsilon=0.5)
    assert policy.min_contributors_noise > 0
    nd = NodeDir.init(tmp_path / "node", "q", policy=policy)
    store = nd.open_store()
    try:
        with store.transaction():
            for i in range(40):
                vote = Feedback("pairwise", f"c{i}", {"a": 0, "b": 1, "outcome": "a", "strength": 1.0})
                store.add_record(rec(["a", "b"], [vote], key=f"k{i}"), None)
        record_consent(store, [f"c{i}" for i in range(40)], "CC-BY-4.0", "2020-01-01T00:00:00+00:00", "test")
        answer_query(nd, store, query_pb2.Query(name="coverage", params={"models": json.dumps(["a", "b"])},
                                                epsilon=0.5, round_id="r1"))
        answer_query(nd, store, query_pb2.Query(name="discover_keys", params={"key": json.dumps(["model"])},
                                                epsilon=0.5, round_id="r2"))
        feat, head = {"name": "hashed-ngram", "dim": 16}, {"type": "mlp", "in_dim": 16, "hidden": 4, "combine": "r_pr"}
        for r in (1, 2):
            cfg = {"federation_id": "f", "round": r, "rounds": 2, "local_steps": 2, "epsilon": 2.0, "sampling_rate": 0.2,
                   "featurizer": json.dumps(feat), "head": json.dumps(head)}
            train_round(nd, store, cfg, [np.zeros(head_parameter_count(head), dtype=np.float32)])
        export = open_gate(nd, store).ledger.export()
    finally:
        store.close()
    kinds = [e.body.release_kind for e in export.entries]
    assert sum(k.startswith("threshold:") for k in kinds) == 3 and kinds.count("train") == 2, kinds
    c = audit(export, tmp_path, policy, delta=policy.delta)["policy"]
    assert c.status in (PASS, WARN), (c.message, c.problems)
