"""The coordinator's side of SecAgg+ over Flower messages: one signed run plan, five stages, only the sum.

`secure_sum` builds the run plan (privacy/secagg/run_plan.py) from the roster — each participant's
protocol id and ledger public key, as the node's hello and signed heads name it (coordinator/heads.py) —
signs it with the coordinator's key (coordinator/signing.py; the one-off key when none is configured),
and relays the five stages (privacy/secagg/constants.py Stage): KEYS (the signed plan; each node
answers with its key pair signed by its ledger key), SHARES, MASKED, CONSISTENCY (each survivor signs its
view), UNMASK (with every view signature). It stays untrusted (ARCHITECTURE.md invariant 3): every node
checks the plan, the keys and the views itself and refuses, naming the rule; a refusal here only takes
the node out of this aggregation. In a training round the plan travels with the train message
(`plan_for`, coordinator/server_app.py) and the train replies carry the keys: `secure_sum(planned=, keyed=)`
then sends four stages, not five (issue 16). The SecAgg+ neighbour graph (privacy/secagg/graph.py, Bell et al. 2020,
https://eprint.iacr.org/2020/704) is used from the degree on which it is sparser than complete.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ConfigRecord, Message, RecordDict

from privacy.secagg.constants import SecAggError
from privacy.secagg.graph import degree_for, threshold_for
from privacy.secagg.protocol import SecAggServer
from privacy.secagg.quantization import dequantize_sum
from privacy.secagg.run_plan import RunPlan, default_threshold, make_plan, sign_plan
from protos.wire import Key, MessageType, Record

log = logging.getLogger("cairn.coordinator")
PLANS_FILE = "secagg_plans.json"  # in the bundle: the signed SecAgg+ run plans of the run
_ONE_OFF: list[Ed25519PrivateKey] = []  # the process's one-off plan key when no coordinator key is configured


def send(grid, kind: str, nodes: list[int], contents: dict[int, RecordDict], group: str, timeout) -> dict[int, Message]:
    """Send one message per node and return the replies by node (errors logged and left out)."""
    msgs = [Message(content=contents[n], message_type=kind, dst_node_id=n, group_id=group) for n in nodes]
    out = {}
    for rep in grid.send_and_receive(msgs, timeout=timeout):
        src = rep.metadata.src_node_id
        if rep.has_error():
            log.warning("node %s failed %s: %s", src, kind, rep.error.reason)
            continue
        out[src] = rep
    return out


def roster_of(grid, nodes: list[int]) -> dict[int, str]:
    """Flower node id -> ledger public key (hex) from the signed heads the run's grid kept (coordinator/heads.py)."""
    collected = getattr(grid, "collected", None)
    out = {}
    for n in nodes:
        nid = collected.ids.get(n) if collected is not None else None
        head = collected.latest(nid) if nid is not None else None
        if head is not None:
            out[n] = head.public_key.hex()
    return out


def plan_key(cfg) -> Ed25519PrivateKey:
    """The key that signs run plans: the coordinator's key file (as the bundle's), else a one-off key."""
    path = getattr(cfg, "coordinator_key", "")
    if path:
        from coordinator.signing import load_or_create_key

        return load_or_create_key(path)[0]
    if not _ONE_OFF:
        _ONE_OFF.append(Ed25519PrivateKey.generate())
    return _ONE_OFF[0]


def _run_plans(grid) -> list[str] | None:
    """The signed plans of this run, kept beside the run's heads (coordinator/heads.py Collected) for the bundle."""
    collected = getattr(grid, "collected", None)
    return vars(collected).setdefault("secagg_plans", []) if collected is not None else None


def plan_files(grid) -> dict[str, tuple[bytes, str]]:
    """The bundle file PLANS_FILE: every run plan the coordinator signed in this run (auditors and nodes can
    check what roster and threshold each aggregation announced); {} when none."""
    plans = _run_plans(grid) or []
    if not plans:
        return {}
    body = json.dumps([json.loads(p) for p in plans], indent=2, sort_keys=True) + "\n"
    return {PLANS_FILE: (body.encode(), "secagg-plans")}


def plan_shape(n: int) -> tuple[int, int]:
    """(neighbours, threshold) for n nodes: the complete graph with a strict majority while the sparse
    graph would not be sparser, else graph.py's degree and the larger of its threshold and a majority."""
    k = degree_for(n)
    if k >= n - 1:
        return 0, default_threshold(n)
    return k, max(threshold_for(n, k), default_threshold(k + 1))


