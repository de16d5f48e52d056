"""The bundle's data card: a datasheet in Markdown with a YAML header, written into every bundle
(`datacard.md`). Its sections follow Gebru et al., "Datasheets for Datasets", Communications of the
ACM 64(12), 2021 (https://arxiv.org/abs/1803.09010): its question sections (motivation, composition, collection,
uses, distribution).

It describes what the published artifacts were made from, using only what the coordinator may
know: each community's name and declared feedback paradigm (broad or specific dimensions;
prescriptive or descriptive definitions — Kirk et al., "The Empty Signifier Problem: Towards
Clearer Paradigms for Operationalising 'Alignment' in Large Language Models", 2023,
https://arxiv.org/abs/2310.02457), its public policy facts
(licences accepted, epsilon cap, delta), its ledger's claimed epsilon, and DP counts from the
queries (feedback kinds, coverage). No count here is exact: every total is an unbiased estimate,
the sum of the nodes' unclamped noisy answers over the group's cells, with a 95% interval from the
reported noise (variance = the sum of the cells' noise variances; `interval`). A group whose interval
spans zero is reported as not distinguishable from zero, without a total: a key no node holds does
not appear with a count.

The YAML header is machine-readable (values in JSON flow style, which YAML 1.2 reads).
"""

from __future__ import annotations

import json

from protos.wire import Key

PERMISSIVE = ("CC0-1.0", "CC-BY-4.0", "Apache-2.0")
SHARE_ALIKE = ("CC-BY-SA-4.0",)


def bundle_licence(accepted: list[list[str]]) -> str:
    """Licence of the published aggregates: CC-BY-4.0 when every licence any community accepts is
    permissive, CC-BY-SA-4.0 when one is share-alike, otherwise "see communities"."""
    every = {x for lst in accepted for x in lst}
    if not every:
        return "unknown (no community reported its licences)"
    if every <= set(PERMISSIVE):
        return "CC-BY-4.0"
    if every <= set(PERMISSIVE) | set(SHARE_ALIKE):
        return "CC-BY-SA-4.0"
    return "see communities (mixed licences)"


def _yaml(obj, indent: int = 0) -> str:
    pad = " " * indent
    lines = []
    for k, v in obj.items():
        if isinstance(v, dict) and v:
            lines.append(f"{pad}{k}:")
            lines.append(_yaml(v, indent + 2))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            lines.append(f"{pad}{k}:")
            for x in v:
                inner = _yaml(x, indent + 4).splitlines()
                lines.append(f"{pad}  - {inner[0].strip()}")
                lines += inner[1:]
        else:
            lines.append(f"{pad}{k}: {json.dumps(v, ensure_ascii=False)}")
    return "\n".join(lines)


Z95 = 1.959964  # two-sided 95% normal quantile


def interval(estimate: float, variance: float, z: float = Z95) -> dict:
    """An unbiased total and its 95% interval, estimate +- z sd, from the summed noise variance.

    The sum of independent discrete Gaussian noises is approximately normal, and sigma^2 bounds
    each one's variance from above (Canonne, Kamath & Steinke 2020, "The Discrete Gaussian for
    Differential Privacy", https://arxiv.org/abs/2004.00010, Corollary 9), so the interval is
    conservative. `spans_zero`: the data cannot tell the total from zero."""
    sd = max(0.0, float(variance)) ** 0.5
    lo, hi = estimate - z * sd, estimate + z * sd
    return {"estimate": round(float(estimate), 3), "ci95": [round(lo, 3), round(hi, 3)], "sd": round(sd, 3),
            "spans_zero": bool(lo <= 0 <= hi)}


def _group(kind: str, key: list) -> str:
    return {"battle_counts": lambda: key[2], "thumbs_rates": lambda: key[1], "rating_histogram": lambda: key[0],
            "coverage": lambda: f"{key[0]}:{key[1]}", "implicit_feedback": lambda: key[0]}.get(kind, lambda: "/".join(key))()


def _kind_totals(statistics: dict) -> dict[str, dict]:
    """Per query kind and key group: the unbiased total (the sum of the group's unclamped pooled
    cells) and its interval (variance: cells x the pooled noise variance per cell)."""
    out: dict[str, dict] = {}
    for q in (statistics or {}).get("queries", []):
        if not q.get("pooled"):
            continue
        var = float(q.get("pooled_noise_variance_per_cell", q.get("pooled_noise_sd_per_cell", 0.0) ** 2))
        kind = q["query"]["name"]
        sums: dict[str, list] = {}
        for c in q["pooled"]:
            acc = sums.setdefault(_group(kind, c["key"]), [0, 0])
            acc[0] += int(c["value"])
            acc[1] += 1
        totals = {g: interval(v, n * var) for g, (v, n) in sums.items()}
        for t in totals.values():
            if t["spans_zero"]:  # no total for what the data cannot tell from zero (statistics.json keeps the cells)
                t["estimate"] = None
        out[kind] = {"totals": totals,
                     "noise_sd_per_cell": round(var ** 0.5, 3), "cells": len(q["pooled"])}
    return out


