"""`cairn federate --dp distributed` (issue 11 item 3): one DP-SGD step over the union of all communities
per round, each node adding only its share of the noise, the coordinator seeing only the SecAgg+ sum.

A 3-node federation run in process through the nodes' real ClientApp (tiny hashed features, 3 rounds) that
trains, publishes a bundle the auditor verifies with the coordinator's key and the nodes' ids pinned, and
beats chance on a held-out community; a node whose policy counts on more honest nodes than the roster holds
refuses naming the rule (and the other checks a node makes before any work: hostile values, a plan changed
mid-way, a round without secure aggregation); a repeated round is refused, even in a fresh run; a dropout
after masking leaves the noise short, so no node unmasks and the model does not move.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from coordinator.server_app import FederationConfig
from node.node_dir import NodeDir
from privacy.audit import verify_bundle
from privacy.policy import Trust
from protos import bundle as fmt
from protos.wire import Key, MessageType, Record
from tests.e2e.conftest import make_community, synthetic_records
from tests.privacy.audit.conftest import COORDINATOR_KEY, COORDINATOR_PUB

TINY = {"name": "hashed-ngram", "dim": 16}
FED = "fed-ddg"


def _with_trust(nd: NodeDir, min_honest: int, **trust) -> NodeDir:
    dataclasses.replace(nd.policy(), trust=Trust(min_honest_nodes=min_honest, **trust)).save(nd.policy_path)
    return nd


def _key_file(root: Path) -> Path:
    key_file = root / "coordinator.key"
    key_file.write_bytes(COORDINATOR_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return key_file


class LocalGrid:
    """The nodes' ClientApp (node/client_app.py `app`) served in this process, one Flower Context per node kept
    for the run as a SuperNode keeps it; every message and reply goes through Flower's protobuf serialisation
    (as over the wire). No Ray: the Simulation Engine's start-up was most of this module's time (54-101 s under
    load); the Simulation Engine path itself is tested by tests/e2e/test_secagg_malicious.py and
    tests/e2e/test_federation.py. Keeps every reply; the node named `victim_name` dies right after masking
    in the secure aggregation `group`: its masked input is computed and sent but never arrives, and nothing
    reaches it afterwards."""

    def __init__(self, node_dirs, victim_name: str, group: str):
        from flwr.app import Context, RecordDict

        self.contexts = {101 + i: Context(run_id=1, node_id=101 + i, node_config={"node-dir": str(d)},
                                          state=RecordDict(), run_config={}) for i, d in enumerate(node_dirs)}
        self.replies, self.victim_name, self.group, self.victim, self.dead = [], victim_name, group, None, False

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, timeout=None):
        from flwr.common.serde import message_from_proto, message_to_proto

        import node.client_app as ca

        messages = [m for m in messages if not (self.dead and m.metadata.dst_node_id == self.victim)]
        out = []
        for m in messages:
            wire = message_from_proto(message_to_proto(m))
            rep = message_from_proto(message_to_proto(ca.app(wire, self.contexts[m.metadata.dst_node_id])))
            out.append(rep)
            if not rep.has_error() and Record.INFO in rep.content and rep.content[Record.INFO][Key.NAME] == self.victim_name:
                self.victim = rep.metadata.src_node_id
        if any(m.metadata.message_type == MessageType.SECAGG_MASKED and m.metadata.group_id == self.group
               for m in messages):
            self.dead = True
            out = [r for r in out if r.metadata.src_node_id != self.victim]
        self.replies += out
        return out


ROUNDS = 3  # 2 applied steps, then community-2 dies after masking in the last round
SEED = 1  # an initial head that ranks the held-out pairs the wrong way round


@pytest.fixture(scope="module")
def ddg(tmp_path_factory):
    """One federation for the whole module, in process: 3 nodes; every
    policy counts on all 3 nodes' noise (min_honest_nodes = 3) but lets SecAgg+ run with 1 peer, so that a dropout
    meets the noise rule itself (trust.min_honest_nodes at UNMASK), not SecAgg+'s secagg_min_peers first."""
    from flwr.supercore.task_identity import TaskIdentity

    from coordinator.server_app import run_federation

    root = tmp_path_factory.mktemp("ddg")
    nodes = [_with_trust(make_community(root / f"n{i}", f"community-{i}", i, n_contributors=20, pairs_each=2), 3,
                         secagg_min_peers=1) for i in range(3)]  # SecAgg+ goes on with 2 survivors: the noise rule
    grid = LocalGrid([n.path for n in nodes], "community-2", f"secagg-{ROUNDS}")
    cfg = FederationConfig(out=str(root / "bundle"), rounds=ROUNDS, dp="distributed", featurizer=TINY, hidden=8,
                           lr=0.05, federation_id=FED, coordinator_key=str(_key_file(root)), seed=SEED, min_nodes=3)
    saved = (TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id)
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 1  # Flower builds Messages only in a run
    try:
        summary = run_federation(grid, cfg)
    finally:
        TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = saved
    return Path(summary["bundle"]), summary, grid, nodes


