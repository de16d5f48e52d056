"""Issue 11 item 1 end to end: SecAgg+ between the coordinator's secure_sum and the nodes' own ClientApp
handlers, honest and cheating. Most tests relay the messages in-process (LocalGrid: each message goes to
node/client_app.py's handler with that node's context, as a SuperNode would), so a cheating coordinator
can be played by rewriting messages in flight; one test runs a real simulated federation in which a
node's own policy ([trust] secagg_min_peers) refuses the roster, naming the rule, and the others still
aggregate exactly."""

import base64
import dataclasses
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict

import node.client_app as ca
from coordinator.secure_sum import secure_sum
from node.node_dir import NodeDir
from privacy.keys import node_id_of, raw_public_key
from privacy.policy import Policy, Trust
from privacy.secagg.constants import MOD, SecAggError
from protos.wire import Key, MessageType, Record

HANDLERS = {MessageType.HELLO: ca.hello, MessageType.SECAGG_KEYS: ca.secagg_keys, MessageType.SECAGG_SHARES: ca.secagg_shares,
            MessageType.SECAGG_MASKED: ca.secagg_masked, MessageType.SECAGG_CONSISTENCY: ca.secagg_consistency,
            MessageType.SECAGG_UNMASK: ca.secagg_unmask}
CFG = SimpleNamespace(federation_id="fed", secagg_clip=1.0, secagg_levels=1 << 20, timeout=None, coordinator_key="")
DIM = 16


@pytest.fixture(autouse=True)
def task_identity():
    """Flower builds Messages only inside a run: set its task identity for the in-process relay."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id)
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = saved


class LocalGrid:
    """Delivers each message to the node's ClientApp handler; `tamper(msg)` plays the cheating coordinator."""

    def __init__(self, contexts: dict[int, Context], tamper=None):
        self.contexts, self.tamper, self.replies = contexts, tamper, []

    def send_and_receive(self, messages, *, timeout=None):
        out = []
        for m in messages:
            m.content[Record.RUN] = ConfigRecord({Key.RUN_ID: CFG.federation_id})
            if self.tamper is not None:
                self.tamper(m)
            rep = HANDLERS[m.metadata.message_type](m, self.contexts[m.metadata.dst_node_id])
            self.replies.append((m.metadata.dst_node_id, m.metadata.message_type, rep))
            out.append(rep)
        return out

    def refusals(self) -> dict[int, str]:
        return {n: str(r.content[Record.STATUS][Key.REFUSED]) for n, _, r in self.replies
                if Record.STATUS in r.content and not r.content[Record.STATUS][Key.OK]}


def _nodes(tmp_path, n=4, trust=None):
    """n node directories (Flower ids 101..), their contexts and the roster of ledger keys."""
    contexts, roster = {}, {}
    for i in range(n):
        t = (trust or {}).get(i, Trust())
        nd = NodeDir.init(tmp_path / f"n{i}", f"c{i}", policy=Policy(community=f"c{i}", trust=t))
        contexts[101 + i] = Context(run_id=1, node_id=101 + i, node_config={"node-dir": str(nd.path)},
                                    state=RecordDict(), run_config={})
        roster[101 + i] = raw_public_key(nd.ledger_public()).hex()
    return contexts, roster


def _pending(contexts, seed=0):
    rng = np.random.default_rng(seed)
    xs = {n: rng.uniform(-0.5, 0.5, DIM) for n in contexts}
    for n, c in contexts.items():
        c.state["pending_update"] = ArrayRecord([xs[n]])
    return xs


def test_honest_run_sums_exactly_through_the_handlers(tmp_path):
    contexts, roster = _nodes(tmp_path)
    xs = _pending(contexts)
    grid = LocalGrid(contexts)
    plans: list[str] = []
    total, used = secure_sum(grid, sorted(contexts), CFG, DIM, "secagg-1", roster=roster, signed_plans=plans)
    assert used == sorted(contexts) and not grid.refusals()
    assert np.allclose(total, sum(xs.values()), atol=1e-4)
    plan = json.loads(plans[0])["plan"]
    assert [k for _, k in plan["roster"]] == [roster[n] for n in sorted(contexts)] and plan["threshold"] == 3
    stages = [t for _, t, _ in grid.replies]
    assert stages.index(MessageType.SECAGG_CONSISTENCY) < stages.index(MessageType.SECAGG_UNMASK)
    # the same signed plan again (a replayed KEYS): every node refuses, naming the rule
    for c in contexts.values():
        c.state["pending_update"] = ArrayRecord([np.zeros(DIM)])
    grid2 = LocalGrid(contexts)
    signed = plans[0]

    def replay(m):
        if m.metadata.message_type == MessageType.SECAGG_KEYS:
            m.content[Record.CONFIG][Key.RUN_PLAN] = signed
    grid2.tamper = replay
    with pytest.raises(SecAggError):
        secure_sum(grid2, sorted(contexts), CFG, DIM, "secagg-2", roster=roster)
    assert all(why.startswith("policy rule secagg_plan_once:") for why in grid2.refusals().values())
    assert len(grid2.refusals()) == 4