def render(federation_id: str, nodes: list[dict], policies: dict[str, dict] | None = None, statistics: dict | None = None,
           leaderboard: dict | None = None, created_at: str = "", model: bool = True) -> str:
    """nodes: the manifest's nodes (node_id, name, paradigm, claimed_epsilon, delta, accountant).
    `model`: whether the bundle carries a trained reward model."""
    policies = policies or {}
    comms = []
    for n in nodes:
        p = policies.get(n["node_id"], {})
        dims, _, defs = (n.get("paradigm") or "/").partition("/")
        comms.append({
            "name": n.get("name", ""), "node_id": n["node_id"],
            "paradigm": {"dimensions": dims or "undeclared", "definitions": defs or "undeclared"},
            "privacy": {"claimed_epsilon": round(float(n.get("claimed_epsilon", 0.0)), 4), "delta": n.get("delta"),
                        "accountant": n.get("accountant", ""), "epsilon_cap": p.get(Key.EPSILON_CAP),
                        "max_query_epsilon": p.get(Key.MAX_QUERY_EPSILON),
                        "min_contributors": p.get(Key.MIN_CONTRIBUTORS)},
            "licences_accepted": list(p.get(Key.LICENCES, [])),
        })
    totals = _kind_totals(statistics or {})
    licence = bundle_licence([c["licences_accepted"] for c in comms if c["licences_accepted"]])
    header = {
        "datacard": "cairn-datacard/1",
        "federation_id": federation_id,
        "created_at": created_at,
        "licence": licence,
        "unit_of_privacy": "contributor (one person; add/remove neighbouring relation)",
        "communities": comms,
        "feedback_dp_counts": totals,
        "leaderboard_models": len(((leaderboard or {}).get("pooled") or {}).get("models", [])),
        "reward_model": model,
    }
    md = ["---", _yaml(header), "---", "", f"# Data card: Cairn federation `{federation_id}`", ""]
    md += ["## Motivation", "",
           "Open human feedback on conversations with language models, pooled across communities that keep",
           "their members' data on their own machines. Everything here was released by each community's node",
           "only as differentially private (DP) aggregates and DP-SGD model updates, each accounted in the",
           "node's signed ledger (see `ledgers/`).", ""]
    md += ["## Composition: communities", "",
           "| community | paradigm (dimensions / definitions) | epsilon claimed | delta | cap | licences accepted |",
           "|---|---|---|---|---|---|"]
    for c in comms:
        pr = c["privacy"]
        md.append(f"| {c['name']} | {c['paradigm']['dimensions']} / {c['paradigm']['definitions']} | "
                  f"{pr['claimed_epsilon']} ({pr['accountant']}) | {pr['delta']} | {pr['epsilon_cap']} | "
                  f"{', '.join(c['licences_accepted']) or 'not reported'} |")
    md += ["", "A *broad* community rates on general dimensions (overall, helpfulness), a *specific* one on its own",
           "named dimensions; *prescriptive* definitions tell annotators what a good answer is, *descriptive* ones",
           "record what each person thinks (disagreement is signal, hence rating histograms, not means).", ""]
    md += ["## Composition: feedback (DP counts)", ""]
    if totals:
        md += ["Unbiased totals: the sum of every community's noisy answer over the group's cells, not clamped, with",
               "a 95% interval from the reported discrete Gaussian noise. Where the interval spans zero the data",
               "cannot tell the total from zero, and no total is shown.", "",
               "| query | group | estimated total | 95% interval | noise sd per cell |", "|---|---|---|---|---|"]
        for kind, t in totals.items():
            for g, v in sorted(t["totals"].items()):
                shown = "not distinguishable from 0" if v["spans_zero"] else f"{v['estimate']:.0f}"
                md.append(f"| {kind} | {g} | {shown} | [{v['ci95'][0]:.0f}, {v['ci95'][1]:.0f}] | {t['noise_sd_per_cell']} |")
    elif (statistics or {}).get("queries"):
        md.append("Aggregate queries were asked, but no community answered them (see `statistics.json`).")
    elif model:
        md.append("No aggregate queries were run in this federation: only the reward model was trained.")
    else:
        md.append("No aggregate queries were run and no training round was applied in this federation.")
    if not model:
        md += ["", "No reward model is published: no training round was applied in this federation."]
    md += ["", "## Collection process", "",
           "Communities import chats and feedback from their own tools; identifiers are pseudonymous, PII is",
           "redacted on import, text is encrypted at rest and never leaves the node. Only contributors who",
           "consented under a licence their community accepts, after its waiting period, count.", "",
           "## Preprocessing and privacy", "",
           "Each contributor's influence is bounded (a fixed number of cells, a fixed number of rows per cell)",
           "before noise from a secure discrete Gaussian sampler is added. Epsilon and delta are PER COMMUNITY:",
           "each node accounts only its own releases, at the delta shown, and enforces its cap with a privacy",
           "filter (rdp-filter, sound when the coordinator chose each release adaptively). A person who belongs",
           "to several communities is protected by each separately; across communities the losses compose (at",
           "worst the epsilons and deltas add up), which no node can account for. Battle counts come from",
           "every pairwise-convertible kind (pairwise,",
           "ranking, ratings, thumbs). Implicit feedback (thanks, corrections, rephrasings) is found in chat",
           "text by local heuristics (node/implicit.py).", "",
           "## Uses", "",
           "Intended: comparing models by community preference (the leaderboard, with intervals that include",
           "DP noise), spotting thin coverage (languages, topics), training and evaluating reward models.",
           "Not intended: any inference about individual people; ranking models on pairs whose counts did not",
           "clear the noise threshold; treating small noisy counts as exact.", "",
           "## Limitations", "",
           "- Every count is noisy; small cells may be pure noise (the noise sd is given).",
           "- Communities are self-selected; their paradigms differ, so pooled numbers mix different",
           "  definitions of a good answer. Per-community leaderboards are in `leaderboard.json`.",
           "- Contribution bounding drops some of prolific contributors' feedback, on purpose.",
           "- Implicit-feedback heuristics are simple (English-centred keywords and word overlap).", "",
           "## Distribution", "",
           f"Licence of the published aggregates: {licence}. Ledgers and public keys are published so that",
           "anyone can verify each epsilon claim (`cairn audit verify BUNDLE`).", ""]
    return "\n".join(md)
