"""The node's Flower ClientApp (Message API): what a community's SuperNode runs.

Handlers (message types):
- query.hello         public identity: node id, name, ledger public key, delta, accountant.
- train               one round of user-level DP-SGD; the round's ledger entry is committed
                      before the update leaves. With secure aggregation the update stays in the
                      node's context until the SecAgg stages below ask for its masked form.
- query.secagg_keys / query.secagg_shares / query.secagg_masked / query.secagg_unmask
                      the node's side of SecAgg+ (privacy/secure_aggregation.py).
- query.ledger        the signed ledger export (public by design).
- query.aggregate     a DP aggregate query (node/queries.py) through the release gate; under
                      secure aggregation the noisy cells wait for the SecAgg stages above.

Which node directory a SuperNode serves: `--node-config 'node-dir="/path"'` in a deployment; in
the Simulation Engine, the partition id indexes the list in $CAIRN_FEDERATION_NODES.
Nothing here ever puts text into a message: only DP updates, masked vectors, public keys and
signed ledger entries leave.
"""

from __future__ import annotations

import json
import os

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from node.features import featurizer_from_config
from node.node_dir import NodeDir
from node.releases import open_gate
from node.training import (
    TrainingRefused,
    TrainRequest,
    check_trains,
    contributor_data,
    load_plan,
    local_update,
    make_plan,
    save_plan,
)
from privacy.release import PolicyViolation
from privacy.secure_aggregation import Params, SecAggNode

NODES_ENV = "CAIRN_FEDERATION_NODES"
DUMP_ENV = "CAIRN_TEST_DUMP_UPDATES"  # tests only: also write each plain update to this local folder

app = ClientApp()


def node_dir_of(context: Context) -> NodeDir:
    cfg = context.node_config
    if "node-dir" in cfg:
        return NodeDir(str(cfg["node-dir"]))
    dirs = json.loads(os.environ.get(NODES_ENV, "[]"))
    pid = int(cfg.get("partition-id", -1))
    if not 0 <= pid < len(dirs):
        raise RuntimeError(f"no node directory for partition {pid}: set node-config node-dir or ${NODES_ENV}")
    return NodeDir(dirs[pid])


def reply(msg: Message, **records) -> Message:
    return Message(content=RecordDict(records), reply_to=msg)


@app.query("hello")
def hello(msg: Message, context: Context) -> Message:
    nd = node_dir_of(context)
    policy = nd.policy()
    from node.keys import raw_public

    return reply(msg, info=ConfigRecord({
        "node_id": nd.node_id,
        "name": nd.name,
        "ledger_public_key": raw_public(nd.ledger_public()),
        "delta": policy.delta,
        "epsilon_cap": policy.epsilon_cap,
        "paradigm": f"{policy.dimensions}/{policy.definitions}",
        "policy_toml": policy.dumps(),  # public: auditors check every ledger entry's policy hash and caps
    }))


@app.train()
def train(msg: Message, context: Context) -> Message:
    nd = node_dir_of(context)
    cfg = dict(msg.content["config"])
    request = TrainRequest.from_config(cfg)
    global_vec = msg.content["arrays"].to_numpy_ndarrays()[0]
    store = nd.open_store()
    try:
        policy = nd.policy()
        check_trains(policy)
        gate = open_gate(nd, store)
        featurizer = featurizer_from_config(json.loads(cfg["featurizer"]))
        data = contributor_data(store, policy, featurizer, request.max_pairs_per_contributor)
        plan = load_plan(store, request.federation_id)
        if plan is None:
            plan = make_plan(policy, request, data.n_contributors, gate.spent_epsilon())
            save_plan(store, plan)
        update, info = local_update(json.loads(cfg["head"]), global_vec, data, plan)
        update = update.astype(np.float32)
        rel = gate.release(
            "train",
            {"federation": request.federation_id, "round": request.round, "plan": plan.__dict__},
            contributors=data.n_contributors,
            round_id=f"{request.federation_id}/{request.round}",
            event=plan.event(),
            payload=update.tobytes(),
        )
        update = np.frombuffer(rel.payload, dtype=np.float32)  # a repeated round gets the cached update
    except (TrainingRefused, PolicyViolation) as e:
        return reply(msg, status=ConfigRecord({"ok": False, "refused": str(e)}))
    finally:
        store.close()
    status = ConfigRecord({
        "ok": True,
        "ledger_seq": rel.seq,
        "ledger_entry_hash": rel.entry_hash,
        "claimed_epsilon": rel.claimed_epsilon,
        "noise_multiplier": plan.noise_multiplier,
        "sampling_probability": plan.sampling_probability,
        "steps": plan.local_steps,
    })
    if os.environ.get(DUMP_ENV):  # test hook: lets an end-to-end test check what the coordinator learnt
        np.save(os.path.join(os.environ[DUMP_ENV], f"{nd.node_id[:16]}-r{request.round}.npy"), update)
    if cfg.get("secagg", False):
        context.state["pending_update"] = ArrayRecord([update])
        return reply(msg, status=status)
    return reply(msg, status=status, arrays=ArrayRecord([update]))


