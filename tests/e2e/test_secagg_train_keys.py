"""Issue 16 item 2 under SecAgg+: the round's signed run plan travels with the train message and the reply
carries the node's signed keys, so a secure round is five exchanges, not six (the KEYS stage is not sent
again). The node checks the plan against its own policy BEFORE any member's data is read or any epsilon is
spent: a plan it would refuse at KEYS (its roster, its signature, its mode, a replay) costs it nothing.
Played through the node's own ClientApp handlers (tests/e2e/test_secagg_malicious.py's in-process relay)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict

import node.client_app as ca
from coordinator.secure_sum import plan_for, secure_sum
from node.node_dir import NodeDir
from node.releases import open_gate
from privacy.keys import raw_public_key
from privacy.policy import Trust
from privacy.secagg.constants import SecAggError
from privacy.secagg.run_plan import SignedPlan
from protos.wire import Key, MessageType, Record
from tests.e2e.test_secagg_malicious import CFG, HANDLERS, LocalGrid, task_identity  # noqa: F401 (fixture)
from tests.node.test_hostile_values import N_PARAMS, _train_cfg, _vec
from tests.node.test_queries import _node

HANDLERS_WITH_TRAIN = {**HANDLERS, MessageType.TRAIN: ca.train}


def _communities(tmp_path, n=3, trust=None):
    """n node directories with 31 consenting contributors each, their contexts and roster (Flower ids 201..)."""
    contexts, roster, dirs = {}, {}, {}
    for i in range(n):
        nd, store = _node(tmp_path / f"c{i}")
        store.close()
        if trust is not None:
            import dataclasses

            dataclasses.replace(nd.policy(), trust=trust).save(nd.policy_path)
        nd = NodeDir(nd.path)
        contexts[201 + i] = Context(run_id=1, node_id=201 + i, node_config={"node-dir": str(nd.path)},
                                    state=RecordDict(), run_config={})
        roster[201 + i] = raw_public_key(nd.ledger_public()).hex()
        dirs[201 + i] = nd
    return contexts, roster, dirs


def _spent(nd) -> tuple[int, float]:
    with nd.open_store() as store:
        gate = open_gate(nd, store)
        return len(gate.ledger.events()), gate.spent_epsilon()


def _train_messages(planned, nodes, round_=1):
    """The coordinator's train contents under SecAgg+ (coordinator/server_app.py): config, model, plan."""
    cfg = {**_train_cfg(federation_id=CFG.federation_id, round=round_, rounds=2), Key.SECAGG: True}
    return {n: RecordDict({Record.CONFIG: ConfigRecord(cfg), Record.ARRAYS: ArrayRecord(_vec()),
                           Record.SECAGG_PLAN: planned.keys_config(n)}) for n in nodes}


def _send_train(grid, contents):
    from coordinator.secure_sum import send

    return send(grid, MessageType.TRAIN, sorted(contents), contents, "round-1", None)


@pytest.fixture
def grid_of(monkeypatch):
    monkeypatch.setattr("tests.e2e.test_secagg_malicious.HANDLERS", HANDLERS_WITH_TRAIN)
    return LocalGrid


def test_a_secure_round_is_train_with_keys_then_four_stages(tmp_path, grid_of, monkeypatch):
    dump = tmp_path / "updates"
    dump.mkdir()
    monkeypatch.setenv(ca.DUMP_ENV, str(dump))
    contexts, roster, dirs = _communities(tmp_path)
    grid = grid_of(contexts)
    planned = plan_for(grid, sorted(contexts), CFG, N_PARAMS, "secagg-1", roster=roster)
    reps = _send_train(grid, _train_messages(planned, sorted(contexts)))
    plan = SignedPlan.from_json(planned.signed).verify()
    for n, r in reps.items():
        assert r.content[Record.STATUS][Key.OK] is True and Record.ARRAYS not in r.content  # the update stays home
        keys = r.content[Record.KEYS]  # signed by the node's ledger key over this plan
        from privacy.secagg.run_plan import check_key_signature

        check_key_signature(plan, planned.idx[n], bytes(keys[Key.C_PK]), bytes(keys[Key.S_PK]), bytes(keys[Key.KEY_SIG]))
    total, used = secure_sum(grid, sorted(reps), CFG, N_PARAMS, "secagg-1", planned=planned, keyed=reps)
    assert used == sorted(contexts) and not grid.refusals()
    stages = [t for _, t, _ in grid.replies]
    assert stages.count(MessageType.SECAGG_KEYS) == 0 and len(stages) == 3 * 5  # train + 4 stages per node
    updates = [np.load(p) for p in sorted(dump.glob("*.npy"))]
    assert len(updates) == 3 and np.allclose(total, np.sum(updates, axis=0), atol=1e-4)


