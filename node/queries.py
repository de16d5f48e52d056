"""Answering aggregate queries on the node: consent, contribution bounding, DP noise, the gate.

A query (protos/query.proto `Query`) names a kind and the PUBLIC partitions to count over (model
names, languages, dimension names, topic labels from a fixed public list: the coordinator sends
them, the node never reveals which keys its data holds). The node

1. reads only eligible contributors' data (node/consent.py, ARCHITECTURE.md invariant 8);
2. turns it into rows (contributor, partition) — never text: keys are public labels only;
3. bounds each contributor's influence (privacy.mechanisms.bound_contributions: at most
   `max_partitions` cells, at most `max_rows_per_partition` rows in each — ARCHITECTURE.md invariant 4);
4. adds discrete Gaussian noise from the secure sampler, calibrated to
   min(requested epsilon, the node's own per-query cap), and accounts the exact DpEvent;
5. releases through the node's ReleaseGate (policy rules, cache, durable ledger entry first).

Query kinds, their parameters and their cells are the wire contract (protos/wire.py, shared with the
coordinator). Their rows (one row = one unit counted; partition keys are tuples of strings):

| kind              | partitions (params)                              | rows                                       |
|-------------------|--------------------------------------------------|--------------------------------------------|
| battle_counts     | (m1, m2, outcome), m1 < m2 from `models`;        | one per model battle judged by a contributor|
|                   | outcome: "a" (m1 wins), "b" (m2 wins), tie, both_bad |                                        |
| thumbs_rates      | (model, "up"/"down") from `models`               | one per thumbs item                        |
| rating_histogram  | (dimension, bin) from `dimensions`, `bins`       | one per rating (value normalised to [0,1]) |
| coverage          | ("language", l), ("model", m), ("topic", t)       | one per (contributor, conversation, key)   |
| implicit_feedback | ("thanks",), ("correction",), ("rephrase",)       | one per signal in a member's chat (node/implicit.py) |

Battles from every pairwise-convertible feedback kind (each battle belongs to ONE contributor):
pairwise items directly; a ranking gives every ordered pair (earlier beats later); ratings of one
contributor on one record give, per two rated responses, a win for the higher mean rating (mean
over dimensions, each normalised to [0,1]) or a tie when equal; thumbs of one contributor on one
record give up-vs-down wins, up/up ties and down/down "both bad". Responses without a model name,
or two responses of the same model, give no battle. Labels and critiques give none.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from collections.abc import Iterable
from itertools import combinations

from node import implicit
from node.schema import Record
from privacy.accounting import epsilon_of
from privacy.accounting.calibration import discrete_gaussian_sigma_for
from privacy.mechanisms import noisy_counts
from privacy.policy import query_epsilon_problem
from privacy.release import PolicyViolation, canonical_json, request_hash
from protos import query_pb2
from protos.wire import (
    DISCOVERY_KIND,
    OUTCOMES,
    PUBLIC_TOPICS,
    QUERY_KINDS,
    THUMBS,
    Param,
    QueryError,
    int_param,
    list_param,
    partitions,
    rating_bins,
)

NOISE = "discrete_gaussian"

# Default bounding per contributor: (max_partitions, max_rows_per_partition). A query may ask for
# others; epsilon is calibrated to whatever bounds are used, so they never weaken privacy.
DEFAULT_BOUNDS = {
    "battle_counts": (6, 1),
    "thumbs_rates": (8, 2),
    "rating_histogram": (8, 2),
    "coverage": (6, 2),
    "implicit_feedback": (3, 2),
    "policy_objections": (1, 1),  # one objection per member counted
}


def bounds(kind: str, params: dict) -> tuple[int, int]:
    """(max_partitions, max_rows_per_partition) per contributor: the query's, else DEFAULT_BOUNDS."""
    mp, mr = DEFAULT_BOUNDS[kind]
    return int_param(params, Param.MAX_PARTITIONS, mp), int_param(params, Param.MAX_ROWS_PER_PARTITION, mr)


