"""Private key selection on the node (node/discovery.py): only public-safe labels, only past the DP
threshold, through the release gate and into the ledger like any release; the coordinator's
attempts to bend it are refused by rule."""

import json

import pytest

from node.consent import record_consent
from node.discovery import discovery_rows, key_rows
from node.node_dir import NodeDir
from node.queries import answer_query
from node.releases import open_gate
from node.schema import Feedback, Message, Record, Response
from privacy.events import DiscreteGaussianEvent, EpsilonDeltaEvent, SelfComposedEvent, event_from_proto
from privacy.policy import Policy
from privacy.release import PolicyViolation
from protos import query_pb2
from protos.wire import QueryError

SENTENCE = "my name is Ann Lee and I live at 4 Elm Street"


def records(n=600):
    out = []
    for c in range(n):
        who = f"p{c}"
        models = ["gpt-5", "claude-opus-4.5"] if c % 2 else ["gemini-3-pro", SENTENCE]
        if c == 0:
            models = ["gpt-5", "rare-private-finetune"]  # one person's model: never released
        out.append(Record(
            source="t", key=f"r{c}", prompt=[Message("user", f"question {c}")],
            responses=[Response("first answer", models[0]), Response("second answer", models[1])],
            feedback=[Feedback("pairwise", who, {"a": 0, "b": 1, "outcome": "a", "strength": 1.0}),
                      Feedback("rating", who, {"response": 0, "dimension": "helpfulness", "value": 4, "scale": [1, 5]})],
            owner=who, language="fr" if c % 3 else "en",
        ))
    return out


@pytest.fixture
def arena_node(tmp_path):
    nd = NodeDir.init(tmp_path / "node", "arena", policy=Policy(community="arena", min_contributors=10))
    with nd.open_store() as store:
        with store.transaction():
            for rec in records():
                store.add_record(rec, None)
        record_consent(store, None, "CC-BY-4.0", "2020-01-01T00:00:00+00:00", "test")
    return nd


def discover(types, epsilon=1.0, **params):
    return query_pb2.Query(name="discover_keys", params={"key": json.dumps(types), **params}, epsilon=epsilon)


def test_rows_keep_public_labels_only_and_bound_per_person():
    rows = key_rows(records(4), "model")
    assert ("p0", "rare-private-finetune") in rows and all(k != SENTENCE for _, k in rows)
    assert set(key_rows(records(4), "dimension")) == {(f"p{c}", "helpfulness") for c in range(4)}
    bounded = discovery_rows(records(50), ["model", "language"], 1)
    per_type = {}
    for who, key in bounded:
        t, _ = json.loads(key)
        per_type[(who, t)] = per_type.get((who, t), 0) + 1
    assert max(per_type.values()) == 1


def test_public_label_refuses_phone_id_and_email_shaped_keys_but_keeps_dated_model_names():
    from protos.wire import public_label

    for ok in ("gpt-5", "claude-opus-4.5", "gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022", "en", "helpfulness",
               "llama-3.1-405b-instruct", "gemini-1.5-pro-exp-0801"):
        assert public_label(ok), ok
    for bad in ("078-05-1120", "14155550123", "415-555-0199", "+4915112345678", "07700 900123", "1234567",
                "model-1234567", "eve@example.com", "john at example.com", "john.smith at mail.org", SENTENCE, ""):
        assert not public_label(bad), bad


def test_a_rating_without_a_dimension_gives_no_key_none():
    rec = records(1)[0]
    rec.feedback.append(Feedback("rating", "p0", {"response": 0, "value": 3, "scale": [1, 5]}))
    assert set(key_rows([rec], "dimension")) == {("p0", "helpfulness")}


def test_discovery_releases_through_gate_and_ledger(arena_node):
    with arena_node.open_store() as store:
        ans, values = answer_query(arena_node, store, discover(["model", "language", "dimension"]))
        got = {(c.key[0], c.key[1]) for c in ans.cells}
        # 300 people hold each common model, 200/400 each language, 600 the dimension: all pass the threshold (~63)
        assert got == {("model", "gpt-5"), ("model", "claude-opus-4.5"), ("model", "gemini-3-pro"),
                       ("language", "en"), ("language", "fr"), ("dimension", "helpfulness")}
        assert ans.mechanism == "gaussian_threshold" and ans.noise_scale > 5 and 0.99 < ans.epsilon <= 1.0
        assert len(values) == len(got) and not ans.cached
        entry = open_gate(arena_node, store).ledger.entries()[-1]
        assert entry.body.release_kind == "discover_keys" and entry.body.seq == ans.ledger_seq
        gauss, sel = event_from_proto(entry.body.event).events
        assert gauss == SelfComposedEvent(DiscreteGaussianEvent(ans.noise_scale, 1), 6)  # 2 keys x 3 types
        assert isinstance(sel, EpsilonDeltaEvent) and sel.epsilon == 0 and 0 < sel.delta <= 1e-8
        # the same query again: the cached answer, nothing new spent (ARCHITECTURE.md invariant 3)
        again, _ = answer_query(arena_node, store, discover(["model", "language", "dimension"]))
        assert again.cached and again.ledger_seq == ans.ledger_seq
        assert open_gate(arena_node, store).ledger.entries()[-1].body.seq == entry.body.seq


def test_hostile_discovery_requests_are_refused(arena_node):
    with arena_node.open_store() as store:
        def released():
            return [e for e in open_gate(arena_node, store).ledger.entries() if e.body.release_kind == "discover_keys"]
        with pytest.raises(QueryError, match="key"):
            answer_query(arena_node, store, discover(["chat_text"]))
        with pytest.raises(QueryError, match="max_partitions"):
            answer_query(arena_node, store, discover(["model"], max_partitions="100000"))
        q = discover(["model"])
        q.secagg = True
        with pytest.raises(QueryError, match="secure aggregation"):
            answer_query(arena_node, store, q)
        with pytest.raises(PolicyViolation, match="max_query_epsilon"):
            answer_query(arena_node, store, discover(["model"], epsilon=5.0))
        assert released() == []  # nothing released by any of them (the last may spend the noisy min_contributors test)


def test_policy_may_disallow_discovery(tmp_path):
    nd = NodeDir.init(tmp_path / "n", "closed", policy=Policy(
        community="closed", min_contributors=1, allowed_releases=("train", "battle_counts")))
    with nd.open_store() as store:
        with pytest.raises(PolicyViolation, match="allowed_releases"):
            answer_query(nd, store, discover(["model"]))