def test_a_plan_the_policy_refuses_is_refused_before_training(tmp_path, grid_of, monkeypatch):
    """Each node wants 5 peers; the roster has 2 others: refused naming the rule, nothing read or spent."""
    contexts, roster, dirs = _communities(tmp_path, trust=Trust(secagg_min_peers=5))
    before = {n: _spent(d) for n, d in dirs.items()}
    import node.training as training

    def no_training(*a, **k):
        raise AssertionError("DP-SGD ran under a plan the node refuses")

    monkeypatch.setattr(training, "local_update", no_training)
    grid = grid_of(contexts)
    planned = plan_for(grid, sorted(contexts), CFG, N_PARAMS, "secagg-1", roster=roster)
    reps = _send_train(grid, _train_messages(planned, sorted(contexts)))
    for n, r in reps.items():
        status = r.content[Record.STATUS]
        assert status[Key.OK] is False and Record.KEYS not in r.content
        assert str(status[Key.REFUSED]).startswith("policy rule secagg_min_peers:"), status[Key.REFUSED]
        assert "pending_update" not in contexts[n].state
    assert {n: _spent(d) for n, d in dirs.items()} == before


@pytest.mark.parametrize("attack, rule", [
    ("forged signature", "secagg_plan_signature"),
    ("integer mode", "secagg_mode"),
    ("replayed plan", "secagg_plan_once"),
    ("plan of another round", "secagg_malformed"),
    ("plan of another size", "secagg_mode"),
    ("garbage", "secagg_malformed"),
    ("deep JSON", "secagg_malformed"),
])
def test_a_bad_plan_with_the_train_message_costs_nothing(tmp_path, grid_of, attack, rule):
    contexts, roster, dirs = _communities(tmp_path, n=2, trust=Trust(secagg_min_peers=1))
    grid = grid_of(contexts)
    planned = plan_for(grid, sorted(contexts), CFG, N_PARAMS, "secagg-1", roster=roster)
    if attack in ("replayed plan", "plan of another round"):  # round 1 took part in the plan, then it comes again
        first = _send_train(grid, _train_messages(planned, sorted(contexts)))
        assert all(r.content[Record.STATUS][Key.OK] for r in first.values())
    before = {n: _spent(d) for n, d in dirs.items()}
    contents = _train_messages(planned, sorted(contexts), round_=2 if attack == "plan of another round" else 1)
    for c in contents.values():
        cfg = c[Record.SECAGG_PLAN]
        signed = json.loads(str(cfg[Key.RUN_PLAN]))
        if attack == "forged signature":
            signed["plan"]["clip"] = 100.0  # a wider range than the coordinator signed
            cfg[Key.RUN_PLAN] = json.dumps(signed)
        elif attack == "integer mode":
            int_plan = plan_for(grid, sorted(contexts), CFG, N_PARAMS, "secagg-int", roster=roster, integers=True)
            cfg[Key.RUN_PLAN] = int_plan.signed
        elif attack == "plan of another size":  # would be refused only at MASKED, after spending and burning the value
            cfg[Key.RUN_PLAN] = plan_for(grid, sorted(contexts), CFG, N_PARAMS + 1, "secagg-1", roster=roster).signed
        elif attack == "garbage":
            cfg[Key.ME] = "not a number"
        elif attack == "deep JSON":
            cfg[Key.RUN_PLAN] = "[" * 200_000
    reps = _send_train(grid, contents)
    for r in reps.values():
        status = r.content[Record.STATUS]
        assert status[Key.OK] is False and Record.KEYS not in r.content, dict(status)
        assert re.match(rf"policy rule {rule}:", str(status[Key.REFUSED])), status[Key.REFUSED]
    assert {n: _spent(d) for n, d in dirs.items()} == before
    with pytest.raises(SecAggError):
        secure_sum(grid, sorted(reps), CFG, N_PARAMS, "secagg-1", planned=planned,
                   keyed={n: r for n, r in reps.items() if r.content[Record.STATUS][Key.OK]})


