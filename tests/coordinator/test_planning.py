"""Budget planning (coordinator/planning.py): defaults leave room for the queries; what cannot be
spent is not asked, with the policy rule that says why; the plan's JSON round-trips."""

from coordinator.planning import MIN_TRAIN_EPSILON, format_plan, node_plan, node_plan_from_dict
from protos.wire import RELEASE_KINDS, Key


def budget(remaining=8.0, cap=8.0, max_query=1.0, allowed=RELEASE_KINDS, threshold=0.0):
    return {Key.EPSILON_CAP: cap, Key.DELTA: 1e-6, Key.SPENT_EPSILON: cap - remaining, Key.REMAINING_EPSILON: remaining,
            Key.MAX_QUERY_EPSILON: max_query, Key.ALLOWED_RELEASES: list(allowed), Key.THRESHOLD_EPSILON: threshold}


def plan(b, queries=("battle_counts",), rounds=3, epsilon=8.0, share=0.5, query_epsilon=1.0):
    return node_plan(b, "ab" * 32, "forum", rounds=rounds, epsilon=epsilon, train_share=share, queries=list(queries),
                     query_epsilon=query_epsilon)


def test_defaults_leave_room_for_the_default_queries():
    p = plan(budget(threshold=0.69))
    train, battle = p.item("train"), p.item("battle_counts")
    assert train.ask and battle.ask
    assert abs(train.cost - 4.0) < 1e-9  # half of what remains, its threshold test included
    assert battle.cost == 1.0 + 0.69 and abs(p.planned - (4.0 + 1.69)) < 1e-9
    assert abs(p.remaining_after - (8.0 - 5.69)) < 1e-9
    # a second run on what is left still plans training and the query, never past the cap
    again = plan(budget(remaining=p.remaining_after, threshold=0.69))
    assert again.asks("battle_counts") and again.planned <= p.remaining_after + 1e-9


def test_queries_are_reserved_first_and_training_takes_what_they_leave():
    p = plan(budget(remaining=3.0), queries=("battle_counts", "coverage"), share=1.0)
    assert p.asks("battle_counts") and p.asks("coverage")
    assert abs(p.item("train").epsilon - 1.0) < 1e-9 and p.remaining_after < 1e-9


def test_what_cannot_be_spent_is_not_asked_and_says_which_rule():
    p = plan(budget(remaining=0.0), queries=("battle_counts",))
    assert not p.asks("train") and not p.asks("battle_counts") and p.planned == 0
    assert "epsilon_cap" in p.item("battle_counts").why and "epsilon_cap" in p.item("train").why
    p = plan(budget(max_query=0.5), queries=("battle_counts",))
    assert not p.asks("battle_counts") and "max_query_epsilon" in p.item("battle_counts").why
    p = plan(budget(allowed=("battle_counts",)), queries=("battle_counts", "coverage"))
    assert not p.asks("train") and "allowed_releases" in p.item("train").why
    assert p.asks("battle_counts") and "allowed_releases" in p.item("coverage").why
    # too little left to train usefully: not asked
    p = plan(budget(remaining=1.0 + MIN_TRAIN_EPSILON / 2), queries=("battle_counts",))
    assert p.asks("battle_counts") and not p.asks("train")
    # no rounds: no training item at all
    assert plan(budget(), rounds=0).item("train") is None


def test_epsilon_caps_training_and_the_plan_round_trips():
    p = plan(budget(), epsilon=1.5, queries=("battle_counts", "coverage"))
    assert p.item("train").epsilon == 1.5
    assert node_plan_from_dict(p.to_dict()) == p
    lines = format_plan([p])
    assert lines[0].startswith("forum (abababababab): cap 8") and any("coverage" in x and "ask" in x for x in lines)
    assert "remaining at least" in lines[-1]
