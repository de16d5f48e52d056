"""Hostile values from a coordinator are refused by rule, naming the field, within a second and
before any calibration or ledger entry (review 13-14, finding 3)."""

import json
import math
import time

import numpy as np
import pytest

from node.planning import quote_request
from node.queries import answer_query
from node.releases import open_gate
from node.training import TrainingRefused, TrainRequest  # noqa: F401  (imported here so that the timings exclude imports)
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


# --- every hostile value of issue 15 item 5, through the node's own entry points (one table) -------------------

HASHED = {"name": "hashed-ngram", "dim": 16}
HEAD = {"type": "mlp", "in_dim": 16, "hidden": 4, "combine": "r_pr"}
N_PARAMS = 32 * 4 + 4 + 4 + 1


def _train_cfg(**over):
    cfg = {"federation_id": "f", "round": 1, "rounds": 1, "local_steps": 5, "epsilon": 1.0, "sampling_rate": 0.1,
           "featurizer": json.dumps(HASHED), "head": json.dumps(HEAD)}
    cfg.update(over)
    return cfg


def _vec(n=N_PARAMS, fill=0.0):
    return [np.full(n, fill, dtype=np.float32)]


def _query(name, epsilon=0.5, **params):
    deep = "[" * 50_000 + "]" * 50_000  # nesting past the JSON decoder's stack
    return query_pb2.Query(name=name, params={k: deep if v == "DEEP" else json.dumps(v) for k, v in params.items()},
                           epsilon=epsilon,
                           round_id="r").SerializeToString()