# --- rows: (contributor, partition) from records -------------------------------------------------


def _battle(out: list, contributor: str, ma: str | None, mb: str | None, outcome: str) -> None:
    """Append one battle of model ma (as 'a') against mb (as 'b') in canonical orientation."""
    if not ma or not mb or ma == mb:
        return
    if ma > mb:
        ma, mb = mb, ma
        outcome = {"a": "b", "b": "a"}.get(outcome, outcome)
    out.append((contributor, (ma, mb, outcome)))


def battle_rows(records: Iterable[Record]) -> list[tuple[str, tuple]]:
    """One (contributor, (m1, m2, outcome)) row per battle, from every pairwise-convertible kind."""
    out: list = []
    for rec in records:
        models = [r.model for r in rec.responses]
        ratings: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        thumbs: dict[str, dict[int, int]] = defaultdict(dict)
        for fb in rec.feedback:
            d = fb.data
            if fb.kind == "pairwise":
                _battle(out, fb.contributor, models[d["a"]], models[d["b"]], d["outcome"])
            elif fb.kind == "ranking":
                order = list(d["order"])
                for i, j in combinations(range(len(order)), 2):
                    _battle(out, fb.contributor, models[order[i]], models[order[j]], "a")
            elif fb.kind == "rating":
                lo, hi = d["scale"]
                ratings[fb.contributor][int(d["response"])].append((float(d["value"]) - lo) / ((hi - lo) or 1))
            elif fb.kind == "thumbs":
                thumbs[fb.contributor][int(d["response"])] = int(d["value"])
        for who, per_resp in ratings.items():
            means = {i: sum(v) / len(v) for i, v in per_resp.items()}
            for i, j in combinations(sorted(means), 2):
                o = "a" if means[i] > means[j] else "b" if means[i] < means[j] else "tie"
                _battle(out, who, models[i], models[j], o)
        for who, vals in thumbs.items():
            for i, j in combinations(sorted(vals), 2):
                vi, vj = vals[i], vals[j]
                o = "a" if vi > vj else "b" if vi < vj else ("tie" if vi > 0 else "both_bad")
                _battle(out, who, models[i], models[j], o)
    return out


def thumbs_rows(records: Iterable[Record]) -> list:
    """One (contributor, (model, "up"/"down")) row per thumbs item on a named model."""
    out = []
    for rec in records:
        for fb in rec.feedback:
            if fb.kind == "thumbs":
                m = rec.responses[fb.data["response"]].model
                if m:
                    out.append((fb.contributor, (m, THUMBS[0] if fb.data["value"] > 0 else THUMBS[1])))
    return out


def rating_bin(value: float, lo: float, hi: float, bins: int) -> int:
    """Bin of a rating on its scale: [lo, hi] cut into `bins` equal parts (hi in the last)."""
    x = (value - lo) / (hi - lo) if hi > lo else 1.0
    return min(bins - 1, max(0, int(math.floor(x * bins))))


def rating_rows(records: Iterable[Record], bins: int) -> list:
    """One (contributor, (dimension, bin)) row per rating."""
    out = []
    for rec in records:
        for fb in rec.feedback:
            if fb.kind == "rating":
                lo, hi = fb.data["scale"]
                out.append((fb.contributor, (str(fb.data["dimension"]), str(rating_bin(float(fb.data["value"]), lo, hi, bins)))))
    return out


