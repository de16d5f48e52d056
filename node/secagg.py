"""The node's side of SecAgg+ over Flower records: each stage checked against the node's OWN policy and keys.

node/client_app.py's SecAgg handlers call one function here per stage (privacy/secagg/ holds the state
machine and the checks). What the node enforces against a malicious coordinator (ARCHITECTURE.md
invariant 3; Bonawitz et al. 2017 section 6, https://eprint.iacr.org/2017/281):
- KEYS: the coordinator-signed run plan (privacy/secagg/run_plan.py) is checked against the policy's
  `[trust]` and the node's own ledger key; a plan is taken part in once, ever (`policy rule secagg_plan_once`;
  remembered in the store, so a plan replayed in a later run is refused too);
  the plan's mode must match the value the node holds; the node's key pair is signed with its ledger key.
- SHARES: every peer's key pair must be signed by its roster ledger key for this plan.
- MASKED: one value is masked under one plan only, ever (`policy rule secagg_value_once`; in the store: a
  cached release re-asked in a later run, with its fresh context, is refused as in the same run).
- CONSISTENCY / UNMASK: one signed view per plan; shares are revealed only with >= t neighbourhood
  signatures over exactly that view, and not below the value owner's `secagg_require` minimum.
Every refusal is a SecAggError `policy rule <name>: ...`; the handler replies with it as a refusal; a
message that does not parse is refused as `policy rule secagg_malformed` (`_named`).

The value to aggregate waits in the context (set by the handler that computed it): `pending_update`
(float64, quantised by SecAgg) or `pending_integers` (uint64 mod 2^32, used as is), with optionally
`secagg_require` = ConfigRecord({"min_survivors": int, "rule": str}).
"""

from __future__ import annotations

import functools
import hashlib
import json

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict

from node.node_dir import NodeDir
from privacy.secagg.constants import Key as SecAggKey
from privacy.secagg.constants import Rule, refuse
from privacy.secagg.protocol import SecAggNode
from privacy.secagg.run_plan import SignedPlan
from protos.wire import Key, Record

PENDING_UPDATE = "pending_update"  # context.state: float64 vector to aggregate (ArrayRecord)
PENDING_INTEGERS = "pending_integers"  # context.state: uint64 vector in Z_{2^32} (ArrayRecord)
REQUIRE = "secagg_require"  # context.state: ConfigRecord {"min_survivors": int, "rule": str}
PLANS_SEEN = "secagg_plan:"  # store meta key prefix + plan digest hex: every plan this node took part in
VALUES_MASKED = "secagg_value:"  # store meta key prefix + SHA-256 of a masked value -> plan digest hex
_MIN_SURVIVORS, _RULE = "min_survivors", "rule"  # kept in the state record from MASKED to UNMASK


def _load(context: Context) -> SecAggNode:
    return SecAggNode.from_bytes(context.state[SecAggKey.STATE_RECORD][SecAggKey.STATE])


def _save(context: Context, node: SecAggNode, **extra) -> None:
    old = context.state[SecAggKey.STATE_RECORD] if SecAggKey.STATE_RECORD in context.state else ConfigRecord()
    keep = {k: old[k] for k in (_MIN_SURVIVORS, _RULE) if k in old}
    context.state[SecAggKey.STATE_RECORD] = ConfigRecord({SecAggKey.STATE: node.to_bytes(), **keep, **extra})


def _named(stage):
    """A stage whose parse errors (non-hex, non-integer ids, bad JSON, missing keys) are refusals naming
    secagg_malformed, not crashes: a hostile coordinator gets a named refusal and no work past the parse."""
    @functools.wraps(stage)
    def run(nd: NodeDir, context: Context, content: RecordDict) -> dict:
        try:
            return stage(nd, context, content)
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as e:
            raise refuse(Rule.MALFORMED, f"{stage.__name__}: {type(e).__name__}: {str(e)[:200]}") from None
    return run


def _fingerprint(value: np.ndarray) -> str:
    return hashlib.sha256(str(value.dtype).encode() + np.ascontiguousarray(value).tobytes()).hexdigest()


