"""Check family `policy`: what of each community's policy a bundle lets an auditor check.

A bundle carries each node's delta (manifest), and each ledger entry the SHA-256 of the policy in
force, but not necessarily the policy text. So:
  - always: every entry names a policy; a policy change mid-ledger is a WARN naming where;
  - when the policy text is available (a bundle file `policies/<node_id>.toml`, or given by the
    auditor, e.g. obtained from the community): its hash must be the entries' policy_hash, its delta
    the declared delta, the declared delta at most its max_delta (without the text: at most the
    default ceiling 1e-5), the recomputed and claimed epsilon at most its epsilon_cap, DP-SGD entries
    at or above its noise floor and at or below its sampling-rate ceiling; and for EVERY kind (training,
    each aggregate query, key discovery, their threshold tests; "query:<kind>" or "<kind>"): the kind
    allowed, an aggregate release's own epsilon at most max_query_epsilon, each release preceded by its
    noisy min_contributors test ("threshold:<kind>", same round; once per training plan) when the
    policy's threshold is noisy, and an old entry's exact contributor count at least min_contributors;
  - otherwise the cap check is SKIP, saying why (`strict=True` turns SKIP into FAIL).
Protects ARCHITECTURE.md invariant 3 (nodes enforce their own policy; the auditor checks it held).
"""

from __future__ import annotations

from pathlib import Path

from privacy.audit.context import AuditContext, first_and_more, short
from privacy.audit.recompute import recompute_total
from privacy.audit.result import EPSILON_TOLERANCE, FAIL, PASS, PLD_TOLERANCE, SKIP, WARN
from privacy.events import EventError, dpsgd_params, event_from_proto
from privacy.policy import Policy, PolicyError, load_policy
from privacy.release import AGGREGATE_KINDS_EXEMPT, THRESHOLD_PREFIX, ddg_params_of, ddg_shares_of
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
    thresholds, cache = _Thresholds(), dict[bytes, float | None]()
    for entry in entries:
        _entry_problems(entry, policy, h, last=entry.body.seq == entries[-1].body.seq, pp=pp, warns=warns,
                        thresholds=thresholds, cache=cache)
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
                "every kind's rules hold (allowed kinds, per-query cap, min_contributors tests, DP-SGD floors)", node.node_id, warns)


def find_policy(root: Path, node: bundle_pb2.BundleNode, policies: dict) -> Path | None:
    """The policy text for `node`: given by the auditor (by node id or name), else the bundle's copy."""
    for key in (node.node_id, node.name):
        if key in policies:
            return Path(policies[key])
    p = root / "policies" / f"{node.node_id}.toml"
    return p if p.exists() else None


def _base_kind(kind: str) -> str:
    """The policy's name of a ledger release kind: "query:coverage" and "coverage" are both "coverage";
    a noisy threshold test "threshold:<kind>" belongs to <kind>."""
    kind = kind.split(":", 1)[1] if kind.startswith(THRESHOLD_PREFIX) else kind
    return kind.split(":", 1)[1] if kind.startswith("query:") else kind


def _own_epsilon(body: ledger_pb2.LedgerEntryBody, delta: float, cache: dict) -> float | None:
    """The entry's own epsilon at `delta` (as the release gate computed it), memoised per event; None if invalid."""
    key = body.event.SerializeToString(deterministic=True)
    if key not in cache:
        try:
            event_from_proto(body.event)  # validates; the figure is the auditor's own recomputation (dp_accounting)
            cache[key] = min(recompute_total([body.event], delta))
        except (EventError, ValueError, TypeError, NotImplementedError):
            cache[key] = None  # an invalid event already FAILs the epsilon check
    return cache[key]


