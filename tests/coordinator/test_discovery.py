"""The coordinator's side of private key selection (coordinator/discovery.py): what it asks, how it
unions the nodes' released keys, and how it refuses a hostile node's answer; no built-in fallback."""

import json
from types import SimpleNamespace

import click
import pytest

from cairn.coordinator_cli import _print_board
from coordinator.discovery import (
    MAX_KEYS,
    build_discovery,
    check_answer,
    discovery_needed,
    planned_releases,
    run_discovery,
    union_keys,
)
from coordinator.queries import build_query
from protos import query_pb2
from protos.wire import Key, Record


def cfg(queries, **lists):
    base = {"query_models": None, "query_languages": None, "query_dimensions": None}
    return SimpleNamespace(queries=queries, **{**base, **lists})


def test_discovery_only_for_key_types_needed_and_not_given():
    assert discovery_needed(cfg(["battle_counts"])) == ["model"]
    assert discovery_needed(cfg(["battle_counts"], query_models=["gpt-5", "grok-4"])) == []
    assert discovery_needed(cfg(["coverage", "rating_histogram"])) == ["model", "language", "dimension"]
    assert discovery_needed(cfg(["implicit_feedback"])) == []
    assert planned_releases(cfg(["battle_counts"])) == ["discover_keys", "battle_counts"]
    assert planned_releases(cfg(["implicit_feedback"])) == ["implicit_feedback"]
    q = build_discovery(["model"], 1.0)
    assert q.name == "discover_keys" and json.loads(q.params["key"]) == ["model"] and not q.secagg


def test_no_built_in_model_list():
    with pytest.raises(ValueError, match="--model"):
        build_query("battle_counts", 1.0)
    with pytest.raises(ValueError, match="--dimension"):
        build_query("rating_histogram", 1.0)
    q = build_query("coverage", 1.0)  # topics are public; no language or model list: none asked
    assert set(q.params) == {"topics"}


def answer(cells, name="discover_keys"):
    a = query_pb2.Answer(node_id="x", query_name=name, mechanism="gaussian_threshold", ledger_seq=3,
                         ledger_entry_hash=b"\x01" * 32, epsilon=0.99, delta=1e-6)
    for key, v in cells:
        a.cells.add(key=list(key), value=v)
    return a


def test_hostile_answers_are_refused_by_rule():
    assert check_answer(answer([(("model", "gpt-5"), 90)]), ["model"]) == {"model": {"gpt-5": 90}}
    for bad in ([(("model", "my name is Ann and I live at 4 Elm Street"), 90)],  # chat text, not a label
                [(("language", "en"), 90)],  # a key type not asked
                [(("model",), 90)],  # malformed cell
                [(("model", "x" * 65), 90)]):  # too long
        with pytest.raises(ValueError):
            check_answer(answer(bad), ["model"])
    with pytest.raises(ValueError, match="battle_counts"):
        check_answer(answer([], name="battle_counts"), ["model"])


def test_union_across_nodes_capped_by_summed_count():
    lists = union_keys([{"model": {"a": 50, "b": 40}}, {"model": {"c": 45}}, {"model": {}}], ["model"])
    assert lists == {"model": ["a", "b", "c"]}
    many = [{"model": {f"m{i:03d}": 100 + i for i in range(100)}}]
    kept = union_keys(many, ["model"])["model"]
    assert len(kept) == MAX_KEYS["model"] and "m099" in kept and "m000" not in kept


class Reply:
    def __init__(self, content):
        self.content = content


def test_run_discovery_unions_valid_answers_and_records_refusals():
    infos = {n: {Key.NODE_ID: f"node-{n}"} for n in (1, 2, 3, 4)}
    ok = {Record.STATUS: {Key.OK: True}, Record.ANSWER: {Key.ANSWER: answer([(("model", "gpt-5"), 80)]).SerializeToString()}}
    hostile = {Record.STATUS: {Key.OK: True},
               Record.ANSWER: {Key.ANSWER: answer([(("model", "Ann Lee, 4 Elm Street, London"), 80)]).SerializeToString()}}
    refused = {Record.STATUS: {Key.OK: False, Key.REFUSED: "refused by policy rule privacy.allowed_releases"}}
    sent = []

    def send(grid, kind, nodes, contents, group, timeout):
        sent.append((kind, sorted(nodes)))
        q = query_pb2.Query.FromString(bytes(contents[1][Record.QUERY][Key.QUERY]))
        assert q.name == "discover_keys" and q.epsilon == 1.0
        return {1: Reply(ok), 2: Reply(hostile), 3: Reply(refused)}  # node 4 never answers

    res = run_discovery(None, [1, 2, 3, 4], infos, ["model"], 1.0, send)
    assert sent == [("query.aggregate", [1, 2, 3, 4])]
    assert res.lists == {"model": ["gpt-5"]} and set(res.answers) == {"node-1"}
    assert "invalid answer" in res.refused["node-2"] and "allowed_releases" in res.refused["node-3"]
    assert "no reply" in res.refused["node-4"]
    assert res.sources() == [{"node_id": "node-1", "ledger_seq": 3, "ledger_entry_hash": "01" * 32}]
    assert res.to_dict()["discovered"] == {"model": ["gpt-5"]}


def test_an_empty_leaderboard_is_an_error_not_a_silent_success():
    board = {"query": {"params": {"models": json.dumps(["gpt-5", "grok-4"])}},
             "pooled": {"models": [], "pairs_used": 0, "pairs_dropped": 1, "components": 0}}
    with pytest.raises(click.ClickException, match="leaderboard is empty: 0 model pairs used, 1 dropped"):
        _print_board(board)
