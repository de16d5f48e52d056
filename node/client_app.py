"""The node's Flower ClientApp (Message API): what a community's SuperNode runs.

Handlers (message types, records and keys: the wire contract, protos/wire.py):
- query.hello         public identity: node id, name, ledger public key, delta, accountant.
- train               one round of user-level DP-SGD; the round's ledger entry is committed
                      before the update leaves. With secure aggregation the update stays in the
                      node's context until the SecAgg stages below ask for its masked form.
- query.secagg_keys / query.secagg_shares / query.secagg_masked / query.secagg_unmask
                      the node's side of SecAgg+ (privacy/secagg/).
- query.ledger        the signed ledger export (public by design).
- query.budget        cap, spent and remaining epsilon from the ledger (public by design), for the
                      coordinator's plan before anything is spent.
- query.aggregate     a DP aggregate query (node/queries.py) through the release gate; under
                      secure aggregation the noisy cells wait for the SecAgg stages above.

Which node directory a SuperNode serves: `--node-config 'node-dir="/path"'` in a deployment; in
the Simulation Engine, the partition id indexes the list in $CAIRN_FEDERATION_NODES
(protos.wire.SIMULATION_NODES_ENV, set by coordinator/simulation.py).
Nothing here ever puts text into a message: only DP updates, masked vectors, public keys and
signed ledger entries leave.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from model.features import featurizer_from_config
from node.node_dir import NodeDir
from node.releases import open_gate
from node.training import (
    TrainingRefused,
    TrainRequest,
    check_round,
    check_trains,
    contributor_data,
    load_plan,
    local_update,
    make_plan,
    save_plan,
)
from privacy import configure
from privacy.release import PolicyViolation
from privacy.secagg.constants import Key as SecAggKey
from privacy.secagg.protocol import Params, SecAggNode
from protos.wire import SIMULATION_NODES_ENV, Key, MessageType, QueryError, Record, query_action

DUMP_ENV = "CAIRN_TEST_DUMP_UPDATES"  # tests only: also write each plain update to this local folder

app = ClientApp()


@app.lifespan()
def lifespan(context: Context) -> Iterator[None]:
    """Around each run of the app: the privacy core's process-wide settings (privacy/__init__.py)."""
    configure()
    yield


def node_dir_of(context: Context) -> NodeDir:
    """The node directory this SuperNode serves (node-config node-dir, or the simulation's list by partition id)."""
    cfg = context.node_config
    if "node-dir" in cfg:
        return NodeDir(str(cfg["node-dir"]))
    dirs = json.loads(os.environ.get(SIMULATION_NODES_ENV, "[]"))
    pid = int(cfg.get("partition-id", -1))
    if not 0 <= pid < len(dirs):
        raise RuntimeError(f"no node directory for partition {pid}: "
                           f"set node-config node-dir or ${SIMULATION_NODES_ENV}")
    return NodeDir(dirs[pid])


def reply(msg: Message, records: dict) -> Message:
    """The reply to `msg` carrying `records` ({protos.wire.Record name: record})."""
    return Message(content=RecordDict(records), reply_to=msg)


