"""The node's quote for a plan (node/planning.py): fitted under its own privacy filter, training
within its share; the real training plan for the fitted epsilon costs at most what was quoted."""

from node.planning import quote
from node.training import TrainRequest, make_plan
from privacy.accounting import adaptive_epsilon
from privacy.events import DiscreteGaussianEvent
from privacy.policy import Policy


def test_quote_fits_training_beside_the_queries_under_the_filter():
    policy = Policy(community="x")
    req = TrainRequest(federation_id="f", round=1, rounds=1, local_steps=5)
    q = quote(policy, [], req, [("battle_counts", 1.0), ("coverage", 1.0)], 0.5)
    assert q["queries"] == ["battle_counts", "coverage"] and q["train_epsilon"] > 1.0
    after = dict(q["after"])
    assert after["train"] <= 4.0 + 1e-9 and after["coverage"] <= policy.epsilon_cap
    # the node's own training plan for the fitted epsilon costs at most what was quoted
    thr = [DiscreteGaussianEvent(policy.min_contributors_noise, 1)]
    plan = make_plan(policy, TrainRequest(**{**req.__dict__, "epsilon": q["train_epsilon"]}),
                     adaptive_epsilon(thr, policy.delta).epsilon, thr)
    assert adaptive_epsilon([*thr, plan.plan_event()], policy.delta).epsilon <= after["train"] + 1e-6


def test_an_almost_spent_budget_quotes_no_training_and_drops_what_cannot_fit():
    policy = Policy(community="x", epsilon_cap=2.0)
    history = [DiscreteGaussianEvent(1.5, 1)]  # most of a cap of 2 already spent
    req = TrainRequest(federation_id="f", round=1, rounds=1, local_steps=5)
    q = quote(policy, history, req, [("battle_counts", 1.0), ("coverage", 1.0)], 0.5)
    assert q["train_epsilon"] == 0.0 and q["queries"] == [] and q["spent"] > 1.0


def test_a_hostile_proposal_is_refused_by_rule_before_any_work():
    import json

    import pytest

    from node.planning import quote_request
    from protos.wire import QueryError

    policy = Policy(community="x")
    train = {"federation_id": "f", "round": 1, "rounds": 1, "local_steps": 5}
    for bad in ("not json", json.dumps({"queries": [["drop_tables", 1.0]]}),
                json.dumps({"queries": [["battle_counts", -1.0]]}), json.dumps({"queries": [["coverage", 1.0]] * 65}),
                json.dumps({"train": {**train, "rounds": -3}}), json.dumps({"train": {**train, "sampling_rate": 5}}),
                json.dumps({"train": None, "queries": [], "train_share": 7})):
        with pytest.raises(QueryError, match="budget request: field 'plan"):
            quote_request(policy, [], bad)
    ok = json.loads(quote_request(policy, [], json.dumps({"train": train, "queries": [["battle_counts", 1.0]]})))
    assert ok["queries"] == ["battle_counts"] and ok["train_epsilon"] > 0