# Topic labels: a fixed public list, assigned locally by keywords (or meta["topic"] when it is one).
TOPICS = {
    "health": ("health", "doctor", "symptom", "disease", "medic", "patient", "pain", "diet", "vaccine", "therapy"),
    "law": ("law", "legal", "court", "lawyer", "contract", "rights", "tenant", "visa", "police"),
    "code": ("code", "python", "function", "program", "javascript", "sql", "bug", "compile", "algorithm"),
    "math": ("math", "equation", "calculate", "number", "sum", "probability", "integral", "solve"),
    "writing": ("write", "essay", "poem", "story", "email", "letter", "rewrite", "summar", "translate"),
    "science": ("science", "physics", "chemistry", "biology", "climate", "planet", "energy", "atom"),
    "business": ("business", "market", "company", "customer", "sales", "job", "resume", "interview", "price"),
    "everyday": ("recipe", "cook", "travel", "movie", "music", "game", "sport", "weather", "gift"),
}
TOPIC_LABELS = PUBLIC_TOPICS  # the keyword table above, plus "other"


def topic_of(rec: Record) -> str:
    """The public topic label of a record: meta["topic"] when it is one, else by keywords, else "other"."""
    t = rec.meta.get("topic")
    if isinstance(t, str) and t in TOPIC_LABELS:
        return t
    text = rec.prompt_text().lower()
    best, hits = "other", 0
    for label, words in TOPICS.items():
        n = sum(w in text for w in words)
        if n > hits:
            best, hits = label, n
    return best


def coverage_rows(records: Iterable[Record]) -> list:
    """One row per (person, conversation, language/model/topic key); owner and contributors alike."""
    out = []
    for rec in records:
        keys = {("language", rec.language or "unknown"), ("topic", topic_of(rec))}
        keys |= {("model", r.model) for r in rec.responses if r.model}
        people = {f.contributor for f in rec.feedback} | ({rec.owner} if rec.owner else set())
        for who in sorted(people):
            out += [(who, k) for k in sorted(keys)]
    return out


def implicit_rows(records: Iterable[Record]) -> list:
    """One (owner, (signal,)) row per implicit signal in a member's chat."""
    return [(rec.owner, (s,)) for rec in records if rec.owner for s in implicit.signals(rec)]


def rows_for(kind: str, records: Iterable[Record], params: dict) -> list:
    """The rows a query of `kind` counts."""
    if kind == "battle_counts":
        return battle_rows(records)
    if kind == "thumbs_rates":
        return thumbs_rows(records)
    if kind == "rating_histogram":
        return rating_rows(records, rating_bins(params))
    if kind == "coverage":
        return coverage_rows(records)
    if kind == "implicit_feedback":
        return implicit_rows(records)
    raise QueryError(f"unknown query kind {kind!r}")


def exact_counts(kind: str, rows: Iterable, params: dict) -> dict[tuple, int]:
    """Non-private counts over the query's partitions, without bounding (tests, benchmarks)."""
    counts = dict.fromkeys(partitions(kind, params), 0)
    for _, p in rows:
        if p in counts:
            counts[p] += 1
    return counts


# --- the DP answer -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def sigma_for(epsilon: float, delta: float, sensitivity: int, cells: int) -> float:
    """Discrete Gaussian sigma for `cells` per-cell releases of sensitivity `sensitivity` costing
    `epsilon` at `delta` (PLD, the ledger's accountant); memoised, as the bisection is slow."""
    return discrete_gaussian_sigma_for(epsilon, delta, sensitivity, cells)


def dp_answer(kind: str, rows: list, params: dict, epsilon: float, delta: float, key: bytes | None = None) -> dict:
    """Bounded, noised counts for `rows` over the query's public partitions. Returns the payload
    dict (values in partition order, noise parameters, the exact event) — used by the node's
    handler through the gate, and by benchmarks directly. `key`: each person's bounding choice is
    seeded by HMAC(key, contributor) (privacy.mechanisms.bound_contributions), else fresh CSPRNG draws."""
    parts = partitions(kind, params)
    max_parts, max_rows = bounds(kind, params)
    m = min(max_parts, len(parts))
    sigma = sigma_for(float(epsilon), float(delta), int(max_rows), int(m))
    rel = noisy_counts(rows, parts, max_parts, max_rows, sigma=sigma, noise=NOISE, key=key)
    return {
        "query": kind,
        "values": [int(rel.values[p]) for p in parts],
        "noise": rel.noise,
        "noise_parameter": rel.noise_parameter,
        "sensitivity": rel.sensitivity,
        "max_partitions": m,
        "event": rel.event,
    }