def _accuracy(head) -> float:
    from model.features import featurizer_from_config
    from node.dpsgd import build_contributor_tensors, pair_accuracy
    from node.pairs import pairs_from_records

    held_out = build_contributor_tensors(pairs_from_records(synthetic_records(7, 60, 2)), featurizer_from_config(TINY))
    return pair_accuracy(head, held_out)


def test_distributed_run_trains_publishes_and_verifies(ddg):
    bundle, summary, grid, nodes = ddg
    res = verify_bundle(bundle, coordinator_key=COORDINATOR_PUB, trusted_nodes={n.node_id for n in nodes})
    assert res.ok and summary["audit"]["ok"], "\n".join(res.summary_lines())
    rounds = json.loads((bundle / fmt.ROUNDS).read_text())
    assert [r["round"] for r in rounds] == list(range(1, ROUNDS + 1))
    assert all(r["applied"] and r["aggregation"] == "secagg+ddg" and len(r["contributors"]) == 3 for r in rounds[:-1])
    for n in nodes:  # every round is one ledger entry carrying the distributed event, committed as one plan
        ledger = json.loads((bundle / fmt.ledger_json(n.node_id)).read_text())
        kinds = [e["body"]["release_kind"] for e in ledger["entries"]]
        assert kinds == ["train"] * ROUNDS, kinds
        assert all("distributed_discrete_gaussian" in json.dumps(e["body"]["event"]) for e in ledger["entries"])
        assert {e["body"]["plan_id"] for e in ledger["entries"]} == {f"train-ddg:{FED}"}
    # nothing but masked vectors carried a value: no train reply holds arrays
    assert all(Record.ARRAYS not in m.content for m in grid.replies if m.metadata.message_type == MessageType.TRAIN)
    import torch

    from model.reward_model import RewardHead, load_model

    torch.manual_seed(SEED)
    before, acc = _accuracy(RewardHead(TINY["dim"], hidden=8)), _accuracy(load_model(bundle / fmt.MODEL)[0])
    print(f"held-out pair accuracy: {before:.3f} at init, {acc:.3f} after {ROUNDS - 1} distributed steps")
    assert before < 0.5 and acc > 0.8, (before, acc)  # the longer, detailed answer wins in the synthetic communities


def test_dropout_after_masking_no_unmasking_no_update(ddg):
    """community-2 dies right after masking in the last round, so the sum would carry only 2 of the 3 noise
    shares every policy counts on: the survivors' UNMASK refuses (rule trust.min_honest_nodes), nothing is
    unmasked, the round is recorded as not applied and the model is the one of the rounds before."""
    bundle, summary, grid, nodes = ddg
    last = f"secagg-{ROUNDS}"
    unmask = [m for m in grid.replies if m.metadata.message_type == MessageType.SECAGG_UNMASK]
    assert len([m for m in unmask if m.metadata.group_id != last]) == 3 * (ROUNDS - 1)
    refusals = [m for m in unmask if m.metadata.group_id == last]
    assert len(refusals) == 2  # the survivors were asked, and each refused, revealing no share
    for m in refusals:
        assert m.has_error() or Record.SHARES not in m.content
        why = m.error.reason if m.has_error() else str(m.content[Record.STATUS][Key.REFUSED])
        assert "policy rule trust.min_honest_nodes" in why, why
    rnd = json.loads((bundle / fmt.ROUNDS).read_text())[-1]
    assert not rnd["applied"] and rnd["contributors"] == [], rnd
    assert all("not aggregated" in rnd["refused"][n.node_id] for n in nodes[:2]), rnd
    assert nodes[2].node_id in rnd["refused"] or nodes[2].node_id in rnd["dropped"], rnd
    from model.reward_model import load_model, state_to_vector

    # the published model is the one the applied rounds made: only their contributions are its sources
    head, _ = load_model(bundle / fmt.MODEL)
    assert np.isfinite(state_to_vector(head)).all()
    assert {s["round"] for s in json.loads((bundle / fmt.ROUNDS).read_text()) if s["applied"]} == set(range(1, ROUNDS))


