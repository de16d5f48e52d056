from node.pairs import PairStats, eval_pairs, group_by_contributor, pairs_from_records
from node.schema import Feedback, Message, Record, Response


def rec(feedback, n=3, key="r1"):
    return Record("test", key, [Message("user", "Q?")], [Response(f"answer {i}") for i in range(n)], feedback)


def test_pairwise_outcomes_ties_both_bad():
    r = rec([
        Feedback("pairwise", "u1", {"a": 0, "b": 1, "outcome": "a", "strength": 0.5}),
        Feedback("pairwise", "u2", {"a": 0, "b": 1, "outcome": "b"}),
        Feedback("pairwise", "u3", {"a": 0, "b": 2, "outcome": "tie"}),
        Feedback("pairwise", "u4", {"a": 1, "b": 2, "outcome": "both_bad"}),
    ])
    st = PairStats()
    ps = pairs_from_records([r], stats=st)
    by = {p.contributor: p for p in ps}
    assert by["u1"].chosen == "answer 0" and by["u1"].rejected == "answer 1" and by["u1"].weight == 0.5
    assert by["u2"].chosen == "answer 1" and by["u2"].target == 1.0
    assert by["u3"].target == 0.5
    assert "u4" not in by and st.both_bad == 1 and st.ties == 1
    assert {p.contributor for p in eval_pairs([r])} == {"u1", "u2"}
    assert all(p.prompt == "user: Q?" for p in ps)


def test_ranking_ratings_thumbs():
    r = rec([
        Feedback("ranking", "u1", {"order": [2, 0, 1]}),
        Feedback("rating", "u2", {"response": 0, "dimension": "help", "value": 5, "scale": (1, 7)}),
        Feedback("rating", "u2", {"response": 1, "dimension": "help", "value": 2, "scale": (1, 7)}),
        Feedback("rating", "u2", {"response": 2, "dimension": "help", "value": 2, "scale": (1, 7)}),
        Feedback("rating", "u3", {"response": 2, "dimension": "help", "value": 7, "scale": (1, 7)}),
        Feedback("thumbs", "u4", {"response": 1, "value": 1}),
        Feedback("thumbs", "u4", {"response": 0, "value": -1}),
        Feedback("thumbs", "u5", {"response": 2, "value": -1}),
        Feedback("label", "u6", {"name": "toxic", "value": True}),
    ])
    st = PairStats()
    g = group_by_contributor(pairs_from_records([r], stats=st))
    assert [(p.chosen[-1], p.rejected[-1]) for p in g["u1"]] == [("2", "0"), ("2", "1"), ("0", "1")]
    assert sorted((p.chosen[-1], p.rejected[-1]) for p in g["u2"]) == [("0", "1"), ("0", "2")]
    assert st.rating_equal == 1
    assert "u3" not in g  # a single rating: never paired with another person's rating
    assert [(p.chosen[-1], p.rejected[-1]) for p in g["u4"]] == [("1", "0")]
    assert "u5" not in g and st.other == 1
    assert eval_pairs([r], kinds=("pairwise",)) == []


def test_identical_texts_dropped():
    r = Record("t", "k", [Message("user", "Q")], [Response("same"), Response("same")],
               [Feedback("pairwise", "u", {"a": 0, "b": 1, "outcome": "a"})])
    st = PairStats()
    assert pairs_from_records([r], stats=st) == [] and st.degenerate == 1