def cell_count(kind: str, params: dict, max_models: int) -> int:
    """How many cells a query of `kind` asks for, counted from its parameters without building them
    (battle_counts is quadratic in its models); PolicyViolation "max_models" past the policy's bound."""
    def n(name: str, required: bool) -> int:
        labels = len(list_param(params, name, required))
        if name == Param.MODELS and labels > max_models:
            raise PolicyViolation("max_models", f"query parameter 'models' lists {labels} models, "
                                  f"the policy allows at most {max_models}")
        return labels

    if kind == "battle_counts":
        m = n(Param.MODELS, True)
        return m * (m - 1) // 2 * len(OUTCOMES)
    if kind == "thumbs_rates":
        return n(Param.MODELS, True) * len(THUMBS)
    if kind == "rating_histogram":
        return n(Param.DIMENSIONS, True) * rating_bins(params)
    if kind == "coverage":
        return n(Param.LANGUAGES, False) + n(Param.MODELS, False) + n(Param.TOPICS, False)
    return 0


def check_query_size(policy, kind: str, params: dict) -> None:
    """Refuse by rule, before any work, a query whose model list (max_models) or answer
    (max_release_cells) is larger than the policy allows: its cells are counted, not built."""
    cells = cell_count(kind, params, policy.max_models)
    if cells > policy.max_release_cells:
        raise PolicyViolation("max_release_cells", f"the query asks for {cells} cells, the policy allows at most "
                              f"{policy.max_release_cells}")
    if kind not in policy.allowed_releases:
        raise PolicyViolation("allowed_releases", f"release kind {kind!r} is not allowed by this community "
                              f"(allowed: {', '.join(policy.allowed_releases)})")


MAX_QUERY_BYTES = 1 << 20  # a query is a kind and a few labels: anything larger is refused unread


def parse_query(raw) -> query_pb2.Query:
    """The Query in a message's bytes, or QueryError naming the field (garbage bytes, wrong type, too large)."""
    from google.protobuf.message import DecodeError

    if not isinstance(raw, (bytes, bytearray)):
        raise QueryError(f"field 'query' must be bytes (a serialised Query), got {type(raw).__name__}")
    if len(raw) > MAX_QUERY_BYTES:
        raise QueryError(f"field 'query' is {len(raw)} bytes, at most {MAX_QUERY_BYTES} are read")
    try:
        q = query_pb2.Query.FromString(bytes(raw))
    except (DecodeError, ValueError, RuntimeError) as e:
        raise QueryError(f"field 'query' is not a serialised Query ({type(e).__name__})") from None
    if not q.name:
        raise QueryError("field 'query' names no query kind")
    return q


def request_of(query: query_pb2.Query) -> dict:
    """What identifies a query for the cache: kind, parameters, requested epsilon (not the round,
    not the transport), so a repeated identical query gets the earlier answer (ARCHITECTURE.md invariant 3)."""
    return {"query": query.name, "params": dict(sorted(query.params.items())), "epsilon": float(query.epsilon)}


def bounding_key(store, kind: str, query: query_pb2.Query) -> bytes:
    """The node's secret key for this query's contribution bounding: HMAC(store HMAC key, request),
    so each person's kept rows depend only on their own rows (issue 10, finding 1)."""
    return bytes.fromhex(store.cipher.ident("query-bounding", request_hash(kind, request_of(query))))