# --- the node's checks, on its ClientApp directly (no federation) ----------------------------------------------


def _train_message(cfg: dict, vec: np.ndarray):
    from flwr.app import ArrayRecord, ConfigRecord

    from tests.e2e.test_dropout_heads import _node_message

    return _node_message({Record.RUN: ConfigRecord({Key.RUN_ID: cfg["federation_id"]}), Record.CONFIG: ConfigRecord(cfg),
                          Record.ARRAYS: ArrayRecord([vec])}, MessageType.TRAIN)


def _request(**changes) -> tuple[dict, np.ndarray]:
    from node.request_bounds import head_parameter_count

    head = {"type": "mlp", "in_dim": 16, "hidden": 4, "combine": "r_pr"}
    cfg = {"federation_id": "fed-node", "round": 1, "rounds": 3, "local_steps": 1, "epsilon": 1.0,
           "sampling_rate": 0.2, "max_grad_norm": 0.1, Key.FEATURIZER: json.dumps(TINY), Key.HEAD: json.dumps(head),
           Key.SECAGG: True, "dp": "distributed", "noise_multiplier": 2.0, "participants": 3, "min_honest": 2}
    return {**cfg, **changes}, np.zeros(head_parameter_count(head), dtype=np.float32)


def test_node_refuses_rounds_its_policy_does_not_allow_before_any_work(tmp_path):
    from flwr.app import Context, RecordDict

    import node.client_app as ca
    from node.head import signed_head

    nd = _with_trust(make_community(tmp_path / "n", "community-0", 0, n_contributors=12, pairs_each=1), 4)
    before = signed_head(nd.path)["seq"]
    for changes, rule in [({}, "policy rule trust.min_honest_nodes"),  # roster 3 < the 4 honest nodes it counts on
                          ({"participants": 5, "min_honest": 5}, "policy rule trust.min_honest_nodes"),  # shares too small
                          ({"participants": 5, "sampling_rate": 0.5}, "policy rule max_sampling_rate"),
                          ({"participants": 5, "noise_multiplier": 0.1}, "policy rule min_noise_multiplier"),
                          ({"participants": 5, "local_steps": 2}, "field 'local_steps'"),
                          ({"participants": 5, "noise_multiplier": 0.6, "rounds": 100}, "policy rule epsilon_cap"),
                          ({"participants": 5, "noise_multiplier": float("nan")}, "field 'noise_multiplier'")]:
        ctx = Context(run_id=1, node_id=1, node_config={"node-dir": str(nd.path)}, state=RecordDict(), run_config={})
        rep = ca.train(_train_message(*_request(**changes)), ctx)
        status = rep.content[Record.STATUS]
        assert status[Key.OK] is False and rule in str(status[Key.REFUSED]), (changes, dict(status))
        assert "pending_integers" not in ctx.state and Record.ARRAYS not in rep.content
    assert signed_head(nd.path)["seq"] == before  # nothing released, nothing spent


def _ctx(nd):
    from flwr.app import Context, RecordDict

    return Context(run_id=1, node_id=1, node_config={"node-dir": str(nd.path)}, state=RecordDict(), run_config={})