class _Thresholds:
    """The noisy min_contributors tests seen so far, by (kind, round id), each usable by one release."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, str], int] = {}
        self.plans: set[str] = set()

    def see(self, b: ledger_pb2.LedgerEntryBody, policy: Policy, pp: list[str]) -> None:
        kind = _base_kind(b.release_kind)
        if b.release_kind.startswith(THRESHOLD_PREFIX):
            self.open[(kind, b.round_id)] = self.open.get((kind, b.round_id), 0) + 1
            return
        if b.contributors and b.contributors < policy.min_contributors:  # an old entry's exact count
            pp.append(f"seq {b.seq}: {kind} released with {b.contributors} contributors, under the policy's "
                      f"min_contributors {policy.min_contributors}")
        if policy.min_contributors_noise <= 0 or not b.schedule:
            return  # an exact threshold leaves no entry; a ledger from before issue 10 has none
        if kind == "train":  # one test per plan, before its first release (at its first round, or at the round
            # whose release a crash or refusal cut short: any round of the same federation)
            if b.plan_id in self.plans:
                return
            self.plans.add(b.plan_id)
            fed = b.round_id.rsplit("/", 1)[0]
            if any(k == "train" and r.rsplit("/", 1)[0] == fed for k, r in self.open):
                return
        if self.open.get((kind, b.round_id), 0) > 0:
            self.open[(kind, b.round_id)] -= 1
        else:
            pp.append(f"seq {b.seq}: {kind} released without its noisy min_contributors test (no "
                      f"{THRESHOLD_PREFIX}{kind} entry for round {b.round_id!r}; policy rule min_contributors)")


def _entry_problems(e: ledger_pb2.LedgerEntry, policy: Policy, h: str, *, last: bool,
                    pp: list[str], warns: list[str], thresholds: _Thresholds, cache: dict) -> None:
    """Every policy rule on one entry, for every kind (training, every aggregate query, key discovery and
    their threshold tests): allowed_releases, epsilon_cap, max_query_epsilon, min_contributors, and
    DP-SGD's noise floor and sampling-rate ceiling."""
    b = e.body
    if b.policy_hash and b.policy_hash != h:
        (pp if last else warns).append(
            f"seq {b.seq}: entry's policy_hash {short(b.policy_hash)} is not the given policy's {short(h)}"
            + ("" if last else "; its per-entry rules were not checked (give that policy's text to check them)"))
        if not last:  # an earlier policy (governance changes it): its own rules held then, not the given one's;
            thresholds.see(b, policy, [])  # its threshold tests still count for the releases that follow
            return
    kind = _base_kind(b.release_kind)
    if kind not in policy.allowed_releases:
        pp.append(f"seq {b.seq}: release kind {kind!r} is not allowed by the policy (policy rule allowed_releases)")
    if b.claimed_epsilon > policy.epsilon_cap * (1 + 1e-12):
        pp.append(f"seq {b.seq}: claimed epsilon {b.claimed_epsilon:.6g} exceeds the cap {policy.epsilon_cap:g}")
    thresholds.see(b, policy, pp)
    if b.release_kind.startswith(THRESHOLD_PREFIX):
        return
    if kind not in AGGREGATE_KINDS_EXEMPT:
        own = _own_epsilon(b, policy.delta, cache)
        if own is not None and own > policy.max_query_epsilon * (1 + PLD_TOLERANCE):
            pp.append(f"seq {b.seq}: {kind} cost epsilon {own:.6g} on its own, above the policy's "
                      f"max_query_epsilon {policy.max_query_epsilon:g}")
    if kind != "train":
        return
    try:
        ev = event_from_proto(b.event)
        sgd, ddg = dpsgd_params(ev), ddg_params_of(ev)  # local DP-SGD, or a distributed step (--dp distributed)
    except (EventError, ValueError):
        sgd = ddg = None  # an invalid event already FAILs the epsilon check
    if sgd is None and ddg is None:  # the release gate only ever writes one DP-SGD event for a train release
        pp.append(f"seq {b.seq}: a train release must be one DP-SGD event (privacy.events.dpsgd_event or "
                  "privacy.distributed_dp.ddg_event)")
    else:
        z, q = (sgd.noise_multiplier, sgd.sampling_probability) if sgd is not None else ddg  # type: ignore[misc]
        if z < policy.min_noise_multiplier * (1 - 1e-12):
            pp.append(f"seq {b.seq}: noise multiplier {z:.4g} is below the policy floor {policy.min_noise_multiplier:g}")
        if q > policy.max_sampling_rate * (1 + 1e-12):
            pp.append(f"seq {b.seq}: sampling rate {q:.4g} is above the policy ceiling {policy.max_sampling_rate:g}")
        if ddg is not None and (shares := ddg_shares_of(ev)) is not None and shares > policy.trust.min_honest_nodes:
            pp.append(f"seq {b.seq}: noise shares sized for {shares} honest nodes, more than the policy's "
                      f"trust.min_honest_nodes {policy.trust.min_honest_nodes}")
