"""A node's training plan: its own privacy parameters, one DP-SGD ledger event per round, shared defaults."""

import dataclasses

import pytest

from model.training_config import TRAINING
from node.training import TrainingRefused, TrainRequest, make_plan
from privacy.accounting import epsilon_of
from privacy.events import DpSgdParams, dpsgd_params
from privacy.policy import Policy


def test_plan_event_is_the_dpsgd_event_and_spends_at_most_the_request():
    policy = Policy(community="c")
    req = TrainRequest(federation_id="f", round=1, rounds=3, local_steps=50, epsilon=4.0)
    plan = make_plan(policy, req, spent_epsilon=0.0)
    assert plan.sampling_probability == min(TRAINING.sampling_rate, policy.max_sampling_rate)
    assert dpsgd_params(plan.event()) == DpSgdParams(plan.sampling_probability, pytest.approx(plan.noise_multiplier), 50,
                                                     TRAINING.max_grad_norm)
    assert epsilon_of([plan.event()] * 3, policy.delta).epsilon <= 4.0 * (1 + 1e-6)
    with pytest.raises(TrainingRefused, match="epsilon_cap"):
        make_plan(policy, req, spent_epsilon=policy.epsilon_cap)


def test_one_set_of_training_defaults():
    from coordinator.server_app import FederationConfig

    fed = FederationConfig(out="unused")
    req = TrainRequest(federation_id="f", round=1, rounds=TRAINING.rounds)
    for f in dataclasses.fields(TRAINING):
        for cfg in (fed, req):
            if hasattr(cfg, f.name):
                assert getattr(cfg, f.name) == getattr(TRAINING, f.name), (type(cfg).__name__, f.name)


def test_a_committed_plan_bounds_its_rounds():
    """A coordinator asking for rounds past the committed plan (6 rounds on a plan for 3) is refused,
    naming the rule: the plan's fixed-in-advance figure covers its own rounds only."""
    from node.training import check_round

    plan = make_plan(Policy(community="c"), TrainRequest(federation_id="f", round=1, rounds=3, local_steps=5, epsilon=2.0),
                     spent_epsilon=0.0)
    for r in (1, 2, 3):
        check_round(plan, r)
    for r in (0, 4, 6, -1, True, "2"):
        with pytest.raises(TrainingRefused, match="policy rule plan"):
            check_round(plan, r)