MODELS_2000 = [f"m{i}" for i in range(2000)]
HOSTILE = [  # (entry point, payload, field the refusal must name)
    ("query", _query("battle_counts", 1e-300, models=["a", "b"]), "epsilon"),
    ("query", _query("battle_counts", 1e-3, models=["a", "b"]), "min_query_epsilon"),
    ("query", _query("coverage", 1e-3, languages=["en"]), "min_query_epsilon"),
    ("query", _query("thumbs_rates", float("nan"), models=["a"]), "epsilon"),
    ("query", _query("rating_histogram", -1.0, dimensions=["x"]), "epsilon"),
    ("query", _query("implicit_feedback", float("inf")), "epsilon"),
    ("query", _query("discover_keys", 1e-300, key=["model"]), "epsilon"),
    ("query", _query("discover_keys", 1e-3, key=["model"]), "min_query_epsilon"),
    ("query", _query("battle_counts", 0.5, models=MODELS_2000), "max_models"),
    ("query", _query("thumbs_rates", 0.5, models=MODELS_2000), "max_models"),
    ("query", _query("battle_counts", 0.5, models=MODELS_2000[:99]), "max_release_cells"),
    ("query", b"\xff\xfe garbage \x00\x01", "query"),
    ("query", b"", "query"),
    ("query", "not bytes", "query"),
    ("train", (_train_cfg(local_steps=2e6), _vec()), "local_steps"),
    ("train", (_train_cfg(rounds=0), _vec()), "rounds"),
    ("train", (_train_cfg(rounds=10_000), _vec()), "rounds"),
    ("train", (_train_cfg(round=6), _vec()), "round"),
    ("train", (_train_cfg(epsilon="8"), _vec()), "epsilon"),
    ("train", (_train_cfg(epsilon=float("nan")), _vec()), "epsilon"),
    ("train", (_train_cfg(sampling_rate=0), _vec()), "sampling_rate"),
    ("train", (_train_cfg(sampling_rate=-0.5), _vec()), "sampling_rate"),
    ("train", (_train_cfg(max_pairs_per_contributor=0), _vec()), "max_pairs_per_contributor"),
    ("train", (_train_cfg(lr=float("inf")), _vec()), "lr"),
    ("train", (_train_cfg(featurizer=json.dumps({**HASHED, "dim": 10**9})), _vec()), "featurizer.dim"),
    ("train", (_train_cfg(featurizer="{not json"), _vec()), "featurizer"),
    ("train", (_train_cfg(featurizer=json.dumps({"name": "evil"})), _vec()), "featurizer.name"),
    ("train", (_train_cfg(head=json.dumps({**HEAD, "hidden": 10**8})), _vec()), "head.hidden"),
    ("train", (_train_cfg(head=json.dumps({**HEAD, "in_dim": 17})), _vec()), "head.in_dim"),
    ("train", (_train_cfg(), _vec(fill=float("nan"))), "arrays"),
    ("train", (_train_cfg(), _vec(fill=float("inf"))), "arrays"),
    ("train", (_train_cfg(), _vec(n=N_PARAMS + 1)), "arrays"),
    ("train", (_train_cfg(), []), "arrays"),
    # review 15: types a coordinator can send that once raised a traceback (or built something) before a refusal
    ("train", (_train_cfg(round=10**400), _vec()), "round"),
    ("train", (_train_cfg(rounds=True), _vec()), "rounds"),
    ("train", (_train_cfg(local_steps=5.0), _vec()), "local_steps"),
    ("train", (_train_cfg(max_grad_norm=10**400), _vec()), "max_grad_norm"),
    ("train", (_train_cfg(epsilon=-0.0), _vec()), "epsilon"),
    ("train", (_train_cfg(epsilon="NaN"), _vec()), "epsilon"),
    ("train", (_train_cfg(local_steps="\uff15"), _vec()), "local_steps"),
    ("train", (_train_cfg(federation_id="f\x00"), _vec()), "federation_id"),
    ("train", (_train_cfg(featurizer=json.dumps({**HASHED, "dim": 10**400})), _vec()), "featurizer.dim"),
    ("train", (_train_cfg(featurizer=json.dumps({**HASHED, "dim": float(HASHED["dim"])})), _vec()), "featurizer.dim"),
    ("train", (_train_cfg(featurizer=json.dumps({**HASHED, "name": ["hashed-ngram"]})), _vec()), "featurizer.name"),
    ("train", (_train_cfg(featurizer="[" * 50_000 + "]" * 50_000), _vec()), "featurizer"),
    ("train", (_train_cfg(featurizer="[" * 4_000 + "]" * 4_000), _vec()), "featurizer"),
    ("train", (_train_cfg(featurizer=json.dumps([HASHED])), _vec()), "featurizer"),
    ("train", (_train_cfg(head=json.dumps({**HEAD, "combine": ["r"]})), _vec()), "head.combine"),
    ("train", (_train_cfg(head=json.dumps({**HEAD, "in_dim": float(HEAD["in_dim"])})), _vec()), "head.in_dim"),
    ("train", (_train_cfg(head=json.dumps({**HEAD, "hidden": 10**400})), _vec()), "head.hidden"),
    ("plan", {"queries": [["coverage", 10**400]]}, "epsilon"),
    ("plan", {"train": {**TRAIN, "rounds": 10**400}}, "rounds"),
    ("query", _query("battle_counts", 0.5, models="DEEP"), "models"),
    ("query", _query("discover_keys", 0.5, key="DEEP"), "key"),
    ("plan", {"queries": [["coverage", 1e-300]]}, "epsilon"),
    ("plan", {"queries": [["coverage", "8"]]}, "epsilon"),
    ("plan", {"train": {**TRAIN, "local_steps": 2e6}}, "local_steps"),
]


@pytest.fixture(scope="module")
def hostile_node(tmp_path_factory):
    nd, store = _node(tmp_path_factory.mktemp("hostile"))
    yield nd, store
    store.close()