def _once(nd: NodeDir, value: np.ndarray, digest: str) -> None:
    """Refuses (VALUE_ONCE) a value already masked under another plan: a cached release re-asked
    (node/queries.py, node/training.py serve the same values again) and summed with two different rosters
    gives the difference of two nodes' values, one of them known (tests/privacy/secagg/test_attacks_node.py).
    Kept in the store's meta table, not the run's context: a new run (fresh context) is refused as well."""
    key = VALUES_MASKED + _fingerprint(value)
    with nd.open_store() as store, store.transaction():
        first = store.meta_get(key)
        if first is not None and first != digest:
            raise refuse(Rule.VALUE_ONCE, "this value was already masked in another aggregation")
        store.meta_set(key, digest)


def _plan_once(nd: NodeDir, digest: str) -> None:
    """Refuses (PLAN_ONCE) a plan this node already took part in, in this run or any earlier one: replayed,
    the same digest would let view signatures of two executions be mixed and the same values be summed
    with different dropouts (tests/privacy/secagg/test_attacks_node.py)."""
    with nd.open_store() as store, store.transaction():
        _refuse_seen(store, digest)
        store.meta_set(PLANS_SEEN + digest, "1")


def _refuse_seen(store, digest: str) -> None:
    if store.meta_get(PLANS_SEEN + digest) is not None:
        raise refuse(Rule.PLAN_ONCE, "this node already took part in this run plan (one key pair and one view per plan)")


def check_before_train(nd: NodeDir, store, content: RecordDict, run_id: str, round_number: object, dim: int) -> None:
    """A train message that carries its SecAgg+ run plan (Record.SECAGG_PLAN: the reply then carries this
    node's signed keys, one exchange fewer per round): before any member's data is read or any epsilon is
    spent, the plan is verified, must aggregate a float update of the model's `dim` parameters for this
    run (`run_id`) and round (group `secagg-<round>`), passes this node's policy (as at KEYS) and was never
    taken part in, so a plan the node would refuse later costs it nothing. Raises SecAggError."""
    from privacy.keys import raw_public_key
    from privacy.secagg.run_plan import check_plan

    try:
        cfg = content[Record.CONFIG]
        plan = SignedPlan.from_json(str(cfg[Key.RUN_PLAN])).verify()
        me = int(cfg[Key.ME])
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as e:
        raise refuse(Rule.MALFORMED, f"train: {type(e).__name__}: {str(e)[:200]}") from None
    if plan.mode != "float":
        raise refuse(Rule.MODE, f"the plan aggregates {plan.mode} values; a training round releases a float update")
    if plan.dim != dim:
        raise refuse(Rule.MODE, f"the plan aggregates {plan.dim} values; this round's update has {dim}")
    if plan.run_id != run_id or plan.group != f"secagg-{round_number}":
        raise refuse(Rule.MALFORMED, f"the plan is for run {plan.run_id!r}, {plan.group!r}; this train message is "
                                     f"run {run_id!r}, round {round_number!r}")
    check_plan(plan, me, raw_public_key(nd.ledger_key()), nd.policy().trust)
    _refuse_seen(store, plan.digest().hex())  # read only: keys_stage records it after training


@_named
def keys_stage(nd: NodeDir, context: Context, content: RecordDict) -> dict:
    """KEYS: verify the signed plan, check it against this node's policy, once per plan; sign fresh keys."""
    cfg = content[Record.CONFIG]
    plan = SignedPlan.from_json(str(cfg[Key.RUN_PLAN])).verify()
    want = PENDING_INTEGERS if plan.mode == "integer" else PENDING_UPDATE
    if want not in context.state:
        raise refuse(Rule.MODE, f"the plan aggregates {plan.mode} values; this node holds no such pending value")
    node = SecAggNode(int(cfg[Key.ME]), plan)
    c_pk, s_pk, sig = node.public_keys(nd.ledger_key(), nd.policy().trust)
    _plan_once(nd, plan.digest().hex())  # after the policy checks: a refused plan may come back, fixed
    context.state[SecAggKey.STATE_RECORD] = ConfigRecord({SecAggKey.STATE: node.to_bytes()})  # nothing of earlier plans
    return {Record.KEYS: ConfigRecord({Key.C_PK: c_pk, Key.S_PK: s_pk, Key.KEY_SIG: sig})}


