"""The node's Flower ClientApp (Message API): what a community's SuperNode runs.

Handlers (message types, records and keys: the wire contract, protos/wire.py):
- query.hello         public identity: node id, name, ledger public key, delta, accountant, and the
                      signed ledger export (so no separate `ledger` exchange is needed at the end).
- train               one round of user-level DP-SGD; the round's ledger entry is committed
                      before the update leaves. With secure aggregation the update stays in the
                      node's context until the SecAgg stages below ask for its masked form; the
                      message may carry the round's signed run plan (Record.SECAGG_PLAN), checked
                      before any work, and the reply then carries the KEYS stage's signed keys. With
                      config dp = "distributed": one step of distributed DP (node/distributed.py).
- query.secagg_keys / _shares / _masked / _consistency / _unmask
                      the node's side of SecAgg+ (node/secagg.py, privacy/secagg/), each stage checked
                      against the node's own policy ([trust]) and ledger key; refusals name the rule.
- query.ledger        the signed ledger export (public by design); asked only when a node's latest
                      signed head is beyond the last export the coordinator received.
Every reply carries the node's signed ledger head (`reply`, privacy/ledger_head.py, issue 15).
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

from node.node_dir import NodeDir
from privacy import configure
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


HEAD_STATE = "ledger_head"  # context.state: the last head this node signed in this run (node/head.py)


def run_of(msg: Message) -> str:
    """The run (federation id) the coordinator's message names (Record.RUN), "" when none."""
    return str(msg.content[Record.RUN].get(Key.RUN_ID, "")) if Record.RUN in msg.content else ""


def remember_head(msg: Message, context: Context, store) -> ConfigRecord:
    """Sign the node's current ledger head for the run `msg` names and keep it for this run's replies."""
    from node.head import head_for

    run_id = run_of(msg)
    head = head_for(node_dir_of(context), store, run_id)
    context.state[HEAD_STATE] = record = ConfigRecord({Key.SIGNED_HEAD: head.to_json(), Key.RUN_ID: run_id})
    return record


def reply(msg: Message, context: Context, records: dict, store=None) -> Message:
    """The reply to `msg` carrying `records` ({protos.wire.Record name: record}) and, in every reply,
    the node's signed ledger head (Record.HEAD, privacy/ledger_head.py) for the run the coordinator
    names (Record.RUN): read from `store` when the handler has it open, else the head this node last
    signed in this run (the SecAgg stages write no ledger entry), else read now. Issue 15: the
    coordinator must publish a ledger that reaches every head a node signed during the run."""
    run_id = run_of(msg)
    cached = context.state[HEAD_STATE] if HEAD_STATE in context.state else None
    if store is not None or cached is None or str(cached[Key.RUN_ID]) != run_id:
        if store is not None:
            cached = remember_head(msg, context, store)
        else:
            with node_dir_of(context).open_store() as s:
                cached = remember_head(msg, context, s)
    return Message(content=RecordDict({**records, Record.HEAD: ConfigRecord({Key.SIGNED_HEAD: cached[Key.SIGNED_HEAD]})}),
                   reply_to=msg)


