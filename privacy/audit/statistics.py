"""Check family `statistics`: every answer in statistics.json is the release its ledger entry accounts for.

  statistics  for each query and each node's answer: the ledger entry it names (node, seq, entry hash)
              is in that node's verified ledger; the entry's DP event is the reported mechanism with the
              reported noise (sigma or scale), sensitivity and number of partitions; the reported delta
              is the entry's; the reported epsilon (the query's own figure: its parameters were fixed
              before it ran, so PLD) is at least its independent recomputation (recompute.py, fine grid,
              result.py PLD_TOLERANCE). Any mismatch FAILs: a coordinator cannot publish statistics with
              less noise, a smaller sensitivity or a cheaper epsilon than the nodes accounted for.

Protects ARCHITECTURE.md invariants 2 and 5 as seen from the bundle (issue 10, finding 8).
"""

from __future__ import annotations

import json
import math

from privacy.audit.context import AuditContext
from privacy.audit.lineage import _source_problem
from privacy.audit.recompute import FINE_DISCRETIZATION_INTERVAL, recompute_epsilons
from privacy.audit.result import FAIL, PASS, PLD_TOLERANCE
from protos import bundle, events_pb2, ledger_pb2

_NOISE_FIELD = {"discrete_gaussian": "sigma", "discrete_laplace": "scale", "gaussian": "sigma", "laplace": "scale"}


def check(ctx: AuditContext) -> None:
    """`statistics` when the bundle has a statistics.json."""
    path = ctx.root / bundle.STATISTICS
    if not path.exists():
        return
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
        queries = stats.get("queries", [])
        if not isinstance(queries, list):
            raise ValueError("'queries' is not a list")
    except (ValueError, UnicodeDecodeError, AttributeError) as e:
        ctx.add("statistics", FAIL, f"statistics.json does not parse: {e}")
        return
    assert ctx.manifest is not None
    idx = {nid: {e.body.seq: e for e in ex.entries} for nid, ex in ctx.exports.items() if ex is not None}
    nodes_by_id = {n.node_id: n for n in ctx.manifest.nodes}
    probs, n = [], 0
    for q in queries:
        name = (q.get("query") or {}).get("name", "?") if isinstance(q, dict) else "?"
        answers = q.get("answers") if isinstance(q, dict) else None
        for nid, a in (answers or {}).items():
            n += 1
            try:
                seq, h = int(a["ledger_seq"]), bytes.fromhex(a["ledger_entry_hash"])
            except (KeyError, TypeError, ValueError) as e:
                probs.append(f"query {name}, node {nid[:16]}: no readable ledger entry: {e}")
                continue
            p = _source_problem(idx, nodes_by_id, nid, seq, h)
            if p:
                probs.append(f"query {name}: {p}")
                continue
            probs += [f"query {name}, node {nid[:16]} seq {seq}: {x}" for x in answer_problems(a, idx[nid][seq])]
    ctx.add("statistics", FAIL if probs else PASS,
            (f"{len(probs)} problem(s): {probs[0]}" if probs else
             f"{n} answer(s): mechanism, noise, sensitivity, partitions, delta and epsilon are their ledger events'"),
            None, probs)


def answer_problems(a: dict, entry: ledger_pb2.LedgerEntry) -> list[str]:
    """How one statistics.json answer differs from the ledger entry it names (empty: it is that release)."""
    ev, count = entry.body.event, 1
    while ev.WhichOneof("event") == "self_composed":
        count *= int(ev.self_composed.count)
        ev = ev.self_composed.event
    which = ev.WhichOneof("event")
    out = []
    if which not in _NOISE_FIELD:
        return [f"the ledger event is {which!r}, not a noised aggregate"]
    base = getattr(ev, which)
    checks = (("mechanism", a.get("mechanism"), which),
              ("noise", a.get("noise_scale"), getattr(base, _NOISE_FIELD[which])),
              ("sensitivity", a.get("sensitivity"), base.sensitivity),
              ("partitions", a.get("max_partitions"), count),
              ("delta", a.get("delta"), entry.body.target_delta))
    for what, said, logged in checks:
        same = said == logged if isinstance(logged, str) else (
            isinstance(said, (int, float)) and not isinstance(said, bool)
            and math.isclose(float(said), float(logged), rel_tol=1e-12, abs_tol=0.0))
        if not same:
            out.append(f"statistics.json says {what} {said!r}, the ledger event {logged!r}")
    eps = a.get("epsilon")
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or math.isnan(eps):
        out.append(f"statistics.json says epsilon {eps!r}")
    elif 0 < entry.body.target_delta < 1:
        rec = own_epsilon(entry.body.event, entry.body.target_delta, float(eps))
        if eps < rec * (1 - PLD_TOLERANCE):
            out.append(f"statistics.json says epsilon {eps:.9g}, BELOW the recomputed {rec:.9g} for its ledger event "
                       "(pld, fixed in advance)")
    return out


def own_epsilon(event: events_pb2.DpEvent, delta: float, claimed: float) -> float:
    """One release's own epsilon (PLD/RDP, recomputed), confirmed on the fine grid when the claim is below the coarse one."""
    rec = min(recompute_epsilons([event], delta)[0])
    return min(recompute_epsilons([event], delta, FINE_DISCRETIZATION_INTERVAL)[0]) if claimed < rec else rec