@_named
def shares_stage(nd: NodeDir, context: Context, content: RecordDict) -> dict:
    """SHARES: every peer's signed keys verified against the roster, then shares sealed to neighbours."""
    node = _load(context)
    pks_json = json.loads(str(content[Record.CONFIG][Key.PKS]))
    pks = {int(k): tuple(bytes.fromhex(x) for x in v) for k, v in pks_json.items()}
    if any(len(v) != 3 for v in pks.values()):
        raise refuse(Rule.SIGNED_KEYS, "a key pair in the list carries no signature")
    cts = node.share_keys(pks)  # type: ignore[arg-type]
    _save(context, node)
    return {Record.SHARES: ConfigRecord({str(v): ct for v, ct in cts.items()})}


@_named
def masked_stage(nd: NodeDir, context: Context, content: RecordDict) -> dict:
    """MASKED: the pending value, masked (quantised first unless it is already integers)."""
    node = _load(context)
    inbox = {int(k): bytes(v) for k, v in content[Record.INBOX].items()}
    key = PENDING_INTEGERS if node.plan.mode == "integer" else PENDING_UPDATE
    if key not in context.state:
        raise refuse(Rule.MODE, f"the plan aggregates {node.plan.mode} values; this node holds no such pending value")
    value = context.state[key].to_numpy_ndarrays()[0]
    if value.shape != (node.plan.dim,):  # before the value is marked as masked: a wrong plan does not burn it
        raise refuse(Rule.MODE, f"the plan aggregates {node.plan.dim} values; the pending value has {value.size}")
    _once(nd, value, node.plan.digest().hex())
    if node.plan.mode == "integer":
        y = node.masked_integers(np.asarray(value, dtype=np.uint64), inbox)
    else:
        y = node.masked_input(value.astype(np.float64), inbox)
    del context.state[key]
    extra = {}
    if key == PENDING_INTEGERS and REQUIRE in context.state:  # the integer value's minimum (node/distributed.py),
        # bound to this aggregation from now on; a float plan masked in between never consumes it
        req = context.state[REQUIRE]
        extra = {_MIN_SURVIVORS: int(req[_MIN_SURVIVORS]), _RULE: str(req.get(_RULE, Rule.MIN_SURVIVORS))}
        del context.state[REQUIRE]
    _save(context, node, **extra)
    return {Record.ARRAYS: ArrayRecord([y.astype(np.uint32)])}


@_named
def consistency_stage(nd: NodeDir, context: Context, content: RecordDict) -> dict:
    """CONSISTENCY: sign this node's view (plan digest, survivors, dropped) with the ledger key, once."""
    node = _load(context)
    cfg = content[Record.CONFIG]
    sig = node.sign_view(nd.ledger_key(), [int(u) for u in cfg[Key.SURVIVORS]], [int(u) for u in cfg[Key.DROPPED]])
    _save(context, node)
    return {Record.STATUS: ConfigRecord({Key.OK: True, Key.VIEW_SIG: sig})}


@_named
def unmask_stage(nd: NodeDir, context: Context, content: RecordDict) -> dict:
    """UNMASK: reveal shares only with >= t neighbourhood signatures over this node's own view."""
    node = _load(context)
    cfg = content[Record.CONFIG]
    sigs = {int(u): bytes.fromhex(s) for u, s in json.loads(str(cfg[Key.VIEW_SIGS])).items()}
    rec = context.state[SecAggKey.STATE_RECORD]
    need = int(rec[_MIN_SURVIVORS]) if _MIN_SURVIVORS in rec else 0
    rule = str(rec[_RULE]) if _RULE in rec else Rule.MIN_SURVIVORS
    try:
        out = node.unmask([int(u) for u in cfg[Key.SURVIVORS]], [int(u) for u in cfg[Key.DROPPED]], sigs,
                          min_survivors=need, rule=rule)
    finally:
        _save(context, node)  # the stage is spent even when refused: no second try with other lists
    return {Record.SHARES: ConfigRecord({str(v): kind.encode() + sh for v, (kind, sh) in out.items()})}
