"""The coordinator's side of aggregate queries: build them, send them, sum the DP answers.

A query (protos/query.proto) names a kind and its PUBLIC partitions: model names, languages,
rating dimensions and topic labels from the fixed public lists below (or the operator's own lists:
never read from any node's data). Every node answers through its own release gate
(node/queries.py): bounded per contributor, discrete Gaussian noise, a ledger entry first. The
coordinator sums the answers cell by cell — plainly, or with SecAgg+ (privacy/secure_aggregation.py)
so that only the sum is seen — and records for each answer its noise scale, epsilon and the
ledger entry (node id, seq, entry hash) that accounted for it: the lineage of every statistic.

The cell layout of each kind (`partitions`) is the wire contract shared with node/queries.py
(coordinator/ and node/ do not import each other); tests/node/test_queries.py checks they agree.
A node that refuses (policy, budget) is left out of that query; the phase completes without it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from itertools import combinations

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, RecordDict  # noqa: F401  (RecordDict used below)

from protos import query_pb2

log = logging.getLogger("cairn.coordinator")

QUERY_KINDS = ("battle_counts", "thumbs_rates", "rating_histogram", "coverage", "implicit_feedback")
OUTCOMES = ("a", "b", "tie", "both_bad")
THUMBS = ("up", "down")
SIGNALS = ("thanks", "correction", "rephrase")

# Public vocabularies (labels only; nothing here comes from a node's data).
PUBLIC_MODELS = (
    # Tulu-1 human eval (Wang et al. 2023)
    "chatgpt", "tulu_65B", "tulu_7B", "tulu_human_only_65B",
    # PandaLM human test set (Wang et al. 2023)
    "bloom-7b", "cerebras-gpt-6.7B", "llama-7b", "opt-7b", "pythia-6.9b",
    # common Chatbot Arena names
    "gpt-4", "gpt-3.5-turbo", "claude-v1", "claude-instant-v1", "vicuna-13b", "koala-13b", "alpaca-13b",
    "llama-13b", "oasst-pythia-12b", "chatglm-6b", "dolly-v2-12b", "fastchat-t5-3b", "stablelm-tuned-alpha-7b",
)
PUBLIC_LANGUAGES = ("en", "fr", "es", "de", "it", "pt", "nl", "ru", "zh", "ja", "ko", "ar", "hi", "sw", "yo", "unknown")
PUBLIC_DIMENSIONS = ("overall", "helpfulness", "correctness", "coherence", "complexity", "verbosity", "harmlessness",
                     "honesty", "instruction_following", "fluency", "relevance", "safety", "factuality")
PUBLIC_TOPICS = ("health", "law", "code", "math", "writing", "science", "business", "everyday", "other")
SECAGG_CLIP = 1 << 19  # integer cells in [-2^19, 2^19] are summed exactly: one quantization level per unit
SECAGG_LEVELS = 1 << 20


def partitions(kind: str, params: dict) -> list[tuple[str, ...]]:
    """The cells of a query, in answer order (the same rule as node/queries.partitions)."""
    lst = lambda name: list(dict.fromkeys(json.loads(params.get(name) or "[]")))  # noqa: E731
    if kind == "battle_counts":
        return [(a, b, o) for a, b in combinations(sorted(lst("models")), 2) for o in OUTCOMES]
    if kind == "thumbs_rates":
        return [(m, t) for m in lst("models") for t in THUMBS]
    if kind == "rating_histogram":
        bins = int(params.get("bins") or 5)
        return [(d, str(i)) for d in lst("dimensions") for i in range(bins)]
    if kind == "coverage":
        return ([("language", x) for x in lst("languages")] + [("model", x) for x in lst("models")]
                + [("topic", x) for x in lst("topics")])
    if kind == "implicit_feedback":
        return [(s,) for s in SIGNALS]
    raise ValueError(f"unknown query kind {kind!r} (known: {', '.join(QUERY_KINDS)})")


def build_query(kind: str, epsilon: float, round_id: str = "", *, models=None, languages=None, dimensions=None,
                topics=None, bins: int = 5, bounds: tuple[int, int] | None = None, secagg: bool = False) -> query_pb2.Query:
    if kind not in QUERY_KINDS:
        raise ValueError(f"unknown query kind {kind!r} (known: {', '.join(QUERY_KINDS)})")
    models = list(models or PUBLIC_MODELS)
    params: dict[str, str] = {}
    if kind in ("battle_counts", "thumbs_rates"):
        params["models"] = json.dumps(sorted(models))
    elif kind == "rating_histogram":
        params["dimensions"] = json.dumps(list(dimensions or PUBLIC_DIMENSIONS))
        params["bins"] = str(int(bins))
    elif kind == "coverage":
        params["languages"] = json.dumps(list(languages or PUBLIC_LANGUAGES))
        params["models"] = json.dumps(sorted(models))
        params["topics"] = json.dumps(list(topics or PUBLIC_TOPICS))
    if bounds:
        params["max_partitions"], params["max_rows_per_partition"] = str(int(bounds[0])), str(int(bounds[1]))
    return query_pb2.Query(name=kind, params=params, epsilon=float(epsilon), round_id=round_id, secagg=secagg)


@dataclass
class QueryResult:
    """One query across the federation: every node's answer (or refusal) and the pooled sum."""

    kind: str
    query: dict  # name, params, epsilon
    keys: list[tuple]
    answers: dict = field(default_factory=dict)  # node_id -> answer facts (values unless secagg)
    refused: dict = field(default_factory=dict)  # node_id -> reason
    pooled: list[int] | None = None  # summed noisy cells (keys order), None if nobody answered
    pooled_variance: float = 0.0  # per-cell variance of the summed DP noise
    secagg: bool = False

    def sources(self) -> list[dict]:
        """Ledger entries the pooled answer derives from (lineage)."""
        return [{"node_id": nid, "ledger_seq": a["ledger_seq"], "ledger_entry_hash": a["ledger_entry_hash"]}
                for nid, a in sorted(self.answers.items()) if a.get("in_sum", True)]

    def pooled_items(self) -> list[tuple[tuple, int]]:
        return list(zip(self.keys, self.pooled or []))

    def to_dict(self, names: dict[str, str] | None = None) -> dict:
        names = names or {}
        per_node = {}
        for nid, a in sorted(self.answers.items()):
            d = {k: v for k, v in a.items() if k != "values"}
            d["name"] = names.get(nid, "")
            if a.get("values") is not None:
                d["cells"] = [{"key": list(k), "value": v} for k, v in zip(self.keys, a["values"])]
            per_node[nid] = d
        return {
            "query": self.query,
            "secure_aggregation": self.secagg,
            "pooled": None if self.pooled is None else [{"key": list(k), "value": v} for k, v in zip(self.keys, self.pooled)],
            "pooled_noise_variance_per_cell": self.pooled_variance,
            "pooled_noise_sd_per_cell": self.pooled_variance ** 0.5,
            "answers": per_node,
            "refused": {nid: r for nid, r in sorted(self.refused.items())},
        }


