"""Hostile values from a coordinator are refused by rule, naming the field, within a second and
before any calibration or ledger entry (review 13-14, finding 3)."""

import json
import math
import time

import pytest

from node.planning import quote_request
from node.queries import answer_query
from node.releases import open_gate
from node.training import TrainRequest  # noqa: F401  (imported here so that the timings below exclude imports)
from privacy.accounting import AccountingError
from privacy.accounting.calibration import discrete_gaussian_sigma_for
from privacy.policy import Policy, PolicyError
from protos import query_pb2
from protos.wire import QueryError
from tests.node.test_queries import _node

TRAIN = {"federation_id": "f", "round": 1, "rounds": 1, "local_steps": 5}
HOSTILE_EPSILONS = [1e-300, 1e-6, float("nan"), -1.0, float("inf")]


def _timed(fn):
    t = time.monotonic()
    try:
        fn()
    finally:
        assert time.monotonic() - t < 1.0


@pytest.mark.parametrize("plan, field", [
    *[({"queries": [["battle_counts", e]]}, "epsilon") for e in HOSTILE_EPSILONS],
    ({"queries": [["battle_counts", "8"]]}, "epsilon"),
    ({"queries": [["discover_keys", 1e-6]]}, "epsilon"),
    ({"train": {**TRAIN, "rounds": 10_000}}, "rounds"),
    ({"train": {**TRAIN, "local_steps": 2e6}}, "local_steps"),
    ({"train": {**TRAIN, "sampling_rate": 0}}, "sampling_rate"),
    ({"train": {**TRAIN, "rounds": "8"}}, "rounds"),
    ([1], "must be a JSON object"), ("x", "must be a JSON object"), (None, "must be a JSON object"),
])
def test_quote_request_refuses_hostile_values_by_rule(plan, field):
    policy = Policy(community="x")
    text = json.dumps(plan)  # json.dumps writes NaN / Infinity, which json.loads reads back
    with pytest.raises(QueryError, match=field):
        _timed(lambda: quote_request(policy, [], text))


@pytest.mark.parametrize("name, params", [
    ("battle_counts", {"models": json.dumps(["a", "b"])}),
    ("discover_keys", {"key": json.dumps(["model"])}),
])
def test_answer_query_refuses_hostile_epsilon_without_a_ledger_entry(tmp_path, name, params):
    nd, store = _node(tmp_path)
    try:
        before = len(open_gate(nd, store).ledger.events())
        for eps in HOSTILE_EPSILONS:
            q = query_pb2.Query(name=name, params=params, epsilon=eps, round_id="r")
            with pytest.raises(QueryError, match="epsilon"):
                _timed(lambda q=q: answer_query(nd, store, q))
        assert len(open_gate(nd, store).ledger.events()) == before
    finally:
        store.close()


def test_the_epsilon_floor_is_policy_and_old_policies_load_with_their_hash(tmp_path):
    from privacy.policy import load_policy

    p = tmp_path / "policy.toml"
    default = Policy(community="x")
    default.save(p)
    assert "min_query_epsilon" not in p.read_text()  # a policy from before the field: same text, same hash
    assert load_policy(p).min_query_epsilon == 0.01 and load_policy(p).sha256() == default.sha256()
    Policy(community="x", min_query_epsilon=0.5).save(p)
    assert "min_query_epsilon = 0.5" in p.read_text() and load_policy(p).min_query_epsilon == 0.5
    with pytest.raises(PolicyError, match="min_query_epsilon"):
        Policy(community="x", min_query_epsilon=float("nan"))
    with pytest.raises(QueryError, match="min_query_epsilon"):
        quote_request(load_policy(p), [], json.dumps({"queries": [["coverage", 0.2]]}))


def test_calibration_refuses_noise_above_the_ceiling():
    t = time.monotonic()
    with pytest.raises(AccountingError, match="1e-06"):
        discrete_gaussian_sigma_for(1e-6, 1e-6)
    assert time.monotonic() - t < 1.0 and math.isfinite(discrete_gaussian_sigma_for(0.01, 1e-6))
