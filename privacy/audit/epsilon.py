"""Check family `epsilon`: the claims, and every claim against the independent recomputation.

  claims:<node>   the manifest's epsilon / delta / accountant for the node are those of its last
                  ledger entry; every entry is at the node's declared delta
  epsilon:<node>  every entry's cumulative claimed epsilon is at least what the logged events give
                  (privacy/audit/recompute.py): a privacy-filter claim ("rdp-filter", schedule
                  "adaptive", the bound the cap is enforced with) at least the recomputed filter figure,
                  to float noise (EPSILON_TOLERANCE); a legacy claim (no schedule: a PLD/RDP figure for
                  parameters fixed in advance) at least the fine-grid PLD/RDP within PLD_TOLERANCE,
                  with a WARN naming the filter figure; a plan-fixed PLD figure only on entries that
                  follow a training plan their first entry committed, at least its recomputation; a
                  claim far above the recomputation (LOOSE_FACTOR) is a WARN (sound, but loose)
  distributed:<node>  (only for ledgers with distributed discrete Gaussian entries, issue 11) each such
                  entry's L2 sensitivity recomputed from its quantisation parameters (a logged one below it
                  FAILs), its modular-wrap bound (WARN above privacy/audit/ddg.py WRAP_LIMIT), and both
                  guarantees of the entry alone: under its trust assumption (h honest shares) and its own
                  share alone (every other node colluding), kept in the entry's params for the reports; with
                  the node's policy text, a step counting on more honest shares than its trust.min_honest_nodes FAILs

Protects ARCHITECTURE.md invariant 5 (epsilon is never under-reported). Fills `ctx.node.audit`
(one EntryAudit per entry) for the report.
"""

from __future__ import annotations

import math

from privacy.audit import ddg
from privacy.audit.context import AuditContext, first_and_more
from privacy.audit.describe import describe_event
from privacy.audit.recompute import (
    FINE_DISCRETIZATION_INTERVAL,
    recompute_epsilons,
    recompute_filter_epsilons,
    recompute_total,
    to_dp_event,
)
from privacy.audit.result import EPSILON_TOLERANCE, FAIL, LOOSE_FACTOR, PASS, PLD_TOLERANCE, WARN, EntryAudit
from privacy.events import EventError, event_from_proto

# The labels a ledger entry carries since issue 10 (privacy/accounting/filter.py defines them for the node;
# restated here: the auditor does not import the node's accountant).
FILTER_METHOD = "rdp-filter"
ADAPTIVE = "adaptive"