def noise_variance(mechanism: str, scale: float) -> float:
    """Variance of one cell's noise. Discrete Gaussian: sigma^2 bounds it from above (CKS 2020,
    Cor. 9), so intervals built on it are conservative. Discrete Laplace: 2r/(1-r)^2, r = e^(-1/t)."""
    if mechanism == "discrete_laplace":
        r = np.exp(-1.0 / scale)
        return float(2 * r / (1 - r) ** 2)
    return float(scale) ** 2


def run_queries(grid, nodes: list[int], infos: dict[int, dict], queries: list[query_pb2.Query], send, secure_sum=None,
                cfg=None, timeout=None) -> tuple[list[QueryResult], dict[str, dict]]:
    """Send each query to every node as a `query.aggregate` message and sum the answers.

    `send(grid, kind, nodes, contents, group, timeout)` and `secure_sum(grid, nodes, cfg, dim, group)` are
    the ServerApp's transport (coordinator/server_app.py). Returns the results and each node's public
    policy facts (licences, caps) from its replies, for the data card."""
    results, policies = [], {}
    for q in queries:
        keys = partitions(q.name, dict(q.params))
        res = QueryResult(q.name, {"name": q.name, "params": dict(sorted(q.params.items())), "epsilon": q.epsilon},
                          keys, secagg=bool(q.secagg))
        data = q.SerializeToString(deterministic=True)
        reps = send(grid, "query.aggregate", nodes, {n: RecordDict({"query": ConfigRecord({"query": data})}) for n in nodes},
                    f"query-{q.name}", timeout)
        ok: dict[int, query_pb2.Answer] = {}
        for n, rep in reps.items():
            nid = infos[n]["node_id"]
            if "policy" in rep.content:
                policies[nid] = {k: (list(v) if isinstance(v, list) else v) for k, v in rep.content["policy"].items()}
            status = rep.content["status"] if "status" in rep.content else None
            if status is not None and not status["ok"]:
                res.refused[nid] = str(status["refused"])
                log.debug("query %s: node %s refused: %s", q.name, nid[:12], res.refused[nid])
                continue
            ans = query_pb2.Answer.FromString(bytes(rep.content["answer"]["answer"]))
            ok[n] = ans
            cells = {tuple(c.key): int(c.value) for c in ans.cells}
            res.answers[nid] = {
                "ledger_seq": int(ans.ledger_seq), "ledger_entry_hash": bytes(ans.ledger_entry_hash).hex(),
                "epsilon": ans.epsilon, "delta": ans.delta, "mechanism": ans.mechanism, "noise_scale": ans.noise_scale,
                "noise_variance_per_cell": noise_variance(ans.mechanism, ans.noise_scale),
                "sensitivity": int(ans.sensitivity), "max_partitions": int(ans.max_partitions), "cached": ans.cached,
                "values": None if q.secagg else [cells.get(k, 0) for k in keys],
            }
        for n in set(nodes) - set(reps):
            res.refused.setdefault(infos[n]["node_id"], "no reply (node failed or timed out)")
        if q.secagg and len(ok) >= 2 and secure_sum is not None:
            from privacy.secure_aggregation import SecAggError

            scfg = replace(cfg, secagg_clip=float(SECAGG_CLIP), secagg_levels=SECAGG_LEVELS)
            try:
                total, contributed = secure_sum(grid, sorted(ok), scfg, len(keys), f"secagg-query-{q.name}")
                res.pooled = [int(round(x)) for x in total]
                used = {infos[n]["node_id"] for n in contributed}
            except SecAggError as e:
                log.warning("query %s: secure aggregation failed: %s", q.name, e)
                used = set()
            for nid, a in res.answers.items():
                a["in_sum"] = nid in used
        elif q.secagg and ok:
            log.warning("query %s: secure aggregation needs 2 answers, got %d; no pooled answer", q.name, len(ok))
            for a in res.answers.values():
                a["in_sum"] = False
        elif ok:
            res.pooled = [int(sum(a["values"][i] for a in res.answers.values())) for i in range(len(keys))]
        res.pooled_variance = float(sum(a["noise_variance_per_cell"] for a in res.answers.values() if a.get("in_sum", True)))
        results.append(res)
    return results, policies

