"""One person never changes which data of another person is used (issue 10, findings 1 and 7).

Neighbouring datasets differ by one person with all their data (ARCHITECTURE.md invariant 4): adding
or removing contributor A must leave every other contributor's selected pairs (DP-SGD), bounded rows
(aggregate queries) and stored rows untouched.
"""

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from model.features import HashedNgramFeaturizer
from node.consent import record_consent
from node.dpsgd.data import build_contributor_tensors, select_pairs
from node.ownership import OwnershipError
from node.pairs import Pair
from node.schema import Feedback, Message, Record, Response
from node.training import contributor_data, pair_subset_key
from privacy.mechanisms import bound_contributions


def pairs_of(who: str, n: int) -> list[Pair]:
    return [Pair(who, f"prompt {who} {i}", f"good {who} {i}", f"bad {who} {i}") for i in range(n)]


def kept_texts(pairs, key, cap=4):
    """Per contributor, the chosen texts of the pairs kept (matched back through their feature vectors)."""
    feats = HashedNgramFeaturizer(dim=64)
    data = build_contributor_tensors(pairs, feats, cap, key=key)
    chosen = sorted({p.chosen for p in pairs})
    by_vec = {tuple(v): t for t, v in zip(chosen, feats.encode(chosen).tolist())}
    assert len(by_vec) == len(chosen)
    return {who: {by_vec[tuple(v)] for v in data.features[data.chosen[i][data.weight[i] > 0]].tolist()}
            for i, who in enumerate(data.contributors)}


@pytest.mark.parametrize("key", [b"node-secret-key-0123456789abcdef", None])
def test_adding_one_contributor_changes_no_other_contributors_pairs(key):
    others = pairs_of("bob", 10) + pairs_of("carol", 12) + pairs_of("dave", 3)
    before = kept_texts(others, key)
    # A, prolific, imported first and interleaved with the others: the old shared generator shifted
    for where in (0, 5, len(others)):
        after = kept_texts(others[:where] + pairs_of("alice", 30) + others[where:], key)
        assert {k: v for k, v in after.items() if k != "alice"} == before
        assert len(after["alice"]) == 4
    assert len(before["bob"]) == 4 and len(before["carol"]) == 4 and len(before["dave"]) == 3


def test_each_persons_subset_is_uniform_and_keyed():
    """Statistical check: over many keys each of 10 pairs is kept with probability 4/10 (binomial
    bounds at ~5 sd), and a different key gives a different subset."""
    rows = list(range(10))
    n = 4000
    counts = Counter(j for k in range(n) for j in select_pairs(rows, 4, "bob", key=b"k%d" % k))
    sd = (n * 0.4 * 0.6) ** 0.5
    assert all(abs(counts[j] - 0.4 * n) < 5 * sd for j in rows), counts
    subsets = {tuple(select_pairs(rows, 4, "bob", key=b"k%d" % k)) for k in range(50)}
    assert len(subsets) > 30


def test_query_bounding_is_per_person():
    key = b"query-key"
    others = [("bob", ("p", str(i))) for i in range(12)] + [("carol", ("p", str(i % 3))) for i in range(9)]
    alice = [("alice", ("p", str(i))) for i in range(20)]

    def kept(rows):
        out = bound_contributions(rows, max_partitions=3, max_rows_per_partition=2, key=key)
        return sorted(r for r in out if r[0] != "alice")

    base = kept(others)
    assert kept(alice + others) == base
    assert kept(others[:5] + alice + others[5:]) == base
    assert len([r for r in base if r[0] == "bob"]) == 3


def test_query_bounding_choice_is_uniform():
    rows = [("bob", ("p", str(i))) for i in range(6)]
    n = 3000
    counts = Counter(r[1] for k in range(n) for r in bound_contributions(rows, 2, 1, key=b"%d" % k))
    sd = (n * (1 / 3) * (2 / 3)) ** 0.5
    assert all(abs(counts[("p", str(i))] - n / 3) < 5 * sd for i in range(6)), counts


