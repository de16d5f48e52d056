"""Verify a release bundle without trusting the coordinator or the nodes (`cairn audit verify`).

`verify_bundle(path) -> AuditResult`: a list of named checks, each PASS, FAIL, WARN or SKIP with a
precise message. The bundle verifies when no check FAILs (`AuditResult.ok`).

The auditor is a package of checks. Each check family is one module exposing
`check(ctx: AuditContext) -> None`, which appends its Checks to the result; `verify_bundle` runs
them in this order (read each module's docstring for what its checks catch):

  manifest.py     manifest                    the manifest parses, has the known format, .json = .pb
  signatures.py   signature:manifest          the coordinator's Ed25519 signature, pinned key
                  nodes:trusted               the nodes are the ones you pinned
  files.py        file:<path>, files:unlisted every file hashed as listed; nothing unlisted
  then, for each node of the manifest:
  ledgers.py      key:<node>, ledger:<node>   one key everywhere; the signed hash chain ends at the pinned head
  epsilon.py      claims:<node>, epsilon:<node>  the claims, against the independent recomputation
  policy.py       policy:<node>               what of the community's policy is checkable
  and last:
  heads.py        head:<node>, node-head:<node>  the published ledger reaches the latest head the node signed
  lineage.py      lineage:<artifact>, rounds  every artifact and round traces to verified ledger entries,
                                              the rounds' DP-SGD parameters are their ledger events'
  statistics.py   statistics                  every statistics.json answer is its ledger event (noise,
                                              sensitivity, partitions, delta, epsilon)

The recomputation (recompute.py) is independent of the node's accountant: it uses dp_accounting
directly and never imports privacy/accounting. The result model is result.py; plain-language event
descriptions for reports are describe.py. The audit touches the bundle only through its format
module (protos/bundle.py) and never writes. This package checks ARCHITECTURE.md invariants 2, 3, 5
and 7 from a bundle alone.
"""

from __future__ import annotations

import time
from pathlib import Path

from privacy.audit import epsilon, files, heads, ledgers, lineage, manifest, policy, signatures, statistics
from privacy.audit.context import AuditContext, NodeContext, node_label, short
from privacy.audit.result import EPSILON_TOLERANCE, FAIL, PASS, SKIP, WARN, AuditResult, Check, EntryAudit, NodeAudit

BUNDLE_CHECKS = (signatures.check, files.check)  # after the manifest parsed
NODE_CHECKS = (ledgers.check, epsilon.check, policy.check)  # per node, with ctx.node set
FINAL_CHECKS = (heads.check, lineage.check, statistics.check)  # once every ledger was read


def verify_bundle(path, *, policies: dict | None = None, strict: bool = False, coordinator_key: bytes | None = None,
                  trusted_nodes: set[str] | None = None, node_heads: list | None = None) -> AuditResult:
    """Verify the bundle at `path`. `policies`: {node_id or name: policy.toml path} the auditor
    obtained elsewhere (bundle files policies/<node_id>.toml are used when present).
    `strict`: checks that cannot be made (SKIP) fail instead. `coordinator_key`: the coordinator's
    published raw Ed25519 key, pinned. `trusted_nodes`: the node ids the auditor trusts, pinned.
    `node_heads`: [(where from, privacy.ledger_head.LedgerHead)] the auditor got from the nodes themselves."""
    t0 = time.perf_counter()
    root = Path(path)
    ctx = AuditContext(root=root, result=AuditResult(bundle=str(root)), policies=policies or {}, strict=strict,
                       coordinator_key=coordinator_key,
                       trusted_nodes=None if trusted_nodes is None else set(trusted_nodes),
                       node_heads=list(node_heads or []))
    manifest.check(ctx)
    if ctx.manifest is not None:
        for check in BUNDLE_CHECKS:
            check(ctx)
        _check_nodes(ctx)
        for check in FINAL_CHECKS:
            check(ctx)
    ctx.result.seconds = time.perf_counter() - t0
    return ctx.result


def _check_nodes(ctx: AuditContext) -> None:
    assert ctx.manifest is not None
    if not ctx.manifest.nodes:
        ctx.add("nodes", FAIL, "the manifest lists no nodes")
    for node in ctx.manifest.nodes:
        if node.node_id in ctx.exports:
            ctx.add(f"node:{node_label(node)}", FAIL, f"node {short(node.node_id)} is listed twice")
            continue
        audit = NodeAudit(node.node_id, node.name, node.delta, node.claimed_epsilon, node.accountant)
        ctx.result.nodes.append(audit)
        ctx.node = NodeContext(node, audit)
        for check in NODE_CHECKS:
            check(ctx)
    ctx.node = None


__all__ = [
    "AuditResult", "Check", "EntryAudit", "NodeAudit", "verify_bundle", "EPSILON_TOLERANCE", "PASS", "FAIL", "WARN", "SKIP",
]
