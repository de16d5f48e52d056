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
queries (feedback kinds, coverage). No count here is exact: every number of items is a noisy DP
answer, summed across nodes, post-processed (negatives shown as 0), with its noise standard deviation.

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


def _kind_totals(statistics: dict) -> dict[str, dict]:
    """Noisy totals per query kind and key group, from statistics.json's queries."""
    out: dict[str, dict] = {}
    for q in (statistics or {}).get("queries", []):
        if not q.get("pooled"):
            continue
        sd = q.get("pooled_noise_sd_per_cell", 0.0)
        kind = q["query"]["name"]
        groups: dict[str, float] = {}
        for c in q["pooled"]:
            key = c["key"]
            g = {"battle_counts": lambda: key[2], "thumbs_rates": lambda: key[1], "rating_histogram": lambda: key[0],
                 "coverage": lambda: f"{key[0]}:{key[1]}", "implicit_feedback": lambda: key[0]}.get(kind, lambda: "/".join(key))()
            groups[g] = groups.get(g, 0) + max(0, int(c["value"]))
        out[kind] = {"totals": groups, "noise_sd_per_cell": round(sd, 3), "cells": len(q["pooled"])}
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
        "leaderboard_models": len((leaderboard or {}).get("pooled", {}).get("models", [])),
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
        md += ["Noisy totals summed over communities (negatives shown as 0); each cell carries discrete Gaussian noise",
               "with the standard deviation shown.", "", "| query | group | noisy total | noise sd per cell |", "|---|---|---|---|"]
        for kind, t in totals.items():
            for g, v in sorted(t["totals"].items()):
                md.append(f"| {kind} | {g} | {v} | {t['noise_sd_per_cell']} |")
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
           "before noise from a secure discrete Gaussian sampler is added; epsilon is accounted per community",
           "with PLD at the delta shown. Battle counts come from every pairwise-convertible kind (pairwise,",
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