def test_roster_comes_from_the_nodes_signed_heads(tmp_path):
    """Without an explicit roster (the query phase, distributed DP) secure_sum takes each node's ledger key
    from the signed heads its replies carried (coordinator/heads.py), here those of the hello."""
    from coordinator.heads import Collected, RunGrid
    from coordinator.secure_sum import send

    contexts, roster = _nodes(tmp_path, 3)
    xs = _pending(contexts)
    grid = RunGrid(LocalGrid(contexts), Collected(CFG.federation_id))
    send(grid, MessageType.HELLO, sorted(contexts), {n: RecordDict() for n in contexts}, "hello", None)
    plans: list[str] = []
    total, used = secure_sum(grid, sorted(contexts), CFG, DIM, "secagg-query-x", signed_plans=plans)
    assert used == sorted(contexts) and np.allclose(total, sum(xs.values()), atol=1e-4)
    assert [k for _, k in json.loads(plans[0])["plan"]["roster"]] == [roster[n] for n in sorted(contexts)]


def test_a_cached_value_is_masked_in_one_aggregation_only(tmp_path):
    """A re-asked release (the same cached values) summed again with another roster: sum1 - sum2 would give
    the difference of the two rosters' odd members. Every node refuses to mask the same value twice."""
    contexts, roster = _nodes(tmp_path)
    xs = _pending(contexts)
    secure_sum(LocalGrid(contexts), sorted(contexts), CFG, DIM, "secagg-1", roster=roster)
    for n in (101, 102, 103):
        contexts[n].state["pending_update"] = ArrayRecord([xs[n]])  # the cached release, re-asked
    grid = LocalGrid(contexts)
    with pytest.raises(SecAggError):
        secure_sum(grid, [101, 102, 103], CFG, DIM, "secagg-1-retry", roster=roster)
    refused = grid.refusals()
    assert sorted(refused) == [101, 102, 103]
    assert all(why.startswith("policy rule secagg_value_once:") for why in refused.values())


def test_key_substitution_is_refused_by_every_node(tmp_path):
    """The coordinator swaps node 101's advertised keys for its own (today it recovers 101's exact update)."""
    contexts, roster = _nodes(tmp_path)
    _pending(contexts)
    from privacy.secagg.crypto import new_key_pair

    fake = (new_key_pair()[1].hex(), new_key_pair()[1].hex())

    def swap(m):
        if m.metadata.message_type == MessageType.SECAGG_SHARES and m.metadata.dst_node_id != 101:
            pks = json.loads(str(m.content[Record.CONFIG][Key.PKS]))
            pks["1"] = [fake[0], fake[1], pks["1"][2]]
            m.content[Record.CONFIG][Key.PKS] = json.dumps(pks)
    grid = LocalGrid(contexts, swap)
    with pytest.raises(SecAggError):
        secure_sum(grid, sorted(contexts), CFG, DIM, "secagg-1", roster=roster)
    refused = grid.refusals()
    assert set(refused) == {102, 103, 104}
    assert all(re.match(r"policy rule secagg_signed_keys:", why) for why in refused.values())


def test_split_survivor_views_are_refused_before_any_share(tmp_path):
    """The coordinator tells node 102 that 101 dropped while the others hear it survived."""
    contexts, roster = _nodes(tmp_path)
    _pending(contexts)

    def split(m):
        if m.metadata.message_type in (MessageType.SECAGG_CONSISTENCY, MessageType.SECAGG_UNMASK) \
                and m.metadata.dst_node_id == 102:
            cfg = m.content[Record.CONFIG]
            cfg[Key.SURVIVORS] = [u for u in cfg[Key.SURVIVORS] if u != 1]
            cfg[Key.DROPPED] = [1]
    grid = LocalGrid(contexts, split)
    total, used = secure_sum(grid, sorted(contexts), CFG, DIM, "secagg-1", roster=roster)
    assert used == sorted(contexts)  # the honest view still has t = 3 signatures: the sum, and only the sum
    refused = grid.refusals()
    assert list(refused) == [102] and refused[102].startswith("policy rule secagg_consistency:")
    for n, t, r in grid.replies:  # nobody revealed node 1's mask key: its masked input stays masked
        if t == MessageType.SECAGG_UNMASK and Record.SHARES in r.content:
            assert bytes(r.content[Record.SHARES]["1"])[:1] == b"b"