def check(ctx: AuditContext) -> None:
    """`claims:<node>` and `epsilon:<node>` for `ctx.node` (nothing when its ledger did not read)."""
    assert ctx.node is not None
    if ctx.node.export is None:
        return
    _check_claims(ctx)
    _check_epsilon(ctx)
    _check_distributed(ctx)


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
            for step in ddg.steps_of(e.body.event):  # and what the distributed bounds need (shares, dim >= 1)
                ddg.to_event(step)
        except (EventError, ValueError) as ex:
            ep.append(f"seq {e.body.seq}: DP event is invalid: {ex}")
            bad_event = True
    events = [e.body.event for e in entries]
    delta = node.delta
    if not (0 < delta < 1):
        ep.append(f"declared delta {delta!r} is not in (0, 1)")
    recomputed: list[tuple[float, float]] = []
    filt: list[float] = []
    if not bad_event and 0 < delta < 1 and entries:
        filt = recompute_filter_epsilons(events, delta)  # one pass: the running RDP sums are the prefix state
        if any(_legacy(e.body) for e in entries):  # PLD claims are held to the fine grid (result.py PLD_TOLERANCE)
            recomputed = recompute_epsilons(events, delta, FINE_DISCRETIZATION_INTERVAL)
        else:  # filter claims only: the fixed-in-advance figure is informative, for the whole ledger only
            recomputed = [(math.nan, math.nan)] * (len(entries) - 1) + [recompute_total(events, delta)]
    legacy = 0
    for i, e in enumerate(entries):
        b = e.body
        words, params = describe_event(b.event)
        audit = EntryAudit(b.seq, b.created_at, b.release_kind, b.round_id, b.contributors, words, params,
                           b.claimed_epsilon, None, None, None, b.target_delta, b.accountant, b.policy_hash,
                           schedule=b.schedule, plan_id=b.plan_id,
                           plan_epsilon=b.plan_epsilon if b.plan_id else None)
        na.entries.append(audit)
        if not recomputed:
            continue
        pld_e, rdp_e = recomputed[i]
        audit.recomputed_filter = filt[i]
        if not math.isnan(pld_e):
            audit.pld_epsilon, audit.rdp_epsilon = pld_e, rdp_e
        claimed = b.claimed_epsilon
        where = f"seq {b.seq} ({b.release_kind}, round {b.round_id or '-'})"
        if _legacy(b):
            legacy += 1
            rec = audit.recomputed_epsilon = min(pld_e, rdp_e)
            below = math.isnan(claimed) or claimed < rec * (1 - PLD_TOLERANCE)
        else:
            rec = audit.recomputed_epsilon = filt[i]
            if b.schedule != ADAPTIVE or b.accountant != FILTER_METHOD:
                ep.append(f"{where}: schedule {b.schedule!r} with accountant {b.accountant!r}: a cumulative claim is "
                          f"the privacy filter's ({FILTER_METHOD!r}, {ADAPTIVE!r}) or a legacy PLD/RDP one")
            below = math.isnan(claimed) or claimed < rec - EPSILON_TOLERANCE * max(1.0, abs(rec))
        if below:
            how = f"legacy: PLD {pld_e:.6g}, RDP {rdp_e:.6g}" if _legacy(b) else FILTER_METHOD
            ep.append(f"{where}: claimed cumulative epsilon {claimed:.9g} is BELOW the independent recomputation "
                      f"{rec:.9g} ({how}, delta {delta:g}): under-reported")
        elif claimed > rec * LOOSE_FACTOR + 1e-9:
            warns.append(f"seq {b.seq}: claimed {claimed:.6g} is far above the recomputed {rec:.6g} (sound, but loose)")
    ep += _plan_problems(entries, na.entries, delta)
    if legacy:
        warns.append(f"{legacy} legacy entr{'y claims' if legacy == 1 else 'ies claim'} a composition figure for parameters "
                     f"fixed in advance (no schedule); under an adaptive coordinator the sound cumulative figure is the "
                     f"privacy filter's, recomputed {filt[-1] if filt else float('nan'):.4f}")
    if recomputed:
        na.recomputed_epsilon = na.entries[-1].recomputed_epsilon
        na.schedule = entries[-1].body.schedule
        tol = PLD_TOLERANCE * (na.recomputed_epsilon or 0.0) if _legacy(entries[-1].body) else \
            EPSILON_TOLERANCE * max(1.0, na.recomputed_epsilon or 0.0)
        if node.claimed_epsilon < (na.recomputed_epsilon or 0.0) - tol:
            ep.append(f"the manifest's epsilon {node.claimed_epsilon:.9g} is below the recomputed {na.recomputed_epsilon:.9g}")
    elif not entries:
        na.recomputed_epsilon = 0.0
    name = f"epsilon:{ctx.node.label}"
    if ep:
        ctx.add(name, FAIL, first_and_more(ep), node.node_id, ep + warns)
    else:
        how = (f"{FILTER_METHOD}, adaptive; the cap's bound" if not legacy else
               f"{FILTER_METHOD} for {len(entries) - legacy}, legacy PLD/RDP for {legacy}")
        msg = (f"every claim reproduced: final {node.claimed_epsilon:.4f} claimed vs {na.recomputed_epsilon:.4f} recomputed "
               f"({how}; dp_accounting, delta {delta:g}, tolerance {EPSILON_TOLERANCE:g} relative)")
        ctx.add(name, WARN if warns else PASS, msg, node.node_id, warns)