@pytest.mark.parametrize("entry, payload, field", HOSTILE, ids=[f"{e}-{f}-{i}" for i, (e, _, f) in enumerate(HOSTILE)])
def test_every_hostile_value_is_refused_by_rule_fast_and_free(hostile_node, entry, payload, field):
    """Refused (never a traceback), the field named, within a second, the ledger and the budget unchanged."""
    from node.queries import parse_query
    from node.training import train_round
    from privacy.release import PolicyViolation

    nd, store = hostile_node
    gate = open_gate(nd, store)
    before, spent = len(gate.ledger.events()), gate.spent_epsilon()
    t = time.monotonic()
    with pytest.raises((QueryError, PolicyViolation, TrainingRefused)) as e:
        if entry == "query":
            answer_query(nd, store, parse_query(payload))
        elif entry == "train":
            train_round(nd, store, *payload)
        else:
            quote_request(nd.policy(), gate.ledger.events(), json.dumps(payload))
    assert time.monotonic() - t < 1.0, f"{entry} {field}: refused after {time.monotonic() - t:.2f} s"
    assert field in str(e.value)
    gate = open_gate(nd, store)
    assert len(gate.ledger.events()) == before and gate.spent_epsilon() == spent


def test_a_deeply_nested_plan_is_refused_by_rule():
    with pytest.raises(QueryError, match="plan"):
        _timed(lambda: quote_request(Policy(community="x"), [], "[" * 50_000 + "]" * 50_000))


def test_a_node_holds_the_coordinator_to_its_plan(tmp_path):
    """Six rounds on a plan for one: the first is trained and charged, the next five are refused
    (naming the plan) with nothing spent; rounds=0 is refused before anything is spent."""
    from node.training import train_round

    nd, store = _node(tmp_path)
    try:
        with pytest.raises(TrainingRefused, match="rounds"):
            train_round(nd, store, _train_cfg(rounds=0), _vec())
        assert len(open_gate(nd, store).ledger.events()) == 0
        _, plan, rel = train_round(nd, store, _train_cfg(), _vec())
        assert plan.rounds == 1 and not rel.cached
        gate = open_gate(nd, store)
        n, spent = len(gate.ledger.events()), gate.spent_epsilon()
        for r in range(2, 7):
            with pytest.raises(TrainingRefused, match="round"):
                train_round(nd, store, _train_cfg(round=r, rounds=6), _vec())
        gate = open_gate(nd, store)
        assert len(gate.ledger.events()) == n and gate.spent_epsilon() == spent
    finally:
        store.close()


def test_a_query_over_its_caps_is_refused_before_the_store_is_read(tmp_path, monkeypatch):
    """Review 15: a query asking more than the per-query cap (or than the budget left) is refused before any
    record is read (no work, no time growing with the member count); an identical repeat still gets its
    cached answer."""
    from privacy.release import PolicyViolation

    nd, store = _node(tmp_path)
    try:
        ok = query_pb2.Query(name="battle_counts", params={"models": json.dumps(["a", "b"])}, epsilon=0.5, round_id="r")
        answer_query(nd, store, ok)
        cap = nd.policy().max_query_epsilon
        greedy = query_pb2.Query(name="battle_counts", params={"models": json.dumps(["a", "c"])}, epsilon=cap * 2,
                                 round_id="r")

        def no_reading(*a, **k):
            raise AssertionError("the store was read before the refusal")

        monkeypatch.setattr(store, "records", no_reading)
        import node.consent

        monkeypatch.setattr(node.consent, "eligible_contributors", no_reading)
        with pytest.raises(PolicyViolation, match="max_query_epsilon|epsilon_cap"):
            answer_query(nd, store, greedy)
        ans, _ = answer_query(nd, store, ok)  # the repeat: cached, no reading
        assert ans.cached
    finally:
        store.close()


def test_a_training_round_on_a_spent_budget_is_refused_before_the_store_is_read(tmp_path, monkeypatch):
    """Review 15: with the cap spent, a new federation's first round is refused (epsilon_cap) before any
    member's data is read or featurized."""
    import node.training as training
    from privacy.release import ReleaseGate

    nd, store = _node(tmp_path)
    try:
        monkeypatch.setattr(ReleaseGate, "remaining_epsilon", lambda self: 0.0)  # the cap is spent

        def no_reading(*a, **k):
            raise AssertionError("member data was read before the refusal")

        monkeypatch.setattr(training, "contributor_data", no_reading)
        with pytest.raises(TrainingRefused, match="epsilon_cap"):
            training.train_round(nd, store, _train_cfg(federation_id="late"), _vec())
    finally:
        store.close()
