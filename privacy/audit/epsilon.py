"""Check family `epsilon`: the claims, and every claim against the independent recomputation.

  claims:<node>   the manifest's epsilon / delta / accountant for the node are those of its last
                  ledger entry; every entry is at the node's declared delta
  epsilon:<node>  every entry's cumulative claimed epsilon is at least what the logged events give
                  (privacy/audit/recompute.py), within EPSILON_TOLERANCE; a claim far above the
                  recomputation (LOOSE_FACTOR) is a WARN (sound, but loose)

Protects ARCHITECTURE.md invariant 5 (epsilon is never under-reported). Fills `ctx.node.audit`
(one EntryAudit per entry) for the report.
"""

from __future__ import annotations

import math

from privacy.audit.context import AuditContext, first_and_more
from privacy.audit.describe import describe_event
from privacy.audit.recompute import FINE_DISCRETIZATION_INTERVAL, recompute_epsilons
from privacy.audit.result import EPSILON_TOLERANCE, FAIL, LOOSE_FACTOR, PASS, WARN, EntryAudit
from privacy.events import EventError, event_from_proto


def check(ctx: AuditContext) -> None:
    """`claims:<node>` and `epsilon:<node>` for `ctx.node` (nothing when its ledger did not read)."""
    assert ctx.node is not None
    if ctx.node.export is None:
        return
    _check_claims(ctx)
    _check_epsilon(ctx)


def _check_claims(ctx: AuditContext) -> None:
    assert ctx.node is not None
    node, entries = ctx.node.manifest_node, ctx.node.entries
    cp = []
    if entries:
        last = entries[-1].body
        if not math.isclose(node.claimed_epsilon, last.claimed_epsilon, rel_tol=1e-12, abs_tol=1e-12):
            cp.append(f"manifest claims epsilon {node.claimed_epsilon:.6g}, the ledger's last entry {last.claimed_epsilon:.6g}")
        if node.accountant != last.accountant:
            cp.append(f"manifest names accountant {node.accountant!r}, the ledger's last entry {last.accountant!r}")
    elif node.claimed_epsilon != 0:
        cp.append(f"manifest claims epsilon {node.claimed_epsilon:.6g} for an empty ledger")
    for e in entries:
        if e.body.target_delta != node.delta:
            cp.append(f"seq {e.body.seq}: target_delta {e.body.target_delta:g} is not the node's declared delta {node.delta:g}")
    ctx.add(f"claims:{ctx.node.label}", FAIL if cp else PASS,
            "; ".join(cp[:2]) if cp else
            f"manifest epsilon {node.claimed_epsilon:.4f} at delta {node.delta:g} ({node.accountant}) "
            "is the ledger's last claim; every entry at the declared delta", node.node_id, cp)


def _check_epsilon(ctx: AuditContext) -> None:
    assert ctx.node is not None
    node, entries, na = ctx.node.manifest_node, ctx.node.entries, ctx.node.audit
    ep, warns = [], []
    bad_event = False
    for e in entries:
        try:
            event_from_proto(e.body.event)  # validates parameters
        except (EventError, ValueError) as ex:
            ep.append(f"seq {e.body.seq}: DP event is invalid: {ex}")
            bad_event = True
    events = [e.body.event for e in entries]
    delta = node.delta
    if not (0 < delta < 1):
        ep.append(f"declared delta {delta!r} is not in (0, 1)")
    recomputed: list[tuple[float, float]] = []
    if not bad_event and 0 < delta < 1 and entries:
        recomputed = recompute_epsilons(events, delta)
        if any(e.body.claimed_epsilon < min(r) - 1e-9 for e, r in zip(entries, recomputed)):
            recomputed = recompute_epsilons(events, delta, FINE_DISCRETIZATION_INTERVAL)  # confirm on the fine grid
    for i, e in enumerate(entries):
        b = e.body
        words, params = describe_event(b.event)
        if not recomputed:
            na.entries.append(EntryAudit(b.seq, b.created_at, b.release_kind, b.round_id, b.contributors, words, params,
                                         b.claimed_epsilon, None, None, None, b.target_delta, b.accountant, b.policy_hash))
            continue
        pld_e, rdp_e = recomputed[i]
        rec = min(pld_e, rdp_e)
        na.entries.append(EntryAudit(b.seq, b.created_at, b.release_kind, b.round_id, b.contributors, words, params,
                                     b.claimed_epsilon, rec, pld_e, rdp_e, b.target_delta, b.accountant, b.policy_hash))
        claimed = b.claimed_epsilon
        if math.isnan(claimed) or claimed < rec * (1 - EPSILON_TOLERANCE) - 1e-9:
            ep.append(f"seq {b.seq} ({b.release_kind}, round {b.round_id or '-'}): claimed cumulative epsilon {claimed:.6g} is "
                      f"BELOW the independent recomputation {rec:.6g} (PLD {pld_e:.6g}, RDP {rdp_e:.6g}, delta {delta:g}): "
                      "under-reported")
        elif claimed > rec * LOOSE_FACTOR + 1e-9:
            warns.append(f"seq {b.seq}: claimed {claimed:.6g} is far above the recomputed {rec:.6g} (sound, but loose)")
    if recomputed:
        na.recomputed_epsilon = min(recomputed[-1])
        if node.claimed_epsilon < na.recomputed_epsilon * (1 - EPSILON_TOLERANCE) - 1e-9:
            ep.append(f"the manifest's epsilon {node.claimed_epsilon:.6g} is below the recomputed {na.recomputed_epsilon:.6g}")
    elif not entries:
        na.recomputed_epsilon = 0.0
    name = f"epsilon:{ctx.node.label}"
    if ep:
        ctx.add(name, FAIL, first_and_more(ep), node.node_id, ep + warns)
    else:
        msg = (f"every claim reproduced: final {node.claimed_epsilon:.4f} claimed vs {na.recomputed_epsilon:.4f} recomputed "
               f"(dp_accounting PLD/RDP, delta {delta:g}, tolerance {EPSILON_TOLERANCE:.0%})")
        ctx.add(name, WARN if warns else PASS, msg, node.node_id, warns)
