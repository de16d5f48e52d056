"""The auditor's report (`cairn audit report`): ONE self-contained HTML page.

Per-node epsilon over the rounds (claimed and independently recomputed; an embedded PNG, matplotlib
Agg), a table of every mechanism with its parameters, the assumptions in plain words, and every
verification check with PASS / FAIL / WARN / SKIP (templates/audit_report.html.j2). No external
resources: it opens offline. It presents an `AuditResult` (privacy/audit/) and decides nothing.
"""

from __future__ import annotations

from pathlib import Path

from privacy.audit.result import EPSILON_TOLERANCE, FAIL, PASS, PLD_TOLERANCE, SKIP, WARN, AuditResult
from privacy.reports import data_uri, png_of, pyplot, render

AUDIT_ASSUMPTIONS = [
    "The unit of privacy is one contributor (a person): each guarantee covers adding or removing all of "
    "one person's data at that community's node.",
    "Epsilon is cumulative over every release in a node's ledger, at the node's declared delta. The coordinator "
    "chose each release after seeing earlier answers, so a node's cumulative claim is a Renyi DP privacy "
    "filter's figure (method rdp-filter, schedule adaptive): the cap it is held to is a (cap, delta) guarantee "
    "whatever was chosen adaptively. The tight PLD figure is shown only for a training plan committed in the "
    "ledger before its first round (method pld, fixed in advance). Ledgers written before this distinction "
    "claim PLD figures for parameters fixed in advance (legacy entries, flagged). The auditor recomputes every "
    "figure from the logged DP events alone with Google's dp_accounting, independently of the node's code.",
    f"A claim passes only when it is not below its recomputation beyond floating-point noise (relative "
    f"{EPSILON_TOLERANCE:g} for filter figures, {PLD_TOLERANCE:g} for PLD figures on the fine grid); a claim "
    "above it is safe (only loose). The same holds a recomputed epsilon to the cap, and a delta to the "
    "policy's ceiling (max_delta, default 1e-5).",
    "The DP events say what noise was added to what. The audit trusts that each node actually ran the "
    "mechanism its signed ledger describes; the empirical probe (cairn audit probe) tests that for DP-SGD.",
    "Signatures prove that an entry came from the holder of the node's Ed25519 key; the hash chain and the "
    "head pinned in the manifest prove that no entry was altered, dropped, reordered or inserted since.",
    "The coordinator's signature on the manifest names who published the bundle only when the auditor pinned "
    "the coordinator's published key; it cannot make the coordinator honest (the ledgers, lineage and recomputed "
    "epsilons stand against that). The node ids are the communities' only when the auditor pinned them too.",
    "Each community's epsilon cap is checkable only against its policy text (each entry carries the policy's "
    "hash); without it the cap check is marked SKIP.",
    "Epsilon and delta are per community. A person who contributes to several communities is protected by "
    "each community's guarantee separately; across communities the losses compose, so their total is at most "
    "the sum of the epsilons (and of the deltas). No node, and no single figure here, accounts for that.",
]

COLORS = {PASS: "#1a7f37", FAIL: "#c62828", WARN: "#b26a00", SKIP: "#666"}


def plot_epsilon_over_rounds(result: AuditResult) -> bytes:
    """PNG: per node, claimed (solid) and recomputed (dashed, x) cumulative epsilon after each of
    its ledger entries (nodes release different things, so the x axis is each node's own release
    count); caps where known."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    most = 0
    for i, n in enumerate(result.nodes):
        color = f"C{i % 10}"
        xs = list(range(1, len(n.entries) + 1))
        ax.plot([0, *xs], [0.0, *[e.claimed_epsilon for e in n.entries]], "-o", color=color, label=f"{n.name} claimed")
        rec = [e.recomputed_epsilon for e in n.entries]
        if rec and all(r is not None for r in rec):
            ax.plot([0, *xs], [0.0, *rec], "--x", color=color, alpha=0.8, label=f"{n.name} recomputed")
        if n.epsilon_cap is not None:
            ax.axhline(n.epsilon_cap, color=color, linestyle=":", linewidth=1, label=f"{n.name} cap {n.epsilon_cap:g}")
        most = max(most, len(n.entries))
    ax.set_xticks(range(most + 1))
    ax.set_xticklabels(["start", *map(str, range(1, most + 1))], fontsize=8)
    ax.set_xlabel("releases so far in the node's ledger (training rounds, queries)")
    ax.set_ylabel("cumulative epsilon")
    ax.set_title("Epsilon per node over the rounds: claimed vs independently recomputed")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return png_of(fig)


def render_audit_html(result: AuditResult, bundle: Path | str | None = None) -> str:
    """The report page of `result` (`bundle`: the path to show, default the result's)."""
    return render(
        "audit_report.html.j2", r=result, bundle=str(bundle or result.bundle),
        verdict="VERIFIED" if result.ok else "NOT VERIFIED",
        counts={s: sum(1 for c in result.checks if c.status == s) for s in (PASS, FAIL, WARN, SKIP)},
        colors=COLORS, assumptions=AUDIT_ASSUMPTIONS, plot=data_uri(plot_epsilon_over_rounds(result)),
        ddg=distributed_entries(result))


def distributed_entries(result: AuditResult) -> list:
    """(node, entry) of every distributed DP entry whose two guarantees the auditor recomputed (issue 11)."""
    return [(n, x) for n in result.nodes for x in n.entries if "ddg_trust_epsilon" in x.params]