def _secagg(context: Context) -> SecAggNode:
    return SecAggNode.from_bytes(context.state["secagg"]["state"])


def _save(context: Context, node: SecAggNode) -> None:
    context.state["secagg"] = ConfigRecord({"state": node.to_bytes()})


@app.query("secagg_keys")
def secagg_keys(msg: Message, context: Context) -> Message:
    cfg = msg.content["config"]
    node = SecAggNode(int(cfg["me"]), Params.from_json(str(cfg["params"])))
    c_pk, s_pk = node.public_keys()
    _save(context, node)
    return reply(msg, keys=ConfigRecord({"c_pk": c_pk, "s_pk": s_pk}))


@app.query("secagg_shares")
def secagg_shares(msg: Message, context: Context) -> Message:
    node = _secagg(context)
    pks = {int(k): tuple(bytes.fromhex(x) for x in v) for k, v in json.loads(str(msg.content["config"]["pks"])).items()}
    cts = node.share_keys(pks)
    _save(context, node)
    return reply(msg, shares=ConfigRecord({str(v): ct for v, ct in cts.items()}))


@app.query("secagg_masked")
def secagg_masked(msg: Message, context: Context) -> Message:
    node = _secagg(context)
    inbox = {int(k): bytes(v) for k, v in msg.content["inbox"].items()}
    update = context.state["pending_update"].to_numpy_ndarrays()[0]
    y = node.masked_input(update.astype(np.float64), inbox)
    del context.state["pending_update"]
    _save(context, node)
    return reply(msg, arrays=ArrayRecord([y.astype(np.uint32)]))


@app.query("secagg_unmask")
def secagg_unmask(msg: Message, context: Context) -> Message:
    node = _secagg(context)
    cfg = msg.content["config"]
    out = node.unmask(list(cfg["survivors"]), list(cfg["dropped"]))
    _save(context, node)
    return reply(msg, shares=ConfigRecord({str(v): kind.encode() + sh for v, (kind, sh) in out.items()}))


@app.query("ledger")
def ledger(msg: Message, context: Context) -> Message:
    nd = node_dir_of(context)
    store = nd.open_store()
    try:
        export = open_gate(nd, store).ledger.export()
    finally:
        store.close()
    return reply(msg, ledger=ConfigRecord({"export": export.SerializeToString(deterministic=True)}))


@app.query("aggregate")
def aggregate(msg: Message, context: Context) -> Message:
    """A DP aggregate query (node/queries.py): answered through the release gate, or refused by the
    policy. Under secure aggregation the noisy cells wait in the context for the SecAgg+ stages.
    The reply also carries the node's public policy facts (licences, caps) for the data card."""
    from node.queries import QueryError, answer_query
    from protos import query_pb2

    nd = node_dir_of(context)
    policy = nd.policy()
    facts = ConfigRecord({
        "licences": list(policy.licences), "epsilon_cap": policy.epsilon_cap, "delta": policy.delta,
        "max_query_epsilon": policy.max_query_epsilon, "min_contributors": policy.min_contributors,
        "paradigm": f"{policy.dimensions}/{policy.definitions}",
    })
    query = query_pb2.Query.FromString(bytes(msg.content["query"]["query"]))
    store = nd.open_store()
    try:
        answer, values = answer_query(nd, store, query)
    except (PolicyViolation, QueryError) as e:
        return reply(msg, status=ConfigRecord({"ok": False, "refused": str(e)}), policy=facts)
    finally:
        store.close()
    if query.secagg:
        context.state["pending_update"] = ArrayRecord([np.asarray(values, dtype=np.float64)])
    return reply(msg, status=ConfigRecord({"ok": True}), answer=ConfigRecord({"answer": answer.SerializeToString()}),
                 policy=facts)