def record(key, owner, judges, n=1):
    fb = [Feedback("pairwise", j, {"a": 0, "b": 1, "outcome": "a", "strength": 1.0}) for j in judges]
    return Record(source="test", key=key, prompt=[Message("user", f"question {key}")],
                  responses=[Response(f"good {key}", "m1"), Response(f"bad {key}", "m2")], feedback=fb, owner=owner,
                  language="en")


def test_a_members_conversation_carries_only_the_owners_feedback(node_dir):
    with node_dir.open_store() as store:
        with store.transaction():
            store.add_record(record("k0", "alice", ["alice"]), None)
        with pytest.raises(OwnershipError, match=r"feedback\[1\] is by contributor 'bob'.*owned by 'alice'"):
            with store.transaction():
                store.add_record(record("k1", "alice", ["alice", "bob"]), None)
        # refused as a whole, nothing half-written; the earlier record is intact
        assert store.conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] == 1
        assert store.conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 1
        # feedback by several people on a conversation nobody owns is fine, each gated by its own person
        with store.transaction():
            assert store.add_record(record("k2", None, ["alice", "bob"]), None)
        now = datetime.now(timezone.utc)
        record_consent(store, ["bob"], "CC-BY-4.0", (now - timedelta(days=2)).isoformat(), "test")
        bobs = [f for r in store.records(contributors={"bob"}) for f in r.feedback]
        assert [f.contributor for f in bobs] == ["bob"]  # alice (not eligible) does not take bob's rows away
        store.forget("alice")
        assert [f.contributor for r in store.records() for f in r.feedback] == ["bob"]


def test_training_data_of_others_unchanged_when_one_person_joins(node_dir):
    """Through the node's own path (store, consent gate, keyed subset): bob's pairs stay the same."""
    feats = HashedNgramFeaturizer(dim=16)
    past = (datetime.now(timezone.utc) - timedelta(days=3)).isoformat()
    with node_dir.open_store() as store:
        with store.transaction():
            for i in range(9):
                store.add_record(record(f"b{i}", "bob", ["bob"]), None)
        record_consent(store, ["bob"], "CC-BY-4.0", past, "test")
        policy = node_dir.policy()
        before = bobs_pairs(contributor_data(store, policy, feats, 3, "fed-1"))
        with store.transaction():
            for i in range(7):
                store.add_record(record(f"a{i}", "alice", ["alice"]), None)
        record_consent(store, ["alice"], "CC-BY-4.0", past, "test")
        after = contributor_data(store, policy, feats, 3, "fed-1")
        assert sorted(after.contributors) == ["alice", "bob"]
        assert bobs_pairs(after) == before and len(before) == 3
        assert pair_subset_key(store, "fed-1") != pair_subset_key(store, "fed-2")


def bobs_pairs(data) -> list[tuple]:
    """bob's kept pairs as feature vectors (row indices differ between datasets, features do not)."""
    i = data.contributors.index("bob")
    mask = data.weight[i] > 0
    rows = zip(data.features[data.prompt[i][mask]].tolist(), data.features[data.chosen[i][mask]].tolist())
    return sorted(tuple(p + c) for p, c in rows)


def test_a_round_with_nobody_eligible_releases_noise_not_an_error():
    """The noisy min_contributors test can pass at N = 0: the round then releases DP-SGD's noise alone
    (one all-padding contributor, clipped gradient 0), never an error that would tell N = 0 apart."""
    import numpy as np

    from model.reward_model import RewardHead, state_to_vector
    from node.dpsgd import ContributorTensors
    from node.training import TrainPlan, local_update

    head = RewardHead(16, hidden=8)
    vec = state_to_vector(head)
    empty = build_contributor_tensors([], HashedNgramFeaturizer(dim=16), 4)
    assert empty.n_contributors == 0
    plan = TrainPlan(federation_id="f", rounds=1, local_steps=5, sampling_probability=0.2, noise_multiplier=1.0,
                     max_grad_norm=0.1, epsilon=1.0, delta=1e-6, lr=1e-2, max_pairs_per_contributor=4)
    update, _ = local_update(head.arch(), vec, empty, plan)
    assert np.all(np.isfinite(update)) and np.abs(update).sum() > 0  # noise moved the model
    nobody = ContributorTensors.nobody(16)
    assert nobody.n_contributors == 1 and nobody.n_pairs == 0