def epsilon_within_budget(asked: float, budget, policy, what: str) -> float:
    """`asked`, when the release gate's budget allows it; else a refusal naming the rule that stops it
    (the community's cap or the per-query cap)."""
    eps = min(asked, budget.max_epsilon)
    if eps < asked:
        raise PolicyViolation(
            "epsilon_cap" if budget.remaining_epsilon < asked else "max_query_epsilon",
            f"this {what} asks for epsilon {asked:g}; the node allows at most {eps:.4g} now "
            f"(per-query cap {policy.max_query_epsilon:g}, remaining {budget.remaining_epsilon:.4g} of "
            f"{policy.epsilon_cap:g})")
    return eps


def answer_query(nd, store, query: query_pb2.Query, gate=None, now=None) -> tuple[query_pb2.Answer, list[int]]:
    """Answer `query` through the node's gate. Returns (Answer, values in partition order): with
    `query.secagg` the Answer carries no values (the caller hands them to secure aggregation).
    Raises PolicyViolation (refused by the community's policy) or QueryError (malformed)."""
    from node.consent import eligible_contributors
    from node.releases import open_gate

    kind = query.name
    if kind == DISCOVERY_KIND:  # private key selection: node/discovery.py
        from node.discovery import answer_discovery

        return answer_discovery(nd, store, query, gate, now)
    if kind not in QUERY_KINDS:
        raise QueryError(f"unknown query kind {kind!r} (known: {', '.join(QUERY_KINDS)})")
    params = dict(query.params)
    policy = nd.policy()
    problem = query_epsilon_problem(policy, query.epsilon, "query epsilon")
    if problem:  # refused by rule before any calibration (a tiny epsilon would take minutes)
        raise QueryError(problem)
    check_query_size(policy, kind, params)  # counted, not built: before the quadratic partitions
    parts = partitions(kind, params)
    bounds(kind, params)
    gate = gate or open_gate(nd, store)
    cached = gate.cached(kind, request_of(query), query.secagg) is not None  # a repeat (never unmasked: secagg_only)
    if not cached:  # refused by the cap or the per-query cap BEFORE the store is read (review 15): a refusal
        # costs no work and takes no time that grows with the number of members
        epsilon_within_budget(float(query.epsilon), gate.budget(kind), policy, "query")
    eligible = [] if cached else eligible_contributors(store, policy, now)
    if cached:
        rows = []  # the gate serves the cached answer before counting anything
    elif kind == "policy_objections":  # governance, not records: who objected (keyed HMACs) to the latest proposal
        from node.service.governance import objection_rows

        rows = objection_rows(store)
    else:
        rows = rows_for(kind, store.records(contributors=eligible), params)
    wanted = set(parts)
    rows = [r for r in rows if r[1] in wanted]
    n_contributors = len(eligible)  # the policy's min_contributors counts eligible people

    def make_payload(budget):
        eps = epsilon_within_budget(float(query.epsilon), budget, policy, "query")
        ans = dp_answer(kind, rows, params, eps, budget.delta, key=bounding_key(store, kind, query))
        event = ans.pop("event")
        ans["epsilon"] = epsilon_of([event], budget.delta).epsilon
        ans["delta"] = budget.delta
        return canonical_json(ans), event

    rel = gate.release(kind, request_of(query), make_payload, contributors=n_contributors,
                       round_id=query.round_id, cells=len(parts), secagg=query.secagg)
    payload = json.loads(rel.payload)
    answer = query_pb2.Answer(
        node_id=nd.node_id, query_name=kind, mechanism=payload["noise"], noise_scale=payload["noise_parameter"],
        ledger_seq=rel.seq, cached=rel.cached, ledger_entry_hash=bytes.fromhex(rel.entry_hash),
        epsilon=payload["epsilon"], delta=payload["delta"], sensitivity=payload["sensitivity"],
        max_partitions=payload["max_partitions"], secagg=query.secagg, round_id=query.round_id,
    )
    if not query.secagg:
        for key, v in zip(parts, payload["values"]):
            answer.cells.add(key=list(key), value=int(v))
    return answer, list(payload["values"])