@app.query(query_action(MessageType.HELLO))
def hello(msg: Message, context: Context) -> Message:
    """Public identity and policy: node id, name, ledger public key, delta, cap, paradigm, policy file."""
    nd = node_dir_of(context)
    policy = nd.policy()
    from privacy.keys import raw_public_key

    return reply(msg, {Record.INFO: ConfigRecord({
        Key.NODE_ID: nd.node_id,
        Key.NAME: nd.name,
        Key.LEDGER_PUBLIC_KEY: raw_public_key(nd.ledger_public()),
        Key.DELTA: policy.delta,
        Key.EPSILON_CAP: policy.epsilon_cap,
        Key.PARADIGM: f"{policy.dimensions}/{policy.definitions}",
        Key.POLICY_TOML: policy.dumps(),  # public: auditors check every ledger entry's policy hash and caps
    })})


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of user-level DP-SGD through the release gate (ledger entry first), or a refusal."""
    nd = node_dir_of(context)
    cfg = dict(msg.content[Record.CONFIG])
    request = TrainRequest.from_config(cfg)
    global_vec = msg.content[Record.ARRAYS].to_numpy_ndarrays()[0]
    with nd.open_store() as store:
        try:
            policy = nd.policy()
            check_trains(policy)
            gate = open_gate(nd, store)
            featurizer = featurizer_from_config(json.loads(cfg[Key.FEATURIZER]))
            data = contributor_data(store, policy, featurizer, request.max_pairs_per_contributor, request.federation_id)
            plan = load_plan(store, request.federation_id)
            if plan is None:  # the noisy min_contributors test (own ledger entry), once for the plan's rounds
                gate.check_contributors("train", data.n_contributors, f"{request.federation_id}/{request.round}")
                plan = make_plan(policy, request, gate.spent_epsilon(), gate.ledger.events())
                save_plan(store, plan)
            check_round(plan, request.round)
            update, info = local_update(json.loads(cfg[Key.HEAD]), global_vec, data, plan)
            update = update.astype(np.float32)
            rel = gate.release(
                "train",
                {"federation": request.federation_id, "round": request.round, "plan": plan.__dict__},
                contributors=None,  # tested by check_contributors when the plan was made
                round_id=f"{request.federation_id}/{request.round}",
                event=plan.event(),
                plan=(plan.plan_id, plan.plan_event()),
                payload=update.tobytes(),
            )
            update = np.frombuffer(rel.payload, dtype=np.float32)  # a repeated round gets the cached update
            ledger_now = ledger_record(nd, store)
        except (TrainingRefused, PolicyViolation) as e:
            return reply(msg, {Record.STATUS: ConfigRecord({Key.OK: False, Key.REFUSED: str(e)}),
                               Record.LEDGER: ledger_record(nd, store)})
    status = ConfigRecord({
        Key.OK: True,
        Key.LEDGER_SEQ: rel.seq,
        Key.LEDGER_ENTRY_HASH: rel.entry_hash,
        Key.CLAIMED_EPSILON: rel.claimed_epsilon,
        Key.NOISE_MULTIPLIER: plan.noise_multiplier,
        Key.SAMPLING_PROBABILITY: plan.sampling_probability,
        Key.STEPS: plan.local_steps,
    })
    if os.environ.get(DUMP_ENV):  # test hook: lets an end-to-end test check what the coordinator learnt
        np.save(os.path.join(os.environ[DUMP_ENV], f"{nd.node_id[:16]}-r{request.round}.npy"), update)
    if cfg.get(Key.SECAGG, False):
        context.state["pending_update"] = ArrayRecord([update])
        return reply(msg, {Record.STATUS: status, Record.LEDGER: ledger_now})
    return reply(msg, {Record.STATUS: status, Record.ARRAYS: ArrayRecord([update]), Record.LEDGER: ledger_now})


def ledger_record(nd: NodeDir, store) -> ConfigRecord:
    """The signed ledger export as a reply record. Every release reply carries it (public by design),
    so the coordinator holds each node's ledger up to its last release even if the node dies later."""
    export = open_gate(nd, store).ledger.export()
    return ConfigRecord({Key.EXPORT: export.SerializeToString(deterministic=True)})


def _secagg(context: Context) -> SecAggNode:
    return SecAggNode.from_bytes(context.state[SecAggKey.STATE_RECORD][SecAggKey.STATE])


def _save(context: Context, node: SecAggNode) -> None:
    context.state[SecAggKey.STATE_RECORD] = ConfigRecord({SecAggKey.STATE: node.to_bytes()})


@app.query(query_action(MessageType.SECAGG_KEYS))
def secagg_keys(msg: Message, context: Context) -> Message:
    """SecAgg+ stage 1: fresh key pairs; replies with the public keys."""
    cfg = msg.content[Record.CONFIG]
    node = SecAggNode(int(cfg[Key.ME]), Params.from_json(str(cfg[Key.PARAMS])))
    c_pk, s_pk = node.public_keys()
    _save(context, node)
    return reply(msg, {Record.KEYS: ConfigRecord({Key.C_PK: c_pk, Key.S_PK: s_pk})})


@app.query(query_action(MessageType.SECAGG_SHARES))
def secagg_shares(msg: Message, context: Context) -> Message:
    """SecAgg+ stage 2: secret shares of the node's seeds, encrypted to each neighbour."""
    node = _secagg(context)
    pks_json = json.loads(str(msg.content[Record.CONFIG][Key.PKS]))
    pks = {int(k): tuple(bytes.fromhex(x) for x in v) for k, v in pks_json.items()}
    cts = node.share_keys(pks)
    _save(context, node)
    return reply(msg, {Record.SHARES: ConfigRecord({str(v): ct for v, ct in cts.items()})})


@app.query(query_action(MessageType.SECAGG_MASKED))
def secagg_masked(msg: Message, context: Context) -> Message:
    """SecAgg+ stage 3: the pending update (DP already applied), quantized and masked."""
    node = _secagg(context)
    inbox = {int(k): bytes(v) for k, v in msg.content[Record.INBOX].items()}
    update = context.state["pending_update"].to_numpy_ndarrays()[0]
    y = node.masked_input(update.astype(np.float64), inbox)
    del context.state["pending_update"]
    _save(context, node)
    return reply(msg, {Record.ARRAYS: ArrayRecord([y.astype(np.uint32)])})


