"""Check family `policy`: what of each community's policy a bundle lets an auditor check.

A bundle carries each node's delta (manifest), and each ledger entry the SHA-256 of the policy in
force, but not necessarily the policy text. So:
  - always: every entry names a policy; a policy change mid-ledger is a WARN naming where;
  - when the policy text is available (a bundle file `policies/<node_id>.toml`, or given by the
    auditor, e.g. obtained from the community): its hash must be the entries' policy_hash, its delta
    the declared delta, the declared delta at most its max_delta (without the text: at most the
    default ceiling 1e-5), the recomputed and claimed epsilon at most its epsilon_cap, DP-SGD entries
    at or above its noise floor and at or below its sampling-rate ceiling, release kinds allowed;
  - otherwise the cap check is SKIP, saying why (`strict=True` turns SKIP into FAIL).
Protects ARCHITECTURE.md invariant 3 (nodes enforce their own policy; the auditor checks it held).
"""

from __future__ import annotations

from pathlib import Path

from privacy.audit.context import AuditContext, first_and_more, short
from privacy.audit.result import EPSILON_TOLERANCE, FAIL, PASS, PLD_TOLERANCE, SKIP, WARN
from privacy.events import EventError, dpsgd_params, event_from_proto
from privacy.policy import Policy, PolicyError, load_policy
from protos import bundle_pb2, ledger_pb2

DEFAULT_MAX_DELTA = 1e-5  # privacy/policy.py's default max_delta: the ceiling without a policy text


def check(ctx: AuditContext) -> None:
    """`policy:<node>` for `ctx.node` (nothing when its ledger did not read)."""
    assert ctx.node is not None
    if ctx.node.export is None:
        return
    node, entries, na = ctx.node.manifest_node, ctx.node.entries, ctx.node.audit
    name = f"policy:{ctx.node.label}"
    pp, warns = [], []
    hashes = [e.body.policy_hash for e in entries]
    for e in entries:
        if not e.body.policy_hash:
            pp.append(f"seq {e.body.seq}: names no policy (empty policy_hash)")
    changes = [entries[i].body.seq for i in range(1, len(entries)) if hashes[i] != hashes[i - 1]]
    if changes:
        warns.append(f"the policy changed at seq {', '.join(map(str, changes))}")
    path = find_policy(ctx.root, node, ctx.policies)
    if path is None:
        if node.delta > DEFAULT_MAX_DELTA:
            pp.append(f"declared delta {node.delta:g} is above the default ceiling {DEFAULT_MAX_DELTA:g} "
                      "(privacy.max_delta; give the policy text if the community declared a higher one)")
        if pp:
            ctx.add(name, FAIL, pp[0], node.node_id, pp + warns)
            return
        msg = ("cap not checkable: the bundle carries no policy text for this node (only its hash "
               f"{short(hashes[-1]) if hashes else '-'} in each entry); give it with --policy to check the cap")
        ctx.add(name, FAIL if ctx.strict else SKIP, msg, node.node_id, warns)
        return
    try:
        policy = load_policy(path)
    except PolicyError as e:
        ctx.add(name, FAIL, str(e), node.node_id)
        return
    na.epsilon_cap = policy.epsilon_cap
    h = policy.sha256()
    for entry in entries:
        _entry_problems(entry, policy, h, last=entry.body.seq == entries[-1].body.seq, pp=pp, warns=warns)
    if policy.delta != node.delta:
        pp.append(f"declared delta {node.delta:g} is not the policy's {policy.delta:g}")
    if node.delta > policy.max_delta:
        pp.append(f"declared delta {node.delta:g} is above the policy's ceiling privacy.max_delta {policy.max_delta:g}")
    if policy.max_delta > DEFAULT_MAX_DELTA:
        warns.append(f"the policy's delta ceiling {policy.max_delta:g} is above the default {DEFAULT_MAX_DELTA:g}")
    # a privacy-filter figure is recomputed to float noise; a legacy (fixed-in-advance PLD) one within PLD_TOLERANCE
    tol = EPSILON_TOLERANCE if na.schedule else PLD_TOLERANCE
    if na.recomputed_epsilon is not None and na.recomputed_epsilon > policy.epsilon_cap * (1 + tol):
        pp.append(f"recomputed epsilon {na.recomputed_epsilon:.9g} exceeds the cap {policy.epsilon_cap:g}")
    if pp:
        ctx.add(name, FAIL, first_and_more(pp), node.node_id, pp + warns)
    else:
        ctx.add(name, WARN if warns else PASS,
                f"within cap {policy.epsilon_cap:g} at delta {policy.delta:g} (policy {short(h)}): "
                f"claimed {node.claimed_epsilon:.4f}, recomputed {na.recomputed_epsilon or 0:.4f}; "
                "DP-SGD floors and allowed kinds hold", node.node_id, warns)


def find_policy(root: Path, node: bundle_pb2.BundleNode, policies: dict) -> Path | None:
    """The policy text for `node`: given by the auditor (by node id or name), else the bundle's copy."""
    for key in (node.node_id, node.name):
        if key in policies:
            return Path(policies[key])
    p = root / "policies" / f"{node.node_id}.toml"
    return p if p.exists() else None


def _entry_problems(e: ledger_pb2.LedgerEntry, policy: Policy, h: str, *, last: bool,
                    pp: list[str], warns: list[str]) -> None:
    b = e.body
    if b.policy_hash and b.policy_hash != h:
        (pp if last else warns).append(
            f"seq {b.seq}: entry's policy_hash {short(b.policy_hash)} is not the given policy's {short(h)}")
    if b.release_kind == "train" or b.release_kind.startswith("query:"):
        kind = "train" if b.release_kind == "train" else b.release_kind.split(":", 1)[1]
        if kind not in policy.allowed_releases:
            pp.append(f"seq {b.seq}: release kind {kind!r} is not allowed by the policy")
    if b.claimed_epsilon > policy.epsilon_cap * (1 + 1e-12):
        pp.append(f"seq {b.seq}: claimed epsilon {b.claimed_epsilon:.6g} exceeds the cap {policy.epsilon_cap:g}")
    if b.release_kind != "train":
        return
    try:
        sgd = dpsgd_params(event_from_proto(b.event))
    except (EventError, ValueError):
        sgd = None  # an invalid event already FAILs the epsilon check
    if sgd is None:  # the release gate only ever writes one DP-SGD event for a train release
        pp.append(f"seq {b.seq}: a train release must be one DP-SGD event (privacy.events.dpsgd_event)")
    else:
        z, q = sgd.noise_multiplier, sgd.sampling_probability
        if z < policy.min_noise_multiplier * (1 - 1e-12):
            pp.append(f"seq {b.seq}: noise multiplier {z:.4g} is below the policy floor {policy.min_noise_multiplier:g}")
        if q > policy.max_sampling_rate * (1 + 1e-12):
            pp.append(f"seq {b.seq}: sampling rate {q:.4g} is above the policy ceiling {policy.max_sampling_rate:g}")