def _config(values: dict) -> RecordDict:
    return RecordDict({Record.CONFIG: ConfigRecord(values)})


def _refused(reps: dict[int, Message], stage: str, refusals: dict[int, str]) -> dict[int, Message]:
    """The replies that are not refusals; each refusal logged and kept in `refusals`."""
    ok = {}
    for n, r in reps.items():
        status = r.content[Record.STATUS] if Record.STATUS in r.content else None
        if status is not None and not status[Key.OK]:
            refusals[n] = f"secure aggregation ({stage}): {status[Key.REFUSED]}"
            log.warning("node %s refused SecAgg+ %s: %s", n, stage, status[Key.REFUSED])
        else:
            ok[n] = r
    return ok


@dataclass
class Planned:
    """A signed run plan over `nodes` (Flower ids) with protocol ids 1..n (`idx`, and `back` to Flower ids)."""

    nodes: list[int]
    idx: dict[int, int]
    back: dict[int, int]
    plan: RunPlan
    signed: str

    def keys_config(self, n: int) -> ConfigRecord:
        """What node `n` needs to answer stage KEYS: its protocol id and the signed plan."""
        return ConfigRecord({Key.ME: self.idx[n], Key.RUN_PLAN: self.signed})


def plan_for(grid, nodes: list[int], cfg, dim: int, group: str, *, integers: bool = False,
             roster: dict[int, str] | None = None, signed_plans: list[str] | None = None) -> Planned:
    """Build and sign the run plan of one aggregation over `nodes` (those with a known ledger key; see
    `secure_sum` for the arguments); the signed plan is also kept for the bundle. Raises SecAggError below 2."""
    keys = roster if roster is not None else roster_of(grid, nodes)
    nodes = [n for n in sorted(nodes) if n in keys]
    if len(nodes) < 2:
        raise SecAggError(f"only {len(nodes)} nodes with a known ledger key; secure aggregation needs 2")
    idx = {n: i + 1 for i, n in enumerate(nodes)}  # protocol ids 1..n (Flower ids exceed int64)
    neighbours, threshold = plan_shape(len(nodes))
    plan = make_plan(str(getattr(cfg, "federation_id", "")), group, [keys[n] for n in nodes], clip=cfg.secagg_clip,
                     levels=cfg.secagg_levels, dim=dim, mode="integer" if integers else "float", threshold=threshold,
                     neighbours=neighbours)
    signed = sign_plan(plan, plan_key(cfg)).to_json()
    for kept in (signed_plans, _run_plans(grid)):
        if kept is not None:
            kept.append(signed)
    return Planned(nodes, idx, {i: n for n, i in idx.items()}, plan, signed)


def roster_from_hellos(nodes: list[int], infos: dict[int, dict]) -> tuple[dict[int, str], dict[int, str]]:
    """({node: ledger key hex}, {node: why left out}) from the nodes' hellos: a node is in the roster only
    when its hello's ledger key is the key its node id names (privacy/keys.py node_id_of). A copied or
    missing key would make every run plan refuse (one ledger key twice) after the nodes had trained."""
    from privacy.keys import node_id_of

    keys, out = {}, {}
    for n in nodes:
        raw = infos[n].get(Key.LEDGER_PUBLIC_KEY)
        if isinstance(raw, bytes) and node_id_of(raw) == infos[n].get(Key.NODE_ID):
            keys[n] = raw.hex()
        else:
            out[n] = "secure aggregation: the hello's ledger key is not the one its node id names"
    return keys, out


def _keys_refused(reps: dict[int, Message], refusals: dict[int, str]) -> dict[int, Message]:
    """The replies of an exchange that also answered stage KEYS (a train under the plan) that carry keys;
    a node's KEYS refusal (Record.KEYS with Key.REFUSED) is logged and kept in `refusals`."""
    ok = {}
    for n, r in reps.items():
        keys = r.content[Record.KEYS] if Record.KEYS in r.content else None
        if keys is not None and Key.REFUSED in keys:
            refusals[n] = f"secure aggregation (keys): {keys[Key.REFUSED]}"
            log.warning("node %s refused SecAgg+ keys: %s", n, keys[Key.REFUSED])
        elif keys is not None:
            ok[n] = r
        else:
            refusals[n] = "secure aggregation (keys): the reply carries no keys for the run plan"
            log.warning("node %s sent no SecAgg+ keys with its reply", n)
    return ok


