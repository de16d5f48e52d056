"""The auditor's report (`cairn audit report`): ONE self-contained HTML page.

Per-node epsilon over the rounds (claimed and independently recomputed; an embedded PNG, matplotlib
Agg), a table of every mechanism with its parameters, the assumptions in plain words, and every
verification check with PASS / FAIL / WARN / SKIP. No external resources: it opens offline.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from privacy.audit import EPSILON_TOLERANCE, FAIL, PASS, SKIP, WARN, AuditResult

AUDIT_ASSUMPTIONS = [
    "The unit of privacy is one contributor (a person): each guarantee covers adding or removing all of "
    "one person's data at that community's node.",
    "Epsilon is cumulative over every release in a node's ledger, at the node's declared delta. The auditor "
    "recomputes it from the logged DP events alone with Google's dp_accounting (privacy loss distributions, "
    "pessimistic rounding; Renyi DP as a second bound), independently of the node's own accountant code.",
    f"A claim passes when it is not below the recomputed epsilon by more than {EPSILON_TOLERANCE:.0%}; a claim "
    "above it is safe (only loose).",
    "The DP events say what noise was added to what. The audit trusts that each node actually ran the "
    "mechanism its signed ledger describes; the empirical probe (cairn audit probe) tests that for DP-SGD.",
    "Signatures prove that an entry came from the holder of the node's Ed25519 key; the hash chain and the "
    "head pinned in the manifest prove that no entry was altered, dropped, reordered or inserted since.",
    "The coordinator's signature on the manifest names who published the bundle only when the auditor pinned "
    "the coordinator's published key; it cannot make the coordinator honest (the ledgers, lineage and recomputed "
    "epsilons stand against that). The node ids are the communities' only when the auditor pinned them too.",
    "Each community's epsilon cap is checkable only against its policy text (each entry carries the policy's "
    "hash); without it the cap check is marked SKIP.",
    "Guarantees are per community. A person who contributes to several communities is protected by each "
    "community's guarantee separately; their total is at most the sum.",
]

_COLORS = {PASS: "#1a7f37", FAIL: "#c62828", WARN: "#b26a00", SKIP: "#666"}


def plot_epsilon_over_rounds(result: AuditResult) -> bytes:
    """PNG: per node, claimed (solid) and recomputed (dashed, x) cumulative epsilon after each of
    its ledger entries (nodes release different things, so the x axis is each node's own release
    count); caps where known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def render_audit_html(result: AuditResult, bundle: Path | str | None = None) -> str:
    e = html.escape
    bundle = str(bundle or result.bundle)
    png = base64.b64encode(plot_epsilon_over_rounds(result)).decode()
    verdict = "VERIFIED" if result.ok else "NOT VERIFIED"
    counts = {s: sum(1 for c in result.checks if c.status == s) for s in (PASS, FAIL, WARN, SKIP)}
    node_rows = "".join(
        f"<tr><td>{e(n.name)}</td><td><code>{e(n.node_id[:16])}…</code></td><td>{n.claimed_epsilon:.4f}</td>"
        f"<td>{_fmt(n.recomputed_epsilon)}</td><td>{'-' if n.epsilon_cap is None else f'{n.epsilon_cap:g}'}</td>"
        f"<td>{n.delta:g}</td><td>{e(n.accountant)}</td><td>{len(n.entries)}</td></tr>"
        for n in result.nodes)
    mech_rows = "".join(
        f"<tr><td>{e(n.name)}</td><td>{x.seq}</td><td>{e(x.release_kind)}</td><td>{e(x.round_id or '-')}</td>"
        f"<td>{e(x.mechanism)}</td><td>{x.params.get('noise_multiplier', '-') if isinstance(x.params.get('noise_multiplier'), str) else _num(x.params.get('noise_multiplier'))}</td>"
        f"<td>{_num(x.params.get('sampling_probability'))}</td><td>{x.params.get('count', 1)}</td><td>{x.contributors}</td>"
        f"<td>{x.claimed_epsilon:.4f}</td><td>{_fmt(x.recomputed_epsilon)}</td></tr>"
        for n in result.nodes for x in n.entries)
    check_rows = "".join(
        f"<tr class='{c.status.lower()}'><td style='color:{_COLORS[c.status]};font-weight:bold'>{c.status}</td>"
        f"<td>{e(c.name)}</td><td>{e(c.message)}" + (
            "<ul>" + "".join(f"<li>{e(p)}</li>" for p in c.problems[:20]) + "</ul>" if c.problems and c.status != PASS else "")
        + "</td></tr>"
        for c in result.checks)
    assumptions = "".join(f"<li>{e(a)}</li>" for a in AUDIT_ASSUMPTIONS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Cairn audit: {e(verdict)}</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto;color:#111}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:.2em .5em;font-size:.9em;vertical-align:top}}th{{background:#f3f3f3}}
.verdict{{font-size:1.6em;font-weight:bold;color:{_COLORS[PASS] if result.ok else _COLORS[FAIL]}}}
img{{max-width:100%;border:1px solid #ddd}}</style></head><body>
<h1>Cairn release audit</h1>
<p class="verdict" id="verdict">{e(verdict)}</p>
<p>Bundle <code>{e(bundle)}</code>, federation <code>{e(result.federation_id)}</code>, created {e(result.created_at)}.
{len(result.checks)} checks: {counts[PASS]} PASS, {counts[FAIL]} FAIL, {counts[WARN]} WARN, {counts[SKIP]} SKIP
(verified in {result.seconds:.1f} s).</p>
<h2>Nodes</h2>
<table id="nodes"><tr><th>node</th><th>id</th><th>claimed epsilon</th><th>recomputed epsilon</th><th>cap</th><th>delta</th>
<th>accountant</th><th>releases</th></tr>{node_rows}</table>
<h2>Epsilon over the rounds</h2>
<img alt="cumulative epsilon per node over the rounds, claimed and recomputed" src="data:image/png;base64,{png}">
<h2>Mechanisms and parameters</h2>
<table id="mechanisms"><tr><th>node</th><th>seq</th><th>kind</th><th>round</th><th>mechanism</th><th>noise multiplier</th>
<th>sampling rate q</th><th>steps / uses</th><th>contributors</th><th>claimed epsilon (cumulative)</th><th>recomputed</th></tr>{mech_rows}</table>
<h2>Verification results</h2>
<table id="checks"><tr><th>result</th><th>check</th><th>details</th></tr>{check_rows}</table>
<h2>What is assumed</h2><ul>{assumptions}</ul>
</body></html>
"""


def _num(x) -> str:
    return "-" if x is None else f"{x:.4g}"
