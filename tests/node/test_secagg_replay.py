"""Issue 11 item 1, the `secagg=False` replay: a value a node computed for secure aggregation is only
ever released masked. The attack: a coordinator asks a query (or a training round) with secagg=True, so
the node keeps the noisy values for the SecAgg+ stages and releases them only masked, then re-asks the
same query (or round) with secagg=False; before the fix the release gate's cache (keyed by the request,
not by how it leaves) served the cached plaintext. Played through the node's own ClientApp handlers
(node/client_app.py), which call node/queries.py and node/training.py, which release through
privacy/release.py: the plaintext re-ask is refused naming the rule (secagg_only), nothing new is spent,
and a secagg re-ask still gets the same cached values (no fresh noise)."""

import json
import re

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, RecordDict

import node.client_app as ca
from node.releases import open_gate
from protos import query_pb2
from protos.wire import Key, Record
from tests.node.test_hostile_values import _train_cfg, _vec
from tests.node.test_queries import _node

RUN = "fed"
SECAGG_ONLY = r"policy rule (privacy\.)?secagg_only:"


def _message(content: dict, message_type: str):
    """A coordinator message as the ClientApp receives it, outside a Flower run (TaskIdentity set for the
    constructor only, as tests/e2e/test_dropout_heads.py does)."""
    from flwr.app import Message
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id)
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 1
    try:
        return Message(content=RecordDict({Record.RUN: ConfigRecord({Key.RUN_ID: RUN}), **content}), dst_node_id=1,
                       message_type=message_type)
    finally:
        TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = saved


@pytest.fixture
def node(tmp_path):
    nd, store = _node(tmp_path)
    store.close()  # the handlers open the store themselves, as a SuperNode does
    ctx = Context(run_id=1, node_id=1, node_config={"node-dir": str(nd.path)}, state=RecordDict(), run_config={})
    return nd, ctx


def _ledger(nd):
    with nd.open_store() as store:
        gate = open_gate(nd, store)
        return len(gate.ledger.events()), gate.spent_epsilon()


def _pending(ctx) -> np.ndarray | None:
    return ctx.state["pending_update"].to_numpy_ndarrays()[0].copy() if "pending_update" in ctx.state else None


def _ask(ctx, secagg: bool):
    q = query_pb2.Query(name="battle_counts", params={"models": json.dumps(["a", "b"])}, epsilon=0.5,
                        round_id=f"{RUN}/query/battle_counts", secagg=secagg)
    reply = ca.aggregate(_message({Record.QUERY: ConfigRecord({Key.QUERY: q.SerializeToString()})}, "query.aggregate"),
                         ctx)
    pending = _pending(ctx)
    if "pending_update" in ctx.state:
        del ctx.state["pending_update"]  # the SecAgg+ stages would consume it
    return reply.content, pending


def _no_plaintext(content) -> None:
    """No record of a reply carries the values: no answer cells, no arrays."""
    assert Record.ARRAYS not in content
    if Record.ANSWER in content:
        answer = query_pb2.Answer.FromString(bytes(content[Record.ANSWER][Key.ANSWER]))
        assert len(answer.cells) == 0, "a secure-aggregation answer left in the clear"


def test_a_query_answered_for_secagg_is_never_replayed_in_the_clear(node):
    nd, ctx = node
    content, masked_only = _ask(ctx, secagg=True)
    assert content[Record.STATUS][Key.OK] is True and masked_only is not None
    _no_plaintext(content)
    entries, spent = _ledger(nd)

    content, pending = _ask(ctx, secagg=False)  # the replay: same query, same epsilon, no secagg
    status = content[Record.STATUS]
    assert status[Key.OK] is False and pending is None, dict(status)
    assert re.search(SECAGG_ONLY, str(status[Key.REFUSED])), status[Key.REFUSED]
    _no_plaintext(content)
    assert _ledger(nd) == (entries, spent)  # refused before anything was spent

    content, again = _ask(ctx, secagg=True)  # the honest re-ask: the cached values, masked, no fresh noise
    answer = query_pb2.Answer.FromString(bytes(content[Record.ANSWER][Key.ANSWER]))
    assert content[Record.STATUS][Key.OK] is True and answer.cached and len(answer.cells) == 0
    np.testing.assert_array_equal(again, masked_only)
    assert _ledger(nd) == (entries, spent)