def test_a_float_plan_in_between_leaves_the_integer_values_minimum_in_place(tmp_path):
    """Review finding: the distributed-DP value's `secagg_require` (min_honest_nodes survivors) was consumed
    by whichever plan masked next; a coordinator masked a float value first, then summed the integers with
    fewer survivors than the owner requires."""
    from node.secagg import PENDING_INTEGERS, REQUIRE
    from tests.e2e.test_secagg_malicious import DIM, _nodes, _pending

    contexts, roster = _nodes(tmp_path, 3, trust={i: Trust(secagg_min_peers=1) for i in range(3)})
    _pending(contexts)
    for c in contexts.values():
        c.state[PENDING_INTEGERS] = ArrayRecord([np.arange(DIM, dtype=np.uint64)])
        c.state[REQUIRE] = ConfigRecord({"min_survivors": 3, "rule": "trust.min_honest_nodes"})
    secure_sum(LocalGrid(contexts), sorted(contexts), CFG, DIM, "secagg-float", roster=roster)
    assert all(REQUIRE in c.state for c in contexts.values())  # still bound to the integer value
    grid = LocalGrid(contexts)
    with pytest.raises(SecAggError):  # two survivors of three: every node holds to its minimum
        secure_sum(grid, [101, 102], CFG, DIM, "secagg-int", roster={n: roster[n] for n in (101, 102)}, integers=True)
    assert grid.refusals() and all("trust.min_honest_nodes" in why for why in grid.refusals().values())


def test_a_wrong_size_plan_at_masked_burns_nothing(tmp_path):
    """Review finding: MASKED marked the value as masked before checking its size, so a wrong-size plan
    (refused only there) made the value unusable for the correct plan that followed."""
    from tests.e2e.test_secagg_malicious import DIM, _nodes, _pending

    contexts, roster = _nodes(tmp_path, 3, trust={i: Trust(secagg_min_peers=1) for i in range(3)})
    xs = _pending(contexts)
    grid = LocalGrid(contexts)
    with pytest.raises(SecAggError):
        secure_sum(grid, sorted(contexts), CFG, DIM + 1, "secagg-wrong", roster=roster)
    assert grid.refusals() and all(why.startswith("policy rule secagg_mode:") for why in grid.refusals().values())
    total, used = secure_sum(LocalGrid(contexts), sorted(contexts), CFG, DIM, "secagg-right", roster=roster)
    assert used == sorted(contexts) and np.allclose(total, sum(xs.values()), atol=1e-4)


def test_a_plan_of_another_run_is_refused_before_training(tmp_path, grid_of):
    from types import SimpleNamespace

    contexts, roster, dirs = _communities(tmp_path, n=2, trust=Trust(secagg_min_peers=1))
    grid = grid_of(contexts)
    other_run = SimpleNamespace(**{**vars(CFG), "federation_id": "another-run"})  # a fresh plan, never seen
    other = plan_for(grid, sorted(contexts), other_run, N_PARAMS, "secagg-1", roster=roster)
    before = {n: _spent(d) for n, d in dirs.items()}
    reps = _send_train(grid, _train_messages(other, sorted(contexts)))
    for r in reps.values():
        assert r.content[Record.STATUS][Key.OK] is False
        assert str(r.content[Record.STATUS][Key.REFUSED]).startswith("policy rule secagg_malformed: the plan is for run")
    assert {n: _spent(d) for n, d in dirs.items()} == before


def test_a_reply_without_keys_is_a_recorded_refusal(tmp_path, grid_of):
    contexts, roster, dirs = _communities(tmp_path, n=3, trust=Trust(secagg_min_peers=1))
    grid = grid_of(contexts)
    planned = plan_for(grid, sorted(contexts), CFG, N_PARAMS, "secagg-1", roster=roster)
    reps = _send_train(grid, _train_messages(planned, sorted(contexts)))
    from flwr.app import Message

    stripped = RecordDict({k: v for k, v in reps[203].content.items() if k != Record.KEYS})
    reps[203] = Message(content=stripped, reply_to=reps[203])  # an old node that ignored the plan
    refusals: dict[int, str] = {}
    total, used = secure_sum(grid, sorted(reps), CFG, N_PARAMS, "secagg-1", planned=planned, keyed=reps,
                             refusals=refusals)
    assert used == [201, 202] and "no keys" in refusals[203]


def test_only_hellos_whose_key_is_their_node_id_enter_the_roster():
    """Review finding: a hello copying another node's ledger key made every run plan refuse (one key twice)
    after all nodes had trained and spent; such nodes, and nodes with no key, are left out before training."""
    from coordinator.secure_sum import roster_from_hellos
    from privacy.keys import node_id_of

    a, b = b"\x01" * 32, b"\x02" * 32
    infos = {1: {Key.NODE_ID: node_id_of(a), Key.LEDGER_PUBLIC_KEY: a},
             2: {Key.NODE_ID: node_id_of(b), Key.LEDGER_PUBLIC_KEY: b},
             3: {Key.NODE_ID: "f" * 64, Key.LEDGER_PUBLIC_KEY: a},  # a copy of node 1's key
             4: {Key.NODE_ID: "e" * 64}}  # no key
    keys, out = roster_from_hellos([1, 2, 3, 4], infos)
    assert keys == {1: a.hex(), 2: b.hex()} and sorted(out) == [3, 4]
