"""Node-side aggregate queries: rows from every pairwise-convertible kind, contribution bounding,
unbiased answers whose reported noise scale matches their spread, consent, cache, budget cap."""

import json

import numpy as np
import pytest

from node import implicit
from node.consent import record_consent
from node.node_dir import NodeDir
from node.queries import (
    answer_query,
    battle_rows,
    coverage_rows,
    dp_answer,
    rating_bin,
    thumbs_rows,
)
from node.schema import Feedback, Message, Record, Response
from privacy.policy import Policy
from privacy.release import PolicyViolation
from protos import query_pb2


def rec(models, feedback, owner=None, prompt=None, key="k"):
    return Record("t", key, prompt or [Message("user", "hi")], [Response(f"r{i}", m) for i, m in enumerate(models)],
                  feedback, owner=owner, language="en")


def test_battles_from_every_pairwise_kind_in_canonical_orientation():
    r = rec(["zeta", "alpha", "mid"], [
        Feedback("pairwise", "p", {"a": 0, "b": 1, "outcome": "a", "strength": 1.0}),  # zeta beats alpha
        Feedback("ranking", "k", {"order": [2, 0]}),  # mid beats zeta
        Feedback("rating", "r", {"response": 0, "dimension": "x", "value": 5, "scale": (1, 5)}),
        Feedback("rating", "r", {"response": 1, "dimension": "x", "value": 5, "scale": (1, 5)}),  # tie
        Feedback("thumbs", "t", {"response": 1, "value": -1}),
        Feedback("thumbs", "t", {"response": 2, "value": -1}),  # both bad
        Feedback("label", "l", {"name": "ok", "value": True}),
    ])
    rows = sorted(battle_rows([r]))
    assert rows == sorted([("p", ("alpha", "zeta", "b")), ("k", ("mid", "zeta", "a")), ("r", ("alpha", "zeta", "tie")),
                           ("t", ("alpha", "mid", "both_bad"))])
    same = rec(["m", "m"], [Feedback("pairwise", "p", {"a": 0, "b": 1, "outcome": "a", "strength": 1.0})])
    assert battle_rows([same]) == []


def test_thumbs_coverage_and_rating_rows():
    r = rec(["m1", "m2"], [Feedback("thumbs", "t", {"response": 0, "value": 1})], owner="o")
    assert thumbs_rows([r]) == [("t", ("m1", "up"))]
    cov = coverage_rows([r])
    assert ("o", ("language", "en")) in cov and ("t", ("model", "m2")) in cov
    assert [rating_bin(v, 1, 5, 5) for v in (1, 2, 3, 4, 5)] == [0, 1, 2, 3, 4]


def test_implicit_heuristics():
    turns = [Message("user", "What is the capital of Australia, please?"), Message("assistant", "Kangaroos."),
             Message("user", "Which city is the capital of Australia please?"), Message("assistant", "Sydney."),
             Message("user", "No, that's wrong."), Message("assistant", "Canberra."),
             Message("user", "Thanks a lot!")]
    assert implicit.signals_in_turns(turns) == ["rephrase", "correction", "thanks"]
    assert implicit.signals(rec(["m"], [], owner=None, prompt=turns)) == []  # no member's chat


def test_dp_answer_bounds_contributions_is_unbiased_and_noise_scale_matches_spread():
    params = {"models": json.dumps(["a", "b"]), "max_partitions": "2", "max_rows_per_partition": "1"}
    # 200 people: each judges once "a" and once "tie"; one prolific person 500 times (bounded to 1 per cell)
    rows = [(f"u{i}", ("a", "b", "a")) for i in range(200)] + [(f"u{i}", ("a", "b", "tie")) for i in range(200)]
    rows += [("heavy", ("a", "b", "b"))] * 500
    exact = np.array([200, 1, 200, 0])  # after bounding: the heavy contributor counts once
    draws = np.array([dp_answer("battle_counts", rows, params, 1.0, 1e-6)["values"] for _ in range(400)])
    sigma = dp_answer("battle_counts", rows, params, 1.0, 1e-6)["noise_parameter"]
    assert 2 < sigma < 20
    se = sigma / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - exact) < 5.5 * se)  # unbiased (fails by chance ~4e-8 per cell)
    sd = draws.std(axis=0)
    # reported scale matches the spread (var slightly < sigma^2); the sample sd's relative sd is
    # 1/sqrt(800) = 0.035, so 0.2 is a 5.7-sd margin (~1e-8 per cell) that still catches a 25% error
    assert np.all(np.abs(sd / sigma - 1) < 0.2)


def _node(tmp_path, cap=8.0, n=30):
    nd = NodeDir.init(tmp_path / "node", "q", policy=Policy(community="q", min_contributors=5, epsilon_cap=cap,
                                                                      min_contributors_noise=0.0))
    store = nd.open_store()
    with store.transaction():
        for i in range(n):
            vote = Feedback("pairwise", f"c{i}", {"a": 0, "b": 1, "outcome": "a", "strength": 1.0})
            store.add_record(rec(["a", "b"], [vote], key=f"k{i}"), None)
        late = Feedback("pairwise", "late", {"a": 0, "b": 1, "outcome": "b", "strength": 1.0})
        store.add_record(rec(["a", "b"], [late], key="late"), None)
    record_consent(store, [f"c{i}" for i in range(n)], "CC-BY-4.0", "2020-01-01T00:00:00+00:00", "test")
    return nd, store


def test_answer_through_gate_consent_cache_and_budget_cap(tmp_path):
    nd, store = _node(tmp_path, cap=2.6)  # the privacy filter (issue 10) admits two epsilon-1 queries, not three
    try:
        q = query_pb2.Query(name="battle_counts", params={"models": json.dumps(["a", "b"])}, epsilon=1.0, round_id="r1")
        ans, values = answer_query(nd, store, q)
        assert not ans.cached and ans.ledger_seq == 0 and ans.noise_scale > 0 and 0 < ans.epsilon <= 1.0
        assert [tuple(c.key) for c in ans.cells] == [("a", "b", o) for o in ("a", "b", "tie", "both_bad")]
        assert abs(values[1]) < 6 * ans.noise_scale  # "late" has no consent: only noise in "b wins"
        again, v2 = answer_query(nd, store, query_pb2.Query(name="battle_counts", params=dict(q.params), epsilon=1.0,
                                                             round_id="r2"))
        assert again.cached and v2 == values and again.ledger_seq == ans.ledger_seq  # no new noise, no new budget
        q2 = query_pb2.Query(name="battle_counts", params={"models": json.dumps(["a", "b", "c"])}, epsilon=1.0)
        answer_query(nd, store, q2)
        with pytest.raises(PolicyViolation) as e:  # the cap (2.6) cannot take a third epsilon-1 query
            answer_query(nd, store, query_pb2.Query(name="coverage", params={"languages": '["en"]'}, epsilon=1.0))
        assert e.value.rule == "epsilon_cap"
        with pytest.raises(PolicyViolation) as e:  # above the per-query cap
            answer_query(nd, store, query_pb2.Query(name="battle_counts", params=dict(q.params), epsilon=5.0))
        assert e.value.rule in ("max_query_epsilon", "epsilon_cap")
    finally:
        store.close()


def test_topic_keywords_cover_exactly_the_public_topic_list():
    from node.queries import TOPICS
    from protos.wire import PUBLIC_TOPICS

    assert tuple(TOPICS) + ("other",) == PUBLIC_TOPICS
