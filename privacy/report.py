"""Budget summaries and the privacy report (Markdown, self-contained HTML, PNG plot).

Plain words first: what the numbers mean, who is protected, what is assumed.
"""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from pathlib import Path

from privacy.accountant import epsilon_of
from privacy.events import event_from_proto, event_to_dict
from privacy.ledger import Ledger
from privacy.policy import Policy

ASSUMPTIONS = [
    "The unit of privacy is one contributor (a person): every release bounds how much any one "
    "person can change it, and the guarantee covers adding or removing all of one person's data.",
    "Epsilon is cumulative over every release in the ledger, at the policy's delta, computed by the "
    "named accountant with pessimistic rounding (never under-reported).",
    "Noise for aggregate statistics comes from secure integer samplers (discrete Gaussian / discrete "
    "Laplace with cryptographic randomness); training noise is DP-SGD's Gaussian noise.",
    "Contributor counts recorded in the ledger are not themselves noised; the policy only releases "
    "when at least the minimum number of contributors took part.",
    "Per-kind and per-round epsilons are each kind's or round's releases accounted alone; they do not "
    "add up to the total, which is accounted jointly (composition is sublinear).",
    "Guarantees hold if the node's software and key are not compromised; the signed, hash-chained "
    "ledger lets anyone check the claims after the fact.",
]


def budget_summary(ledger: Ledger, policy: Policy) -> dict:
    entries = ledger.entries()
    events = [event_from_proto(e.body.event) for e in entries]
    total = epsilon_of(events, policy.delta)
    by_kind, by_round = defaultdict(list), defaultdict(list)
    for e, ev in zip(entries, events):
        by_kind[e.body.release_kind].append(ev)
        by_round[e.body.round_id or "(none)"].append(ev)

    def part(evs):
        r = epsilon_of(evs, policy.delta)
        return {"releases": len(evs), "epsilon": r.epsilon, "method": r.method}

    return {
        "node_id": ledger.node_id,
        "node_name": ledger.node_name,
        "unit": "contributor",
        "delta": policy.delta,
        "epsilon_cap": policy.epsilon_cap,
        "spent": total.epsilon,
        "remaining": max(0.0, policy.epsilon_cap - total.epsilon),
        "method": total.method,
        "rho": total.rho,
        "entries": len(entries),
        "by_kind": {k: part(v) for k, v in sorted(by_kind.items())},
        "by_round": {k: part(v) for k, v in sorted(by_round.items())},
        "timeline": [
            {
                "seq": e.body.seq,
                "created_at": e.body.created_at,
                "kind": e.body.release_kind,
                "round_id": e.body.round_id,
                "contributors": e.body.contributors,
                "claimed_epsilon": e.body.claimed_epsilon,
                "accountant": e.body.accountant,
                "event": event_to_dict(ev),
            }
            for e, ev in zip(entries, events)
        ],
        "policy_hash": policy.sha256(),
    }


def plot_epsilon(summary: dict, path: Path | None = None) -> bytes:
    """PNG of cumulative epsilon after each release, with the cap; written to `path` if given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = list(range(len(summary["timeline"]) + 1))
    ys = [0.0] + [t["claimed_epsilon"] for t in summary["timeline"]]
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    ax.step(xs, ys, where="post", label="cumulative epsilon")
    ax.axhline(summary["epsilon_cap"], color="crimson", linestyle="--", label=f"cap {summary['epsilon_cap']}")
    ax.set_xlabel("release (ledger entry)")
    ax.set_ylabel(f"epsilon at delta={summary['delta']:g}")
    ax.set_title(f"Privacy spent by {summary['node_name']} (unit: one contributor)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _intro(s: dict) -> list[str]:
    return [
        f"This node has spent epsilon = {s['spent']:.3f} of its cap {s['epsilon_cap']:g}, at delta = "
        f"{s['delta']:g} ({s['remaining']:.3f} remaining), over {s['entries']} release(s).",
        f"The unit of privacy is one contributor (a person). Accountant: {s['method']} "
        "(privacy loss distributions, pessimistic rounding)" + (f"; zCDP rho = {s['rho']:.4g}" if s["rho"] is not None else "") + ".",
    ]


def render_markdown(summary: dict) -> str:
    s = summary
    out = [f"# Privacy report: {s['node_name']}", "", *_intro(s), "", "## What was released", "",
           "| seq | time (UTC) | kind | round | contributors | cumulative epsilon | accountant |",
           "|---|---|---|---|---|---|---|"]
    for t in s["timeline"]:
        out.append(f"| {t['seq']} | {t['created_at']} | {t['kind']} | {t['round_id'] or '-'} | {t['contributors']} "
                   f"| {t['claimed_epsilon']:.4f} | {t['accountant']} |")
    out += ["", "## By kind (each accounted alone)", "", "| kind | releases | epsilon |", "|---|---|---|"]
    out += [f"| {k} | {v['releases']} | {v['epsilon']:.4f} |" for k, v in s["by_kind"].items()]
    out += ["", "## By round (each accounted alone)", "", "| round | releases | epsilon |", "|---|---|---|"]
    out += [f"| {k} | {v['releases']} | {v['epsilon']:.4f} |" for k, v in s["by_round"].items()]
    out += ["", "## What is assumed", ""] + [f"- {a}" for a in ASSUMPTIONS]
    out += ["", f"Node id: `{s['node_id']}`. Policy hash: `{s['policy_hash']}`.", ""]
    return "\n".join(out)


def render_html(summary: dict) -> str:
    """Self-contained HTML: the Markdown's content plus the epsilon plot as an embedded PNG."""
    s = summary
    png = base64.b64encode(plot_epsilon(s)).decode()
    e = html.escape
    rows = "".join(
        f"<tr><td>{t['seq']}</td><td>{e(t['created_at'])}</td><td>{e(t['kind'])}</td><td>{e(t['round_id'] or '-')}</td>"
        f"<td>{t['contributors']}</td><td>{t['claimed_epsilon']:.4f}</td><td>{e(t['accountant'])}</td></tr>"
        for t in s["timeline"])
    kinds = "".join(f"<tr><td>{e(k)}</td><td>{v['releases']}</td><td>{v['epsilon']:.4f}</td></tr>" for k, v in s["by_kind"].items())
    rounds = "".join(f"<tr><td>{e(k)}</td><td>{v['releases']}</td><td>{v['epsilon']:.4f}</td></tr>" for k, v in s["by_round"].items())
    assumptions = "".join(f"<li>{e(a)}</li>" for a in ASSUMPTIONS)
    intro = "".join(f"<p>{e(p)}</p>" for p in _intro(s))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Privacy report: {e(s['node_name'])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .5em}}</style></head><body>
<h1>Privacy report: {e(s['node_name'])}</h1>{intro}
<img alt="cumulative epsilon over releases" src="data:image/png;base64,{png}">
<h2>What was released</h2><table><tr><th>seq</th><th>time (UTC)</th><th>kind</th><th>round</th><th>contributors</th>
<th>cumulative epsilon</th><th>accountant</th></tr>{rows}</table>
<h2>By kind (each accounted alone)</h2><table><tr><th>kind</th><th>releases</th><th>epsilon</th></tr>{kinds}</table>
<h2>By round (each accounted alone)</h2><table><tr><th>round</th><th>releases</th><th>epsilon</th></tr>{rounds}</table>
<h2>What is assumed</h2><ul>{assumptions}</ul>
<p>Node id: <code>{e(s['node_id'])}</code>. Policy hash: <code>{e(s['policy_hash'])}</code>.</p>
</body></html>
"""