def test_repeated_round_refused_even_in_a_fresh_run_and_secagg_off_refused(tmp_path):
    """The attack: a value masked in two aggregations with different rosters gives, by difference, one node's
    value with its own noise share only. SecAgg+ remembers masked values in the run's context only, so a
    coordinator re-asks the round in a new run (fresh context, same run id): the node refuses the repeated
    round itself (rule secagg_value_once), from its ledger, before any work. A round asked without secure
    aggregation is refused (rule secagg_only). A coordinator changing q, z, h or the roster size mid-plan is
    refused (rule plan)."""
    import node.client_app as ca
    from node.head import signed_head

    nd = make_community(tmp_path / "n", "community-0", 0, n_contributors=12, pairs_each=1)
    ctx = _ctx(nd)
    rep = ca.train(_train_message(*_request()), ctx)
    assert rep.content[Record.STATUS][Key.OK] is True and Record.ARRAYS not in rep.content
    value = ctx.state["pending_integers"].to_numpy_ndarrays()[0]
    assert value.dtype == np.uint64 and int(value.max()) < 2**32
    req = ctx.state["secagg_require"]
    assert req["min_survivors"] == 2 and req["rule"] == "trust.min_honest_nodes"
    seq = signed_head(nd.path)["seq"]
    for changes, rule in [({}, "policy rule secagg_value_once"),  # the same round again (a fresh run's context)
                          ({Key.SECAGG: False}, "policy rule secagg_only"),
                          ({"round": 2, "sampling_rate": 0.1}, "policy rule plan"),
                          ({"round": 2, "noise_multiplier": 3.0}, "policy rule plan"),
                          ({"round": 2, "min_honest": 1}, "policy rule plan"),
                          ({"round": 2, "participants": 2}, "policy rule plan")]:
        ctx = _ctx(nd)
        rep = ca.train(_train_message(*_request(**changes)), ctx)
        status = rep.content[Record.STATUS]
        assert status[Key.OK] is False and rule in str(status[Key.REFUSED]), (changes, dict(status))
        assert "pending_integers" not in ctx.state and Record.ARRAYS not in rep.content
    assert signed_head(nd.path)["seq"] == seq  # no fresh noise, no new entry
    ctx = _ctx(nd)  # the next round of the same plan is answered
    assert ca.train(_train_message(*_request(round=2)), ctx).content[Record.STATUS][Key.OK] is True
    assert not np.array_equal(ctx.state["pending_integers"].to_numpy_ndarrays()[0], value)


def test_hostile_values_refused_by_rule_before_any_work(tmp_path):
    import node.client_app as ca
    from node.head import signed_head

    nd = make_community(tmp_path / "n", "community-0", 0, n_contributors=12, pairs_each=1)
    before = signed_head(nd.path)["seq"]
    for changes, field in [({"participants": 3.0}, "participants"), ({"participants": 10**9}, "participants"),
                           ({"participants": True}, "participants"), ({"min_honest": True}, "min_honest"),
                           ({"min_honest": 0}, "min_honest"), ({"noise_multiplier": float("inf")}, "noise_multiplier"),
                           ({"noise_multiplier": 1e300}, "noise_multiplier"), ({"noise_multiplier": -1.0}, "noise_multiplier"),
                           ({"sampling_rate": float("nan")}, "sampling_rate"), ({"max_grad_norm": float("nan")}, "max_grad_norm"),
                           ({"rounds": 10**6}, "rounds")]:
        ctx = _ctx(nd)
        rep = ca.train(_train_message(*_request(**changes)), ctx)
        status = rep.content[Record.STATUS]
        assert status[Key.OK] is False and field in str(status[Key.REFUSED]), (changes, dict(status))
        assert "pending_integers" not in ctx.state
    cfg, vec = _request()  # a global model of another size than the head it names
    rep = ca.train(_train_message(cfg, np.zeros(vec.size * 1000, dtype=np.float32)), _ctx(nd))
    assert rep.content[Record.STATUS][Key.OK] is False
    assert signed_head(nd.path)["seq"] == before


def test_federate_cli_dp_option(tmp_path):
    """`cairn federate --dp distributed` says what it needs before anything runs; --help explains both modes."""
    from click.testing import CliRunner

    from cairn.cli import cli

    r = CliRunner().invoke(cli, ["federate", "--help"])
    assert r.exit_code == 0 and "--dp [local|distributed]" in r.output and "trust.min_honest_nodes" in r.output
    nd = make_community(tmp_path / "n", "community-0", 0, n_contributors=12, pairs_each=1)
    base = ["federate", "--node-dir", str(nd.path), "--out", str(tmp_path / "b"), "--features", "hashed", "--dp", "distributed"]
    r = CliRunner().invoke(cli, base)
    assert r.exit_code != 0 and "at least 3 node directories" in r.output, r.output
    r = CliRunner().invoke(cli, [*base, "--node-dir", str(nd.path), "--no-secagg"])
    assert r.exit_code != 0 and "drop --no-secagg" in r.output, r.output
    assert not (tmp_path / "b").exists()