def test_a_query_answered_in_the_clear_is_served_the_same_under_secagg(node):
    """The other order is no leak (the values are public already) and spends nothing new."""
    nd, ctx = node
    content, _ = _ask(ctx, secagg=False)
    clear = [c.value for c in query_pb2.Answer.FromString(bytes(content[Record.ANSWER][Key.ANSWER])).cells]
    entries, spent = _ledger(nd)
    content, masked_only = _ask(ctx, secagg=True)
    assert content[Record.STATUS][Key.OK] is True and list(masked_only.astype(int)) == clear
    assert _ledger(nd) == (entries, spent)


def _train(ctx, secagg: bool):
    cfg = ConfigRecord({**_train_cfg(federation_id=RUN), Key.SECAGG: secagg})
    from flwr.app import ArrayRecord

    reply = ca.train(_message({Record.CONFIG: cfg, Record.ARRAYS: ArrayRecord(_vec())}, "train"), ctx)
    pending = _pending(ctx)
    if "pending_update" in ctx.state:
        del ctx.state["pending_update"]
    return reply.content, pending


def test_a_training_round_released_for_secagg_is_never_replayed_in_the_clear(node, monkeypatch):
    nd, ctx = node
    content, update = _train(ctx, secagg=True)
    assert content[Record.STATUS][Key.OK] is True, dict(content[Record.STATUS])
    assert update is not None and np.any(update != 0) and Record.ARRAYS not in content
    entries, spent = _ledger(nd)

    import node.training as training

    def no_training(*a, **k):
        raise AssertionError("DP-SGD ran for a replay that is refused")

    monkeypatch.setattr(training, "local_update", no_training)
    content, pending = _train(ctx, secagg=False)  # the replay of round 1 without secagg
    status = content[Record.STATUS]
    assert status[Key.OK] is False and pending is None and Record.ARRAYS not in content, dict(status)
    assert re.search(SECAGG_ONLY, str(status[Key.REFUSED])), status[Key.REFUSED]
    assert _ledger(nd) == (entries, spent)
    monkeypatch.undo()

    content, again = _train(ctx, secagg=True)  # the honest re-ask: the cached update, no fresh noise
    assert content[Record.STATUS][Key.OK] is True and Record.ARRAYS not in content
    np.testing.assert_array_equal(again, update)
    assert _ledger(nd) == (entries, spent)


def test_the_gate_keeps_secagg_releases_apart_from_clear_ones(tmp_path):
    """The rule at the gate itself (privacy/release.py), whichever node code calls it."""
    from privacy.events import DiscreteGaussianEvent
    from privacy.release import SECAGG_ONLY as RULE
    from privacy.release import PolicyViolation

    nd, store = _node(tmp_path)
    try:
        gate = open_gate(nd, store)
        ev = DiscreteGaussianEvent(20.0, 1)
        first = gate.release("battle_counts", {"q": 1}, payload=b"masked", event=ev, contributors=None, secagg=True)
        with pytest.raises(PolicyViolation, match=SECAGG_ONLY) as e:
            gate.release("battle_counts", {"q": 1}, payload=b"fresh", event=ev, contributors=None)
        assert e.value.rule == RULE
        again = gate.release("battle_counts", {"q": 1}, payload=b"fresh", event=ev, contributors=None, secagg=True)
        assert again.cached and again.payload == b"masked" and again.seq == first.seq
        clear = gate.release("battle_counts", {"q": 2}, payload=b"clear", event=ev, contributors=None)
        served = gate.release("battle_counts", {"q": 2}, payload=b"other", event=ev, contributors=None, secagg=True)
        assert served.cached and served.payload == b"clear" and served.seq == clear.seq
    finally:
        store.close()