@app.query(query_action(MessageType.HELLO))
def hello(msg: Message, context: Context) -> Message:
    """Public identity and policy: node id, name, ledger public key, delta, cap, paradigm, policy file."""
    nd = node_dir_of(context)
    policy = nd.policy()
    from privacy.keys import raw_public_key

    with nd.open_store() as store:  # the ledger export, head and budget travel with the hello (fewer exchanges)
        ledger_now, budget_now = ledger_record(nd, store), budget_record(nd, store)
        remember_head(msg, context, store)
    return reply(msg, context, {Record.LEDGER: ledger_now, Record.BUDGET: budget_now, Record.INFO: ConfigRecord({
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
    from node import distributed, secagg
    from node.head import run_problem
    from node.training import TrainingRefused, train_round  # torch and Opacus: only handlers that train import them
    from privacy.release import PolicyViolation
    from privacy.secagg.constants import SecAggError

    nd = node_dir_of(context)
    cfg = dict(msg.content[Record.CONFIG])
    union = distributed.is_distributed(cfg)  # one DP-SGD step over the union (node/distributed.py)
    round_of = distributed.distributed_round if union else train_round
    arrays = msg.content[Record.ARRAYS].to_numpy_ndarrays() if Record.ARRAYS in msg.content else []
    # under SecAgg+ the message may carry the round's signed run plan: the reply then carries the KEYS stage
    keys_plan = RecordDict({Record.CONFIG: msg.content[Record.SECAGG_PLAN]}) \
        if Record.SECAGG_PLAN in msg.content and cfg.get(Key.SECAGG, False) and not union else None
    with nd.open_store() as store:
        try:
            # every value checked against the policy's bounds before any work (node/request_bounds.py), the
            # committed plan's rounds enforced, the ledger entry committed before the update leaves
            if (bad_run := run_problem(run_of(msg), f"{cfg.get('federation_id')}/{cfg.get('round')}")) is not None:
                raise TrainingRefused(f"policy rule run: {bad_run}")  # node/head.py: heads bind to the run
            if keys_plan is not None:
                dim = arrays[0].size if arrays else -1
                secagg.check_before_train(nd, store, keys_plan, str(cfg.get("federation_id")), cfg.get("round"), dim)
            request, plan, rel = round_of(nd, store, cfg, arrays, Key.FEATURIZER, Key.HEAD)
            ledger_now = ledger_record(nd, store)
            remember_head(msg, context, store)
        except (TrainingRefused, PolicyViolation, SecAggError) as e:
            return reply(msg, context, {Record.STATUS: ConfigRecord({Key.OK: False, Key.REFUSED: str(e)}),
                               Record.LEDGER: ledger_record(nd, store)}, store)
    if union:
        return distributed.reply_for(msg, context, nd, rel, ledger_now)
    update = np.frombuffer(rel.payload, dtype=np.float32)  # a repeated round gets the cached update
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
        records = {Record.STATUS: status, Record.LEDGER: ledger_now}
        if keys_plan is not None:  # stage KEYS of node/secagg.py, answered with the update it will mask
            try:
                records.update(secagg.keys_stage(nd, context, keys_plan))
            except SecAggError as e:
                records[Record.KEYS] = ConfigRecord({Key.REFUSED: str(e)})
        return reply(msg, context, records)
    return reply(msg, context, {Record.STATUS: status, Record.ARRAYS: ArrayRecord([update]), Record.LEDGER: ledger_now})


def ledger_record(nd: NodeDir, store) -> ConfigRecord:
    """The signed ledger export as a reply record. Every release reply carries it (public by design),
    so the coordinator holds each node's ledger up to its last release even if the node dies later."""
    from node.releases import open_gate

    export = open_gate(nd, store).ledger.export()
    return ConfigRecord({Key.EXPORT: export.SerializeToString(deterministic=True)})


def _secagg_stage(msg: Message, context: Context, stage: str) -> Message:
    """One SecAgg+ stage (node/secagg.py), checked against this node's own policy and keys; a refusal (a
    SecAggError, `policy rule <name>: ...`) is replied as a refusal naming the rule."""
    from node import secagg
    from privacy.secagg.constants import SecAggError

    try:
        records = getattr(secagg, f"{stage}_stage")(node_dir_of(context), context, msg.content)
    except SecAggError as e:
        records = {Record.STATUS: ConfigRecord({Key.OK: False, Key.REFUSED: str(e)})}
    return reply(msg, context, records)


@app.query(query_action(MessageType.SECAGG_KEYS))
def secagg_keys(msg: Message, context: Context) -> Message:
    """SecAgg+ stage 1: the signed run plan checked against the policy; fresh key pairs signed by the ledger key."""
    return _secagg_stage(msg, context, "keys")


@app.query(query_action(MessageType.SECAGG_SHARES))
def secagg_shares(msg: Message, context: Context) -> Message:
    """SecAgg+ stage 2: peers' key signatures checked; secret shares of the node's seeds, encrypted to each neighbour."""
    return _secagg_stage(msg, context, "shares")


@app.query(query_action(MessageType.SECAGG_MASKED))
def secagg_masked(msg: Message, context: Context) -> Message:
    """SecAgg+ stage 3: the pending value (DP already applied), quantized unless integers, and masked."""
    return _secagg_stage(msg, context, "masked")


@app.query(query_action(MessageType.SECAGG_CONSISTENCY))
def secagg_consistency(msg: Message, context: Context) -> Message:
    """SecAgg+ stage 4: the node signs its view of survivors and dropped nodes, once per plan."""
    return _secagg_stage(msg, context, "consistency")


@app.query(query_action(MessageType.SECAGG_UNMASK))
def secagg_unmask(msg: Message, context: Context) -> Message:
    """SecAgg+ stage 5: given >= t signatures over its own view, shares that unmask the sum."""
    return _secagg_stage(msg, context, "unmask")


@app.query(query_action(MessageType.LEDGER))
def ledger(msg: Message, context: Context) -> Message:
    """The node's signed ledger export (public by design: every release is accounted there)."""
    nd = node_dir_of(context)
    with nd.open_store() as store:
        return reply(msg, context, {Record.LEDGER: ledger_record(nd, store)}, store)


@app.query(query_action(MessageType.BUDGET))
def budget(msg: Message, context: Context) -> Message:
    """The node's budget from its ledger, for the coordinator's plan: cap, spent, remaining, the per-query
    cap and the kinds its policy allows. Public by design (every ledger entry is published); no count
    of the community's members is in it."""
    nd = node_dir_of(context)
    with nd.open_store() as store:
        return reply(msg, context, {Record.BUDGET: budget_record(nd, store, msg)}, store)


def budget_record(nd: NodeDir, store, msg: Message | None = None) -> ConfigRecord:
    """The budget reply's record (also in every hello, so the coordinator needs no separate budget
    exchange before its plan); with the quote of the plan `msg` proposes, if it proposes one."""
    from node.releases import open_gate
    from privacy.accounting import epsilon_of
    from privacy.events import DiscreteGaussianEvent

    policy = nd.policy()
    spent = open_gate(nd, store).spent()
    quote = None
    if msg is not None and Record.CONFIG in msg.content and Key.PLAN in msg.content[Record.CONFIG]:  # a proposal
        from node.planning import quote_request

        quote = quote_request(policy, open_gate(nd, store).ledger.filter_state(), str(msg.content[Record.CONFIG][Key.PLAN]))
    sigma = float(policy.min_contributors_noise)  # each release's noisy threshold test (privacy/release.py)
    threshold = epsilon_of([DiscreteGaussianEvent(sigma, 1)], policy.delta).epsilon if sigma > 0 else 0.0
    return ConfigRecord({
        **({Key.QUOTE: quote} if quote is not None else {}),
        Key.THRESHOLD_EPSILON: float(threshold),
        Key.EPSILON_CAP: policy.epsilon_cap, Key.DELTA: policy.delta, Key.SPENT_EPSILON: float(spent.epsilon),
        Key.REMAINING_EPSILON: max(0.0, policy.epsilon_cap - float(spent.epsilon)),
        Key.MAX_QUERY_EPSILON: policy.max_query_epsilon, Key.ALLOWED_RELEASES: list(policy.allowed_releases),
        Key.ACCOUNTANT: spent.method,
    })


@app.query(query_action(MessageType.AGGREGATE))
def aggregate(msg: Message, context: Context) -> Message:
    """A DP aggregate query (node/queries.py): answered through the release gate, or refused by the
    policy. Under secure aggregation the noisy cells wait in the context for the SecAgg+ stages.
    The reply also carries the node's public policy facts (licences, caps) for the data card."""
    from node.head import run_problem
    from node.queries import answer_query, parse_query
    from privacy.release import PolicyViolation

    nd = node_dir_of(context)
    policy = nd.policy()
    facts = ConfigRecord({
        Key.LICENCES: list(policy.licences), Key.EPSILON_CAP: policy.epsilon_cap, Key.DELTA: policy.delta,
        Key.MAX_QUERY_EPSILON: policy.max_query_epsilon, Key.MIN_CONTRIBUTORS: policy.min_contributors,
        Key.PARADIGM: f"{policy.dimensions}/{policy.definitions}",
    })
    with nd.open_store() as store:
        try:
            raw = msg.content[Record.QUERY].get(Key.QUERY) if Record.QUERY in msg.content else None
            query = parse_query(raw.encode() if isinstance(raw, str) else raw)  # garbage bytes: a refusal
            if (bad_run := run_problem(run_of(msg), query.round_id)) is not None:
                raise QueryError(f"policy rule run: {bad_run}")  # node/head.py: heads bind to the run
            answer, values = answer_query(nd, store, query)
        except (PolicyViolation, QueryError) as e:
            return reply(msg, context, {Record.STATUS: ConfigRecord({Key.OK: False, Key.REFUSED: str(e)}), Record.POLICY: facts,
                               Record.LEDGER: ledger_record(nd, store)}, store)
        ledger_now = ledger_record(nd, store)
        remember_head(msg, context, store)
    if query.secagg:
        context.state["pending_update"] = ArrayRecord([np.asarray(values, dtype=np.float64)])
    return reply(msg, context, {Record.STATUS: ConfigRecord({Key.OK: True}),
                       Record.ANSWER: ConfigRecord({Key.ANSWER: answer.SerializeToString()}), Record.POLICY: facts,
                       Record.LEDGER: ledger_now})
