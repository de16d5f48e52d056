"""The node's privacy report (`cairn node report`, `cairn node budget`): budget summary, Markdown,
self-contained HTML and a PNG plot of epsilon over the releases.

Plain words first: what the numbers mean, who is protected, what is assumed. The numbers come from
the node's own accountant over its ledger (privacy/accounting/); this module only presents them.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from privacy.accounting import PLAN_FIXED, adaptive_epsilon, epsilon_of
from privacy.distributed_dp import has_distributed, own_share_event
from privacy.events import event_from_proto, event_to_dict
from privacy.ledger import Ledger
from privacy.policy import Policy
from privacy.reports import data_uri, png_of, pyplot, render

ASSUMPTIONS = [
    "The unit of privacy is one contributor (a person): every release bounds how much any one "
    "person can change it, and the guarantee covers adding or removing all of one person's data.",
    "Epsilon is cumulative over every release in the ledger, at the policy's delta. The coordinator "
    "chooses each release after seeing earlier answers, so the cap is enforced by a privacy FILTER "
    "(Renyi DP filter, accountant rdp-filter, schedule adaptive): whatever was chosen adaptively, all "
    "releases together are (cap, delta)-DP. The tighter PLD figure is given only for what was fixed "
    "in advance: a training plan committed in the ledger before its first round (labelled plan-fixed).",
    "Epsilon and delta are per community. A person who belongs to several communities is protected "
    "by each community's guarantee separately; across communities the losses compose (add up, at "
    "worst), and no single node can account for that.",
    "Noise for aggregate statistics comes from secure integer samplers (discrete Gaussian / discrete "
    "Laplace with cryptographic randomness); training noise is DP-SGD's Gaussian noise.",
    "No exact count of contributors leaves the node: the ledger records none, and a release needs at "
    "least the policy's min_contributors eligible members by a NOISY count (discrete Gaussian, sigma = "
    "privacy.min_contributors_noise), itself an accounted release (the `threshold:<kind>` entries). A "
    "policy that sets that noise to 0 makes exactly one fact public: whether the threshold is met.",
    "Per-kind and per-round epsilons are each kind's or round's releases accounted alone (by the same "
    "filter); they do not add up to the total, which is accounted jointly (composition is sublinear).",
    "A distributed DP round (the distributed discrete Gaussian: each node adds a share of the noise and only the "
    "secure sum is revealed) has two guarantees. Under the node's trust assumption (at least h of the participating "
    "nodes' noise shares honest: policy trust.min_honest_nodes) the budget is charged with the first; if every other "
    "node colluded, the node's own share alone still gives the second, larger one, shown beside it.",
    "Guarantees hold if the node's software and key are not compromised; the signed, hash-chained "
    "ledger lets anyone check the claims after the fact.",
]


def budget_summary(ledger: Ledger, policy: Policy) -> dict:
    """Epsilon spent and remaining at the policy's delta, by kind and by round, and every release (JSON-able)."""
    entries = ledger.entries()
    events = [event_from_proto(e.body.event) for e in entries]
    total = adaptive_epsilon(events, policy.delta)  # what the cap is enforced against (ledger.spent)
    by_kind, by_round = defaultdict(list), defaultdict(list)
    for e, ev in zip(entries, events):
        by_kind[e.body.release_kind].append(ev)
        by_round[e.body.round_id or "(none)"].append(ev)

    def part(evs):
        r = adaptive_epsilon(evs, policy.delta)
        return {"releases": len(evs), "epsilon": r.epsilon, "method": r.method, "label": r.label}

    plans: dict[str, dict] = {}  # training plans committed before their first round: the only PLD figures
    for e in entries:
        b = e.body
        if b.plan_id and b.HasField("plan_event"):
            p = plans.setdefault(b.plan_id, {"epsilon": b.plan_epsilon, "method": b.plan_accountant, "schedule": PLAN_FIXED,
                                             "planned_rounds": b.plan_event.self_composed.count, "rounds_run": 0,
                                             "label": f"{b.plan_accountant}, fixed in advance (training plan committed "
                                                      "before its first round)"})
            p["rounds_run"] += 1

    distributed = [
        {"seq": e.body.seq, "round_id": e.body.round_id,
         "trust_epsilon": epsilon_of([ev], policy.delta).epsilon,  # this round alone, h honest shares
         "own_epsilon": epsilon_of([own_share_event(ev)], policy.delta).epsilon}  # this node's share alone
        for e, ev in zip(entries, events) if has_distributed(ev)
    ]
    own_total = adaptive_epsilon([own_share_event(ev) for ev in events], policy.delta).epsilon if distributed else None

    return {
        "node_id": ledger.node_id,
        "node_name": ledger.node_name,
        "unit": "contributor",
        "delta": policy.delta,
        "epsilon_cap": policy.epsilon_cap,
        "spent": total.epsilon,
        "remaining": max(0.0, policy.epsilon_cap - total.epsilon),
        "method": total.method,
        "fixed_in_advance": total.fixed_in_advance,
        "label": total.label,
        "rho": None,
        "entries": len(entries),
        "by_kind": {k: part(v) for k, v in sorted(by_kind.items())},
        "by_round": {k: part(v) for k, v in sorted(by_round.items())},
        "plans": plans,
        "distributed": distributed,  # issue 11: both guarantees of each distributed round
        "spent_own_share": own_total,  # the whole ledger's figure if every other node colluded (privacy filter)
        "timeline": [
            {
                "seq": e.body.seq,
                "created_at": e.body.created_at,
                "kind": e.body.release_kind,
                "round_id": e.body.round_id,
                "claimed_epsilon": e.body.claimed_epsilon,
                "accountant": e.body.accountant,
                "schedule": e.body.schedule or "fixed in advance (legacy entry)",
                "event": event_to_dict(ev),
            }
            for e, ev in zip(entries, events)
        ],
        "policy_hash": policy.sha256(),
    }


def plot_epsilon(summary: dict, path: Path | None = None) -> bytes:
    """PNG of cumulative epsilon after each release, with the cap; written to `path` if given."""
    plt = pyplot()
    xs = list(range(len(summary["timeline"]) + 1))
    ys = [0.0] + [t["claimed_epsilon"] for t in summary["timeline"]]
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    ax.step(xs, ys, where="post", label="cumulative epsilon (privacy filter, adaptive)")
    ax.axhline(summary["epsilon_cap"], color="crimson", linestyle="--", label=f"cap {summary['epsilon_cap']}")
    ax.set_xlabel("release (ledger entry)")
    ax.set_ylabel(f"epsilon at delta={summary['delta']:g}")
    ax.set_title(f"Privacy spent by {summary['node_name']} (unit: one contributor)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left")
    fig.tight_layout()
    data = png_of(fig)
    if path is not None:
        Path(path).write_bytes(data)
    return data


def render_markdown(summary: dict) -> str:
    """The report as Markdown (templates/node_report.md.j2)."""
    return render("node_report.md.j2", s=summary, assumptions=ASSUMPTIONS)


def render_html(summary: dict) -> str:
    """Self-contained HTML: the Markdown's content plus the epsilon plot as an embedded PNG."""
    return render("node_report.html.j2", s=summary, assumptions=ASSUMPTIONS, plot=data_uri(plot_epsilon(summary)))
