"""The coordinator's side of aggregate queries: build them, send them, sum the DP answers.

A query (protos/query.proto) names a kind and its PUBLIC partitions: model names, languages and
rating dimensions from the operator's own lists or released by the nodes' private key selection
(coordinator/discovery.py), topic labels from the fixed public list of protos/wire.py. Every node answers through its own release gate
(node/queries.py): bounded per contributor, discrete Gaussian noise, a ledger entry first. The
coordinator sums the answers cell by cell — plainly, or with SecAgg+ (privacy/secagg/)
so that only the sum is seen — and records for each answer its noise scale, epsilon and the
ledger entry (node id, seq, entry hash) that accounted for it: the lineage of every statistic.

The query kinds, parameters and cell layout of each kind (`partitions`) are the wire contract
(protos/wire.py), which node/queries.py answers over: coordinator/ and node/ do not import each other.
A node that refuses (policy, budget) is left out of that query; the phase completes without it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace

import numpy as np
from flwr.app import ConfigRecord, RecordDict

from coordinator.datacard import interval
from protos import query_pb2
from protos.wire import (
    DEFAULT_BINS,
    PUBLIC_TOPICS,
    QUERY_KINDS,
    Key,
    MessageType,
    Param,
    Record,
    partitions,
)

log = logging.getLogger("cairn.coordinator")

SECAGG_CLIP = 1 << 19  # integer cells in [-2^19, 2^19] are summed exactly: one quantization level per unit
SECAGG_LEVELS = 1 << 20


def build_query(kind: str, epsilon: float, round_id: str = "", *, models=None, languages=None, dimensions=None,
                topics=None, bins: int = DEFAULT_BINS, bounds: tuple[int, int] | None = None,
                secagg: bool = False) -> query_pb2.Query:
    """A `kind` query over public labels, asking `epsilon` of each node; `bounds` (max_partitions,
    max_rows_per_partition) overrides the nodes' defaults. Model names, languages and dimensions are
    the operator's lists or those found by private key selection (coordinator/discovery.py): there is
    no built-in fallback, and a kind left without its labels is a ValueError saying so. Topics
    default to the fixed public list the nodes assign (protos/wire.py PUBLIC_TOPICS)."""
    if kind not in QUERY_KINDS:
        raise ValueError(f"unknown query kind {kind!r} (known: {', '.join(QUERY_KINDS)})")
    models, languages, dimensions = list(models or []), list(languages or []), list(dimensions or [])
    params: dict[str, str] = {}
    if kind in ("battle_counts", "thumbs_rates"):
        if len(models) < (2 if kind == "battle_counts" else 1):
            raise ValueError(f"{kind}: no model names to count ({len(models)} given or discovered): pass --model "
                             "names, or let the nodes' private key selection find them")
        params[Param.MODELS] = json.dumps(sorted(models))
    elif kind == "rating_histogram":
        if not dimensions:
            raise ValueError("rating_histogram: no rating dimensions to count (none given or discovered): pass "
                             "--dimension names, or let the nodes' private key selection find them")
        params[Param.DIMENSIONS] = json.dumps(dimensions)
        params[Param.BINS] = str(int(bins))
    elif kind == "coverage":
        if languages:
            params[Param.LANGUAGES] = json.dumps(languages)
        if models:
            params[Param.MODELS] = json.dumps(sorted(models))
        params[Param.TOPICS] = json.dumps(list(topics or PUBLIC_TOPICS))
    if bounds:
        params[Param.MAX_PARTITIONS], params[Param.MAX_ROWS_PER_PARTITION] = str(int(bounds[0])), str(int(bounds[1]))
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
        """(cell key, pooled noisy count) pairs; empty when nobody answered."""
        return list(zip(self.keys, self.pooled or []))

    def to_dict(self, names: dict[str, str] | None = None) -> dict:
        """The statistics.json form: the query, the pooled cells and their noise, every answer and refusal."""
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
            # unbiased: the sum of the nodes' unclamped noisy answers, with its 95% interval (datacard.interval)
            "pooled": None if self.pooled is None else [
                {"key": list(k), "value": v, **{f: iv[f] for f in ("ci95", "spans_zero")}}
                for k, v in zip(self.keys, self.pooled) for iv in [interval(v, self.pooled_variance)]],
            "pooled_noise_variance_per_cell": self.pooled_variance,
            "pooled_noise_sd_per_cell": self.pooled_variance ** 0.5,
            "answers": per_node,
            "refused": {nid: r for nid, r in sorted(self.refused.items())},
        }


def noise_variance(mechanism: str, scale: float) -> float:
    """Variance of one cell's noise. Discrete Gaussian: sigma^2 bounds it from above (Canonne, Kamath
    & Steinke 2020, "The Discrete Gaussian for Differential Privacy", https://arxiv.org/abs/2004.00010,
    Corollary 9), so intervals built on it are conservative. Discrete Laplace: 2r/(1-r)^2, r = e^(-1/t)."""
    if mechanism == "discrete_laplace":
        r = np.exp(-1.0 / scale)
        return float(2 * r / (1 - r) ** 2)
    return float(scale) ** 2


def run_queries(grid, nodes: list[int], infos: dict[int, dict], queries: list[query_pb2.Query], send, secure_sum=None,
                cfg=None, timeout=None) -> tuple[list[QueryResult], dict[str, dict]]:
    """Send each query to every node as a `MessageType.AGGREGATE` message and sum the answers.

    `send(grid, kind, nodes, contents, group, timeout)` and `secure_sum(grid, nodes, cfg, dim, group)` are
    the ServerApp's transport (coordinator/server_app.py). Returns the results and each node's public
    policy facts (licences, caps) from its replies, for the data card."""
    results, policies = [], {}
    for q in queries:
        keys = partitions(q.name, dict(q.params))
        res = QueryResult(q.name, {"name": q.name, "params": dict(sorted(q.params.items())), "epsilon": q.epsilon},
                          keys, secagg=bool(q.secagg))
        data = q.SerializeToString(deterministic=True)
        reps = send(grid, MessageType.AGGREGATE, nodes,
                    {n: RecordDict({Record.QUERY: ConfigRecord({Key.QUERY: data})}) for n in nodes},
                    f"query-{q.name}", timeout)
        ok: dict[int, query_pb2.Answer] = {}
        for n, rep in reps.items():
            nid = infos[n][Key.NODE_ID]
            if Record.POLICY in rep.content:
                facts = rep.content[Record.POLICY]
                policies[nid] = {k: (list(v) if isinstance(v, list) else v) for k, v in facts.items()}
            status = rep.content[Record.STATUS] if Record.STATUS in rep.content else None
            if status is not None and not status[Key.OK]:
                res.refused[nid] = str(status[Key.REFUSED])
                log.debug("query %s: node %s refused: %s", q.name, nid[:12], res.refused[nid])
                continue
            ans = query_pb2.Answer.FromString(bytes(rep.content[Record.ANSWER][Key.ANSWER]))
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
            res.refused.setdefault(infos[n][Key.NODE_ID], "no reply (node failed or timed out)")
        if q.secagg and len(ok) >= 2 and secure_sum is not None:
            from privacy.secagg.constants import SecAggError

            scfg = replace(cfg, secagg_clip=float(SECAGG_CLIP), secagg_levels=SECAGG_LEVELS)
            try:
                total, contributed = secure_sum(grid, sorted(ok), scfg, len(keys), f"secagg-query-{q.name}")
                res.pooled = [int(round(x)) for x in total]
                used = {infos[n][Key.NODE_ID] for n in contributed}
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