def _check_distributed(ctx: AuditContext) -> None:
    """`distributed:<node>`: both guarantees and the quantisation / wrap checks of each distributed entry."""
    assert ctx.node is not None
    node = ctx.node
    problems: list[str] = []
    warns: list[str] = []
    seen = 0
    trust = _trust_of(ctx)  # (policy hash, trust.min_honest_nodes) when the policy text is available
    for e, audit in zip(node.entries, node.audit.entries):
        if not ddg.steps_of(e.body.event):
            continue
        seen += 1
        p, w, figures = ddg.check_event(e.body.event, node.manifest_node.delta, to_dp_event)
        if trust is not None and e.body.policy_hash == trust[0]:  # the trust figure may not count on more honest
            p += [f"policy rule trust.min_honest_nodes: counts on {s.shares} honest shares; the node's policy relies "
                  f"on at most {trust[1]}" for s in ddg.steps_of(e.body.event) if s.shares > trust[1]]  # shares than its policy
        audit.params.update(figures)
        step = ddg.steps_of(e.body.event)[0]
        audit.mechanism = (f"{audit.mechanism.replace('missing event', 'distributed discrete Gaussian')} "
                           f"({step.shares} honest of {step.participants} shares, sigma {step.sigma:.4g} each, "
                           f"L2 sensitivity {step.l2_sensitivity:.6g} lattice steps, gamma {step.gamma:.4g}, {step.bits} bits)")
        problems += [f"seq {e.body.seq}: {x}" for x in p]
        warns += [f"seq {e.body.seq}: {x}" for x in w]
    if not seen:
        return
    name = f"distributed:{node.label}"
    if problems:
        ctx.add(name, FAIL, first_and_more(problems), node.manifest_node.node_id, problems + warns)
    else:
        last = node.audit.entries[-1].params if node.audit.entries else {}
        ctx.add(name, WARN if warns else PASS,
                f"{seen} distributed entr{'y' if seen == 1 else 'ies'}: sensitivity after conditional rounding and the "
                f"wrap bound recomputed; both guarantees recomputed (e.g. trust {last.get('ddg_trust_epsilon', math.nan):.4f}, "
                f"own share {last.get('ddg_own_epsilon', math.nan):.4f})", node.manifest_node.node_id, warns)


def _trust_of(ctx: AuditContext) -> tuple[str, int] | None:
    """(policy sha256, trust.min_honest_nodes) of the node's policy text (bundle or auditor), else None (the
    policy check says why it is missing; a text that does not load FAILs there)."""
    from privacy.audit.policy import find_policy
    from privacy.policy import PolicyError, load_policy

    assert ctx.node is not None
    path = find_policy(ctx.root, ctx.node.manifest_node, ctx.policies)
    try:
        policy = load_policy(path) if path is not None else None
    except (PolicyError, OSError):
        return None
    return None if policy is None else (policy.sha256(), int(policy.trust.min_honest_nodes))


def _legacy(b) -> bool:
    """An entry written before issue 10: no schedule, a PLD/RDP figure for parameters fixed in advance."""
    return not b.schedule and b.accountant != FILTER_METHOD


def _plan_problems(entries: list, audits: list[EntryAudit], delta: float) -> list[str]:
    """A plan-fixed figure is honoured only for a plan committed by its first entry and followed after:
    every later entry of the plan repeats it, each entry's event is one planned round, no more rounds
    than planned; the claimed plan epsilon is at least its independent recomputation."""
    out: list[str] = []
    committed: dict[str, tuple[bytes, int, int]] = {}  # plan id -> (plan bytes, rounds, entries seen)
    for e, a in zip(entries, audits):
        b = e.body
        if not b.plan_id:
            if b.HasField("plan_event") or b.plan_epsilon:
                out.append(f"seq {b.seq}: a plan figure without a plan id")
            continue
        if not b.HasField("plan_event") or b.plan_event.WhichOneof("event") != "self_composed":
            out.append(f"seq {b.seq}: plan {b.plan_id!r} names no committed plan (SelfComposed(round event, rounds))")
            continue
        raw = b.plan_event.SerializeToString(deterministic=True)
        if b.plan_id not in committed:
            committed[b.plan_id] = (raw, int(b.plan_event.self_composed.count), 0)
        plan_raw, rounds, seen = committed[b.plan_id]
        if raw != plan_raw:
            out.append(f"seq {b.seq}: plan {b.plan_id!r} differs from the plan its first entry committed")
        if b.event.SerializeToString(deterministic=True) != b.plan_event.self_composed.event.SerializeToString(deterministic=True):
            out.append(f"seq {b.seq}: the release is not a round of its committed plan {b.plan_id!r}")
        if seen + 1 > rounds:
            out.append(f"seq {b.seq}: plan {b.plan_id!r} committed {rounds} round(s); this is round {seen + 1}")
        committed[b.plan_id] = (plan_raw, rounds, seen + 1)
        rec = min(recompute_epsilons([b.plan_event], delta)[0])
        if b.plan_epsilon < rec:
            rec = min(recompute_epsilons([b.plan_event], delta, FINE_DISCRETIZATION_INTERVAL)[0])
        a.recomputed_plan = rec
        if math.isnan(b.plan_epsilon) or b.plan_epsilon < rec * (1 - PLD_TOLERANCE):
            out.append(f"seq {b.seq}: plan {b.plan_id!r} claims epsilon {b.plan_epsilon:.9g}, BELOW its independent "
                       f"recomputation {rec:.9g} (pld, fixed in advance)")
    return out
