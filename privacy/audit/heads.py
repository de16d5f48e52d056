"""Check family `heads`: each node's published ledger reaches the latest head the node itself signed.

  head:<node>       heads/<node_id>.json, the latest ledger head the node signed during the run (the
                    coordinator kept it from the node's replies, privacy/ledger_head.py), is there,
                    is signed by the node's ledger key, names this federation, and the node's
                    published (verified) ledger reaches it: the entry at its seq has its hash and its
                    cumulative epsilon. A ledger that stops before it had its tail cut (a dropped last
                    query and its lineage, re-signed by the coordinator: the manifest's own pins
                    cannot catch that, the node's signature can). A head file for a node the bundle
                    does not publish is a node dropped from the bundle.
  node-head:<node>  a head the auditor obtained from the node itself (`cairn audit verify --node-head
                    FILE|URL`; `cairn node head DIR [--run ID]`, the node service's public endpoint):
                    signed by the node's key (the bundle's key for it, when the bundle has the node),
                    and the bundle publishes the node with a ledger that reaches it. A node that says
                    it has entries but is missing from the bundle FAILs (a contributing node dropped
                    and the bundle re-signed); a head of seq -1 (the run made no entry) asks nothing.

The coordinator could still publish an EARLIER head the node signed during the run together with
a ledger cut back to it, and drop every artifact derived from the cut entries: the bundle alone
cannot tell, which is why a node publishes its head itself and `--node-head` cross-checks against it
(the node refuses any release whose round is not of the run its message names, node/head.py
`run_problem`, so the run's head it signs covers every release of the run).
Protects ARCHITECTURE.md invariants 2 and 7 across an untrusted coordinator (invariant 3; issue 15).
"""

from __future__ import annotations

from privacy.audit.context import AuditContext, node_label, short
from privacy.audit.result import FAIL, PASS
from privacy.ledger_head import HeadError, LedgerHead, parse_json, reach_problem, verify_head
from protos import bundle


def check(ctx: AuditContext) -> None:
    """One `head:<node>` per node of the manifest (and per stray head file), then `node-head:<node>`
    for every head the auditor gave."""
    assert ctx.manifest is not None
    nodes = {n.node_id: n for n in ctx.manifest.nodes}
    for nid, node in nodes.items():
        probs = _bundle_head_problems(ctx, node)
        head = ctx.bundle_heads.get(nid)
        ctx.add(f"head:{node_label(node)}", FAIL if probs else PASS,
                (f"{len(probs)} problem(s): {probs[0]}" if probs else
                 f"the ledger reaches the node's signed head: seq {head.seq}, epsilon {head.epsilon:.6g}, "
                 f"signed {head.created_at}" if head else "?"), nid, probs)
    for f in ctx.manifest.files:
        if f.path.startswith("heads/") and f.path.removeprefix("heads/").removesuffix(".json") not in nodes:
            ctx.add(f"head:{f.path}", FAIL, f"{f.path} is the signed head of a node the bundle does not publish: "
                    "a node was dropped from the bundle")
    for source, head in ctx.node_heads:
        _check_node_head(ctx, nodes, source, head)


def _bundle_head_problems(ctx: AuditContext, node) -> list[str]:
    assert ctx.manifest is not None
    path = ctx.root / bundle.head_file(node.node_id)
    if not path.is_file():
        return [f"{bundle.head_file(node.node_id)} is missing: no head signed by the node shows its published "
                "ledger is complete"]
    try:
        head = parse_json(path.read_bytes())
    except HeadError as e:
        return [f"{bundle.head_file(node.node_id)}: {e}"]
    probs = verify_head(head, bytes(node.ledger_public_key))
    if head.node_id != node.node_id:
        probs.append(f"the head names node {short(head.node_id)}")
    if head.run_id != ctx.manifest.federation_id:
        probs.append(f"the head was signed for run {head.run_id!r}, not this federation "
                     f"{ctx.manifest.federation_id!r}: it says nothing of what the node released in this run")
    if probs:
        return probs
    ctx.bundle_heads[node.node_id] = head
    export = ctx.exports.get(node.node_id)
    if export is None:
        return ["the node's ledger could not be read, so nothing shows it reaches the node's signed head"]
    p = reach_problem(head, list(export.entries))
    return [p] if p else []


def _check_node_head(ctx: AuditContext, nodes: dict, source: str, head: LedgerHead) -> None:
    assert ctx.manifest is not None
    node = nodes.get(head.node_id)
    label = node_label(node) if node is not None else short(head.node_id)
    name = f"node-head:{label}"
    probs = verify_head(head, bytes(node.ledger_public_key) if node is not None else None)
    if probs:
        ctx.add(name, FAIL, f"the head from {source} is refused: {probs[0]}", head.node_id, probs)
        return
    scope = f"run {head.run_id!r}" if head.run_id else "the node's current head"
    if node is None:
        if head.seq < 0:
            ctx.add(name, PASS, f"the node's head from {source} ({scope}) names no entry; the bundle need not publish it",
                    head.node_id)
        else:
            ctx.add(name, FAIL, (f"node {short(head.node_id)} signed a ledger head at seq {head.seq} ({scope}, from "
                                 f"{source}), but the bundle does not publish that node: a node was dropped"), head.node_id)
        return
    export = ctx.exports.get(head.node_id)
    p = reach_problem(head, list(export.entries)) if export is not None else "the node's ledger could not be read"
    if p and head.run_id not in ("", ctx.manifest.federation_id):
        p += f" (the head is of run {head.run_id!r}, not {ctx.manifest.federation_id!r})"
    elif p and not head.run_id:
        p += (f" (a current head: if the node released after this federation, ask for the run's head, "
              f"`cairn node head DIR --run {ctx.manifest.federation_id}`)")
    if p and (dropped := _dropped_in(ctx, head.node_id)):
        p += (f"; the bundle records the node as dropped in round(s) {', '.join(map(str, dropped))}: the missing "
              "entries may be releases whose reply never reached the coordinator (spent by the node, used by nobody)")
    ctx.add(name, FAIL if p else PASS,
            p or f"the published ledger reaches the head the node gave ({source}, {scope}): seq {head.seq}, epsilon "
                 f"{head.epsilon:.6g}", head.node_id)


def _dropped_in(ctx: AuditContext, node_id: str) -> list[int]:
    """The rounds in which rounds.json records `node_id` as dropped (none when it does not read)."""
    try:
        return [r.round for r in bundle.read_rounds(ctx.root).rounds if node_id in r.dropped]
    except bundle.BundleError:
        return []
