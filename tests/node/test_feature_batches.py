"""The sealed per-batch cache of hashed features (node/store_cache.py FeatureBatches, issue 16): a plan's
later rounds, each a fresh ClientApp process on the Deployment Engine, read their features from the
store instead of featurizing again, with exactly the tensors a fresh featurization gives; changed data
is never served stale; withdrawal and deletion empty it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import torch

import node.training as training
from model.features import HashedNgramFeaturizer
from node.consent import record_consent
from node.dpsgd.data import stream_contributor_tensors
from node.schema import Feedback, Message, Record, Response
from node.service import members
from node.training import contributor_data, pair_subset_key


class CountingFeaturizer(HashedNgramFeaturizer):
    """The hashed featurizer, counting the texts it encodes."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.encoded = 0

    def encode(self, texts):
        self.encoded += len(texts)
        return super().encode(texts)


def record(key: str, owner: str) -> Record:
    fb = [Feedback("pairwise", owner, {"a": 0, "b": 1, "outcome": "a", "strength": 1.0})]
    return Record(source="test", key=key, prompt=[Message("user", f"how do I ask about {key}?")],
                  responses=[Response(f"a good answer on {key}", "m1"), Response(f"a bad one {key}", "m2")],
                  feedback=fb, owner=owner, language="en")


def fill(store, people: dict[str, int]) -> None:
    past = (datetime.now(timezone.utc) - timedelta(days=3)).isoformat()
    with store.transaction():
        for who, n in people.items():
            for i in range(n):
                store.add_record(record(f"{who}-{i}", who), None)
    record_consent(store, list(people), "CC-BY-4.0", past, "test")


def fresh_pass(store, policy, feats):
    """contributor_data as a new process runs it (no in-process tensors)."""
    training._DATA_CACHE.clear()
    return contributor_data(store, policy, feats, 3, "fed-1")


def same(a, b) -> bool:
    return (a.contributors == b.contributors and torch.equal(a.features, b.features)
            and all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("prompt", "chosen", "rejected", "target", "weight")))


def batch_rows(store) -> int:
    return store.conn.execute("SELECT COUNT(*) FROM feature_batches").fetchone()[0]


def test_a_later_round_reads_the_batches_and_gets_the_same_tensors(node_dir):
    with node_dir.open_store() as store:
        fill(store, {"ann": 6, "bob": 4, "cy": 5})
        policy = node_dir.policy()
        plain = stream_contributor_tensors(store.records(contributors={"ann", "bob", "cy"}), HashedNgramFeaturizer(dim=32),
                                           3, key=pair_subset_key(store, "fed-1"))
        feats = CountingFeaturizer(dim=32)
        first = fresh_pass(store, policy, feats)
        assert feats.encoded == 45 and batch_rows(store) == 1  # 15 records x 3 distinct texts, one batch
        again = fresh_pass(store, policy, feats)
        assert feats.encoded == 45  # nothing featurized the second time
        assert same(first, again) and same(first, plain)  # exactly the uncached tensors
        # the batch is sealed: its blob is not the float16 rows themselves
        blob = store.conn.execute("SELECT vecs FROM feature_batches").fetchone()[0]
        assert first.features.numpy().astype(np.float16).tobytes() not in bytes(blob)


def test_changed_data_is_featurized_again_and_the_old_batch_pruned(node_dir):
    with node_dir.open_store() as store:
        fill(store, {"ann": 6, "bob": 4})
        policy = node_dir.policy()
        feats = CountingFeaturizer(dim=32)
        fresh_pass(store, policy, feats)
        old = {k for (k,) in store.conn.execute("SELECT key FROM feature_batches")}
        fill(store, {"cy": 2})  # new records: another batch of texts
        feats.encoded = 0
        after = fresh_pass(store, policy, feats)
        assert feats.encoded == 36  # the batch changed: every text of it featurized again, none served stale
        plain = stream_contributor_tensors(store.records(contributors={"ann", "bob", "cy"}), HashedNgramFeaturizer(dim=32),
                                           3, key=pair_subset_key(store, "fed-1"))
        assert same(after, plain)
        keys = {k for (k,) in store.conn.execute("SELECT key FROM feature_batches")}
        assert len(keys) == 1 and not keys & old  # the batch no pass reads any more is gone


def test_a_pass_caches_at_most_max_rows(node_dir, monkeypatch):
    monkeypatch.setattr("node.store_cache.FeatureBatches.MAX_ROWS", 10)
    with node_dir.open_store() as store:
        fill(store, {"ann": 6})
        feats = CountingFeaturizer(dim=32)
        fresh_pass(store, node_dir.policy(), feats)
        assert batch_rows(store) == 0  # 18 rows > 10: computed, not stored
        fresh_pass(store, node_dir.policy(), feats)
        assert feats.encoded == 36