def test_own_policy_refuses_small_roster_and_integer_minimum(tmp_path):
    lax = Trust(secagg_min_peers=1)  # 102 and 103 accept a sum of two (consistency.check_view counts survivors)
    contexts, roster = _nodes(tmp_path, 3, trust={0: Trust(secagg_min_peers=5), 1: lax, 2: lax})
    rng = np.random.default_rng(1)
    xs = {n: rng.integers(0, MOD, DIM, dtype=np.uint64) for n in contexts}
    for n, c in contexts.items():
        c.state["pending_integers"] = ArrayRecord([xs[n]])
    contexts[102].state["secagg_require"] = ConfigRecord({"min_survivors": 3, "rule": "trust.min_honest_nodes"})
    grid = LocalGrid(contexts)
    with pytest.raises(SecAggError):
        secure_sum(grid, sorted(contexts), CFG, DIM, "secagg-1", roster=roster, integers=True)
    refused = grid.refusals()
    assert refused[101].startswith("policy rule secagg_min_peers:") and "5" in refused[101]
    assert refused[102].startswith("policy rule trust.min_honest_nodes:")
    # without the minimum the two others sum their integers exactly, mod 2^32
    contexts, roster = _nodes(tmp_path / "b", 3, trust={0: Trust(secagg_min_peers=5), 1: lax, 2: lax})
    for n, c in contexts.items():
        c.state["pending_integers"] = ArrayRecord([xs[n + 0]])
    refusals: dict[int, str] = {}
    total, used = secure_sum(LocalGrid(contexts), sorted(contexts), CFG, DIM, "secagg-1", roster=roster,
                             integers=True, refusals=refusals)
    assert used == [102, 103] and list(refusals) == [101]
    assert total.dtype == np.uint64 and np.array_equal(total, (xs[102] + xs[103]) % MOD)


def test_simulated_federation_a_node_policy_refuses_the_roster(tmp_path, monkeypatch):
    """A real Flower simulation with secure aggregation: community-0's policy wants 5 peers; the roster has
    2 others, so it refuses naming the rule (recorded in rounds.json); the other two, whose policies accept
    one other survivor (secagg_min_peers = 1), aggregate exactly."""
    from coordinator.server_app import FederationConfig
    from coordinator.simulation import run_simulation_federation
    from model.presets import preset_config
    from tests.e2e.conftest import make_community

    dump = tmp_path / "updates"
    dump.mkdir()
    monkeypatch.setenv("CAIRN_TEST_DUMP_UPDATES", str(dump))
    nodes = [make_community(tmp_path / f"n{i}", f"community-{i}", i, n_contributors=12, pairs_each=1) for i in range(3)]
    strict = dataclasses.replace(nodes[0].policy(), trust=Trust(secagg_min_peers=5))
    strict.save(nodes[0].policy_path)
    for n in nodes[1:]:
        dataclasses.replace(n.policy(), trust=Trust(secagg_min_peers=1)).save(n.policy_path)
    cfg = FederationConfig(out=str(tmp_path / "bundle"), rounds=1, local_steps=1, featurizer=preset_config("hashed"),
                           secagg=True, federation_id="fed-malicious", coordinator_key=str(tmp_path / "coordinator.key"))
    summary = run_simulation_federation([n.path for n in nodes], cfg, ca.app)
    bundle = Path(summary["bundle"])
    rounds = json.loads((bundle / "rounds.json").read_text())
    strict_id = nodes[0].node_id
    assert rounds[0]["applied"] and len(rounds[0]["contributors"]) == 2
    assert strict_id not in {c["node_id"] for c in rounds[0]["contributors"]}
    assert "policy rule secagg_min_peers:" in rounds[0]["refused"][strict_id]
    assert summary["audit"]["ok"], summary["audit"]["failures"]
    from privacy.secagg.run_plan import SignedPlan

    (signed,) = json.loads((bundle / "secagg_plans.json").read_text())  # the signed plan, in the bundle
    plan = SignedPlan.from_json(json.dumps(signed)).verify()
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert plan.run_id == "fed-malicious" and len(plan.roster) == 3 and plan.threshold == 2
    assert {node_id_of(bytes.fromhex(k)) for _, k in plan.roster} == {n["node_id"] for n in manifest["nodes"]}
    assert signed["coordinator_key"] == base64.b64decode(manifest["coordinator_public_key"]).hex()  # the bundle's key
    import torch

    from model.reward_model import RewardHead, load_model, state_to_vector

    torch.manual_seed(cfg.seed)
    init = state_to_vector(RewardHead(int(cfg.featurizer["dim"]), hidden=cfg.hidden))
    final = state_to_vector(load_model(bundle / "model" / "model.safetensors")[0])
    updates = [np.load(p) for p in dump.glob("*.npy") if not p.name.startswith(strict_id[:16])]
    assert len(updates) == 2 and np.allclose(final, init + np.mean(updates, axis=0), atol=1e-4)