def secure_sum(grid, nodes: list[int], cfg, dim: int, group: str, *, integers: bool = False,
               roster: dict[int, str] | None = None, refusals: dict[int, str] | None = None,
               signed_plans: list[str] | None = None, planned: Planned | None = None,
               keyed: dict[int, Message] | None = None) -> tuple[np.ndarray, list[int]]:
    """SecAgg+ over `nodes` (each holds its pending value): returns (float sum, contributing nodes), or with
    `integers` the raw modular sum (np.uint64, mod 2^32). `roster`: Flower node id -> ledger public key hex
    (default: from the run's signed heads); `refusals` receives each refusing node's reason; `signed_plans`
    the signed plan (JSON), also kept with the run grid's heads for the bundle (`plan_files`). With
    `planned` (from `plan_for`, sent with the exchange that computed the values) and `keyed` (that
    exchange's replies, which carry each node's signed keys), stage KEYS is not sent again: one exchange
    fewer. Raises SecAggError when the sum cannot be recovered."""
    refusals = {} if refusals is None else refusals
    if planned is None:
        planned = plan_for(grid, nodes, cfg, dim, group, integers=integers, roster=roster, signed_plans=signed_plans)
    plan, idx, back = planned.plan, planned.idx, planned.back
    server, timeout = SecAggServer(plan), getattr(cfg, "timeout", None)

    def stage(kind: str, name: str, contents: dict[int, RecordDict]) -> dict[int, Message]:
        return _refused(send(grid, kind, sorted(contents), contents, group, timeout), name, refusals)

    if keyed is not None:
        reps = _keys_refused({n: r for n, r in keyed.items() if n in idx}, refusals)
    else:
        reps = stage(MessageType.SECAGG_KEYS, "keys", {n: RecordDict({Record.CONFIG: planned.keys_config(n)})
                                                       for n in planned.nodes})
    pks = server.collect_public_keys({idx[n]: (bytes(r.content[Record.KEYS][Key.C_PK]), bytes(r.content[Record.KEYS][Key.S_PK]),
                                               bytes(r.content[Record.KEYS][Key.KEY_SIG])) for n, r in reps.items()})
    params = plan.params()
    hex_pks = {u: [c.hex(), s.hex(), sig.hex()] for u, (c, s, sig) in pks.items()}

    def pks_for(u: int) -> str:  # each node gets its neighbourhood's signed keys only: O(k) per node
        return json.dumps({str(v): hex_pks[v] for v in [u, *params.neighbourhood(u)] if v in hex_pks})
    reps = stage(MessageType.SECAGG_SHARES, "shares", {back[u]: _config({Key.PKS: pks_for(u)}) for u in pks})
    inbox = server.route_shares({idx[n]: {int(v): bytes(ct) for v, ct in r.content[Record.SHARES].items()}
                                 for n, r in reps.items()})
    reps = stage(MessageType.SECAGG_MASKED, "masked", {
        back[u]: RecordDict({Record.INBOX: ConfigRecord({str(v): ct for v, ct in inbox[u].items()})}) for u in inbox})
    survivors, dropped = server.collect_inputs({idx[n]: r.content[Record.ARRAYS].to_numpy_ndarrays()[0]
                                                for n, r in reps.items()})
    view = {Key.SURVIVORS: survivors, Key.DROPPED: dropped}
    reps = stage(MessageType.SECAGG_CONSISTENCY, "consistency", {back[u]: _config(view) for u in survivors})
    sigs = server.collect_views({idx[n]: bytes(r.content[Record.STATUS][Key.VIEW_SIG]) for n, r in reps.items()})
    sig_json = json.dumps({str(u): s.hex() for u, s in sigs.items()})
    reps = stage(MessageType.SECAGG_UNMASK, "unmask", {back[u]: _config({**view, Key.VIEW_SIGS: sig_json}) for u in sigs})
    reveals = {
        idx[n]: {int(v): (bytes(b)[:1].decode(), bytes(b)[1:]) for v, b in r.content[Record.SHARES].items()}
        for n, r in reps.items()
    }
    total, count = server.aggregate(reveals)
    surv_nodes = [back[u] for u in survivors]
    if integers:
        return total.astype(np.uint64), surv_nodes
    return dequantize_sum(total, count, cfg.secagg_clip, cfg.secagg_levels), surv_nodes