def test_withdrawal_and_deletion_empty_the_batches(node_dir):
    with node_dir.open_store() as store:
        fill(store, {"ann": 3, "bob": 3})
        fresh_pass(store, node_dir.policy(), CountingFeaturizer(dim=32))
        assert batch_rows(store) == 1
        store.forget("ann")
        assert batch_rows(store) == 0  # the batch held ann's texts' rows
        fresh_pass(store, node_dir.policy(), CountingFeaturizer(dim=32))
        assert batch_rows(store) == 1


def test_a_members_deletion_empties_the_batches(node_dir):
    member, _ = members.redeem(node_dir.path, members.create_invites(node_dir.path, 1)[0])
    cid = members.contribute(node_dir.path, member, {"messages": [
        {"role": "user", "content": "Is a haiku 17 syllables?"}, {"role": "assistant", "content": "Usually."}],
        "rating": 5, "licence": "CC-BY-4.0"})["id"]
    assert members.promote_due(node_dir.path, now=datetime.now(timezone.utc) + timedelta(days=30)) == 1
    with node_dir.open_store() as store:
        fill(store, {"ann": 3})
        fresh_pass(store, node_dir.policy(), CountingFeaturizer(dim=32))
        assert batch_rows(store) == 1
    members.delete_contribution(node_dir.path, member, cid)
    with node_dir.open_store() as store:
        assert batch_rows(store) == 0


def test_a_pass_keeps_only_its_own_batches(node_dir):
    """A coordinator cycling featurizer configs (salts) cannot grow the table: each pass prunes the rest."""
    with node_dir.open_store() as store:
        fill(store, {"ann": 3, "bob": 3})
        for salt in ("a", "b", "c", "d"):
            fresh_pass(store, node_dir.policy(), CountingFeaturizer(dim=32, salt=salt))
            assert batch_rows(store) == 1
        names = [n for (n,) in store.conn.execute("SELECT featurizer FROM feature_batches")]
        assert names[0].startswith("hashed-ngram@") and "|v1|unicode-" in names[0]  # code and Unicode versions


def test_a_withdrawal_during_a_pass_stops_its_writes(node_dir):
    """Review finding: a pass that read ann's texts before her withdrawal must not store them after it."""
    from model.features import BatchCachedEncoder, cache_name
    from node.store_cache import forget_batches

    with node_dir.open_store() as store:
        fill(store, {"ann": 3, "bob": 3})
        feats = HashedNgramFeaturizer(dim=32)
        batches = store.feature_batches(cache_name(feats))  # the pass begins
        texts = [t for r in store.records() for t in [r.prompt[0].text, *[x.text for x in r.responses]]]
        with node_dir.open_store() as other, other.transaction():  # ann withdraws from another process
            forget_batches(other.conn)
        BatchCachedEncoder(feats, batches).encode(texts)
        assert batch_rows(store) == 0 and not batches.writable


def test_an_unreadable_or_busy_cache_is_a_miss_not_a_failed_round(node_dir, monkeypatch):
    with node_dir.open_store() as store:
        fill(store, {"ann": 3})
        first = fresh_pass(store, node_dir.policy(), CountingFeaturizer(dim=32))
        for damaged in ("zeroblob(64)", "zeroblob(4)"):  # altered; truncated below a nonce
            store.conn.execute(f"UPDATE feature_batches SET vecs = {damaged}")
            feats = CountingFeaturizer(dim=32)
            assert same(fresh_pass(store, node_dir.policy(), feats), first) and feats.encoded == 9

        from node.store_db import StoreBusy

        def busy(*a, **k):
            raise StoreBusy("the node store is busy")
        store.conn.execute("DELETE FROM feature_batches")
        monkeypatch.setattr(type(store), "transaction", busy)
        assert same(fresh_pass(store, node_dir.policy(), CountingFeaturizer(dim=32)), first)
        assert batch_rows(store) == 0


def test_a_withdrawal_during_a_pass_stops_the_per_text_cache_too(node_dir):
    """The MiniLM path's per-text cache (EmbeddingCache) had the same race: vectors of texts read before a
    withdrawal were stored after it and never pruned."""
    from node.store_cache import forget_batches

    with node_dir.open_store() as store:
        cache = store.embedding_cache("minilm-test")  # the pass begins
        with node_dir.open_store() as other, other.transaction():
            forget_batches(other.conn)  # a withdrawal or deletion in another process
        cache.put_many({cache.key("ann's text"): np.ones(4, dtype=np.float32)})
        assert store.conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 0
        fresh = store.embedding_cache("minilm-test")  # the next pass caches again
        fresh.put_many({fresh.key("bob's text"): np.ones(4, dtype=np.float32)})
        assert store.conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 1