@app.query(query_action(MessageType.SECAGG_UNMASK))
def secagg_unmask(msg: Message, context: Context) -> Message:
    """SecAgg+ stage 4: shares that unmask the sum (self-mask seeds of survivors, keys of the dropped)."""
    node = _secagg(context)
    cfg = msg.content[Record.CONFIG]
    out = node.unmask(list(cfg[Key.SURVIVORS]), list(cfg[Key.DROPPED]))
    _save(context, node)
    return reply(msg, {Record.SHARES: ConfigRecord({str(v): kind.encode() + sh for v, (kind, sh) in out.items()})})


@app.query(query_action(MessageType.LEDGER))
def ledger(msg: Message, context: Context) -> Message:
    """The node's signed ledger export (public by design: every release is accounted there)."""
    nd = node_dir_of(context)
    with nd.open_store() as store:
        return reply(msg, {Record.LEDGER: ledger_record(nd, store)})


@app.query(query_action(MessageType.BUDGET))
def budget(msg: Message, context: Context) -> Message:
    """The node's budget from its ledger, for the coordinator's plan: cap, spent, remaining, the per-query
    cap and the kinds its policy allows. Public by design (every ledger entry is published); no count
    of the community's members is in it."""
    from privacy.accounting import epsilon_of
    from privacy.events import DiscreteGaussianEvent

    nd = node_dir_of(context)
    policy = nd.policy()
    with nd.open_store() as store:
        spent = open_gate(nd, store).spent()
        quote = None
        if Record.CONFIG in msg.content and Key.PLAN in msg.content[Record.CONFIG]:  # the coordinator's proposal
            from node.planning import quote_request

            quote = quote_request(policy, open_gate(nd, store).ledger.events(), str(msg.content[Record.CONFIG][Key.PLAN]))
    sigma = float(policy.min_contributors_noise)  # each release's noisy threshold test (privacy/release.py)
    threshold = epsilon_of([DiscreteGaussianEvent(sigma, 1)], policy.delta).epsilon if sigma > 0 else 0.0
    return reply(msg, {Record.BUDGET: ConfigRecord({
        **({Key.QUOTE: quote} if quote is not None else {}),
        Key.THRESHOLD_EPSILON: float(threshold),
        Key.EPSILON_CAP: policy.epsilon_cap, Key.DELTA: policy.delta, Key.SPENT_EPSILON: float(spent.epsilon),
        Key.REMAINING_EPSILON: max(0.0, policy.epsilon_cap - float(spent.epsilon)),
        Key.MAX_QUERY_EPSILON: policy.max_query_epsilon, Key.ALLOWED_RELEASES: list(policy.allowed_releases),
        Key.ACCOUNTANT: spent.method,
    })})


@app.query(query_action(MessageType.AGGREGATE))
def aggregate(msg: Message, context: Context) -> Message:
    """A DP aggregate query (node/queries.py): answered through the release gate, or refused by the
    policy. Under secure aggregation the noisy cells wait in the context for the SecAgg+ stages.
    The reply also carries the node's public policy facts (licences, caps) for the data card."""
    from node.queries import answer_query
    from protos import query_pb2

    nd = node_dir_of(context)
    policy = nd.policy()
    facts = ConfigRecord({
        Key.LICENCES: list(policy.licences), Key.EPSILON_CAP: policy.epsilon_cap, Key.DELTA: policy.delta,
        Key.MAX_QUERY_EPSILON: policy.max_query_epsilon, Key.MIN_CONTRIBUTORS: policy.min_contributors,
        Key.PARADIGM: f"{policy.dimensions}/{policy.definitions}",
    })
    query = query_pb2.Query.FromString(bytes(msg.content[Record.QUERY][Key.QUERY]))
    with nd.open_store() as store:
        try:
            answer, values = answer_query(nd, store, query)
        except (PolicyViolation, QueryError) as e:
            return reply(msg, {Record.STATUS: ConfigRecord({Key.OK: False, Key.REFUSED: str(e)}), Record.POLICY: facts,
                               Record.LEDGER: ledger_record(nd, store)})
        ledger_now = ledger_record(nd, store)
    if query.secagg:
        context.state["pending_update"] = ArrayRecord([np.asarray(values, dtype=np.float64)])
    return reply(msg, {Record.STATUS: ConfigRecord({Key.OK: True}),
                       Record.ANSWER: ConfigRecord({Key.ANSWER: answer.SerializeToString()}), Record.POLICY: facts,
                       Record.LEDGER: ledger_now})
