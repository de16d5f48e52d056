"""The contributor tensor layout: pairs capped per contributor, texts shared, sets pooled."""

import torch

from model.features import HashedNgramFeaturizer
from node.dpsgd import ContributorTensors, build_contributor_tensors
from node.pairs import Pair
from tests.node.dpsgd.synthetic import random_data


def test_cap_and_build_from_pairs():
    pairs = [Pair(f"u{i % 3}", "p", f"good {i}", f"bad {i}") for i in range(20)]
    data = build_contributor_tensors(pairs, HashedNgramFeaturizer(dim=32), max_pairs_per_contributor=4, seed=0)
    assert data.n_contributors == 3 and data.max_pairs == 4 and data.n_pairs == 12
    assert data.dropped_pairs == 8
    assert data.contributors == ["u0", "u1", "u2"]
    pooled = ContributorTensors.concat([data, random_data(2, 2, dim=32)])
    assert pooled.n_contributors == 5 and pooled.max_pairs == 4 and pooled.n_pairs == 16
    x = pooled.inputs(torch.tensor([0, 4]), "r_pr")
    assert x.shape == (2, 8, 64)


def test_streaming_build_is_the_list_build_in_bounded_memory():
    """`stream_contributor_tensors` (records read once, compact arrays) gives the list path's tensors:
    same people in the same order, the same kept pairs (each person's own keyed subset), the same features;
    P shrinks to the most pairs anyone keeps (padding has zero weight), a large table is kept in float16."""

    from node.dpsgd.data import stream_contributor_tensors
    from node.pairs import pairs_from_records
    from node.schema import Feedback, Message, Record, Response

    def rec(i):
        fbs = [Feedback("pairwise", f"u{(i + j) % 7}", {"a": 0, "b": 1, "outcome": "ab"[j % 2], "strength": 1.0})
               for j in range(1 + i % 3)]
        return Record("t", f"k{i}", [Message("user", f"prompt {i % 5}")], [Response(f"good {i}", "m1"),
                                                                            Response(f"bad {i % 4}", "m2")], fbs)

    records = [rec(i) for i in range(40)]
    feats, key = HashedNgramFeaturizer(dim=32), b"k" * 32
    old = build_contributor_tensors(pairs_from_records(records), feats, 4, key=key)
    old.features = old.features.half().float()  # the streamed table holds float16-precision values at any size
    new = stream_contributor_tensors(iter(records), feats, 4, key=key, encode_batch=7)
    assert new.contributors == old.contributors and new.dropped_pairs == old.dropped_pairs
    assert new.n_pairs == old.n_pairs and new.max_pairs <= old.max_pairs
    for i in range(old.n_contributors):
        def kept(d, i=i):
            m = d.weight[i] > 0
            return sorted(zip(d.features[d.prompt[i][m]].tolist(), d.features[d.chosen[i][m]].tolist(),
                              d.features[d.rejected[i][m]].tolist(), d.target[i][m].tolist()))
        assert kept(new) == kept(old)
    one = stream_contributor_tensors(iter(records[:1]), feats, 4)
    assert one.max_pairs == 1 and one.features.dtype == torch.float32
    import node.dpsgd.data as data_mod

    small, data_mod.COMPACT_TABLE_BYTES = data_mod.COMPACT_TABLE_BYTES, 0
    try:
        half = stream_contributor_tensors(iter(records), feats, 4, key=key)
    finally:
        data_mod.COMPACT_TABLE_BYTES = small
    assert half.features.dtype == torch.float16
    idx = torch.arange(half.n_contributors)
    x, y = half.inputs(idx, "r_pr"), new.inputs(idx, "r_pr")
    assert x.dtype == torch.float32 and torch.equal(x, y)  # review 15: compact storage changes no value


def test_one_persons_data_never_changes_the_precision_of_anothers_features():
    """Review 15: the switch to a float16 table depends on the table's size, i.e. on everyone's data. A
    person whose texts push the table past COMPACT_TABLE_BYTES must not change any other person's
    features (their clipped gradient must be a function of their own data alone)."""
    import node.dpsgd.data as data_mod
    from node.dpsgd.data import stream_contributor_tensors
    from node.schema import Feedback, Message, Record, Response

    def rec(i, who):
        fb = [Feedback("pairwise", who, {"a": 0, "b": 1, "outcome": "a", "strength": 1.0})]
        return Record("t", f"k{i}", [Message("user", f"prompt {i} of {who}")],
                      [Response(f"good answer {i}", "m1"), Response(f"bad answer {i}", "m2")], fb)

    others = [rec(i, f"u{i % 5}") for i in range(30)]
    newcomer = [rec(100 + i, "newcomer") for i in range(30)]
    feats = HashedNgramFeaturizer(dim=64)
    small, data_mod.COMPACT_TABLE_BYTES = data_mod.COMPACT_TABLE_BYTES, 90 * 64 * 4  # between the two tables' sizes
    try:
        without = stream_contributor_tensors(iter(others), feats, 8)
        with_ = stream_contributor_tensors(iter(others + newcomer), feats, 8)
    finally:
        data_mod.COMPACT_TABLE_BYTES = small
    assert without.features.dtype == torch.float32 and with_.features.dtype == torch.float16  # the switch flipped
    assert with_.contributors[:without.n_contributors] == without.contributors
    for i in range(without.n_contributors):  # each person's real pairs (padding width P may differ: zero weight)
        def kept(d, i=i):
            m = d.weight[i] > 0
            return [d.features[d.prompt[i][m]].float(), d.features[d.chosen[i][m]].float(),
                    d.features[d.rejected[i][m]].float(), d.target[i][m]]
        assert all(torch.equal(a, b) for a, b in zip(kept(with_), kept(without)))
