"""Private key selection on the node: which model names, languages or rating dimensions its data holds.

The count queries of node/queries.py count over PUBLIC labels the coordinator sends. When the
coordinator has no list (an arena of models nobody typed in), it asks `discover_keys`
(protos/wire.py DISCOVERY_KIND) for one or more KEY_TYPES; the node answers with the keys that pass
differentially private partition selection (privacy/mechanisms.py `noisy_key_selection`: Gaussian
thresholding with OpenDP's proven privacy map), through its release gate like any release
(ARCHITECTURE.md invariant 2), accounted in its ledger as the discrete Gaussian on the counts composed
with an `EpsilonDeltaEvent(0, delta_selection)` (privacy/mechanisms.py `selection_event`).

1. Only eligible contributors' data is read (node/consent.py, ARCHITECTURE.md invariant 8).
2. Rows (person, key): a model name of a response in a conversation the person owns or gave
   feedback on; the language of such a conversation; a rating dimension the person rated. A key
   that is not a public-safe label (protos/wire.py `public_label`: short, label-shaped, never a
   sentence) is dropped whatever its count: raw text never leaves (ARCHITECTURE.md invariant 1).
3. Each person adds at most `max_partitions` keys of each type (chosen at random; ARCHITECTURE.md
   invariant 4), and counts once per key.
4. Discrete Gaussian noise on each count, calibrated so the release costs the query's epsilon at the
   policy's delta; only keys past the threshold at which a key only one person holds is released
   with probability <= delta_selection (DISCOVERY_DELTA_SHARE of the policy's delta) are released:
   a key few people hold stays unseen.
"""

from __future__ import annotations

import json

from node.queries import epsilon_within_budget
from privacy.accounting import epsilon_of
from privacy.mechanisms import bound_contributions, noisy_key_selection
from privacy.policy import query_epsilon_problem
from privacy.release import canonical_json
from protos import query_pb2
from protos.wire import DEFAULT_MAX_KEYS, DISCOVERY_KIND, KEY_TYPES, Param, QueryError, int_param, list_param, public_label

MECHANISM = "gaussian_threshold"
DISCOVERY_DELTA_SHARE = 0.005  # of the policy's delta, per discovery: 50 fit in the filter's reserved quarter
MAX_KEYS_PER_PERSON = 100


def key_types(params: dict) -> list[str]:
    """The KEY_TYPES a discovery asks for, in KEY_TYPES order (QueryError names the parameter)."""
    asked = list_param(params, Param.KEY)
    unknown = [k for k in asked if k not in KEY_TYPES]
    if unknown:
        raise QueryError(f"query parameter {Param.KEY!r}: unknown key type(s) {unknown} (known: {', '.join(KEY_TYPES)})")
    return [k for k in KEY_TYPES if k in asked]


def key_rows(records, key_type: str) -> list[tuple[str, str]]:
    """(person, key) rows of one key type, public-safe labels only (see the module docstring)."""
    out = []
    for rec in records:
        if key_type == "dimension":
            out += [(fb.contributor, str(fb.data["dimension"])) for fb in rec.feedback
                    if fb.kind == "rating" and fb.data.get("dimension") is not None]  # no key "None"
            continue
        people = {f.contributor for f in rec.feedback} | ({rec.owner} if rec.owner else set())
        keys = {r.model for r in rec.responses if r.model} if key_type == "model" else {rec.language} - {None, ""}
        out += [(who, k) for who in sorted(people) for k in sorted(keys)]
    return [(who, k) for who, k in out if public_label(k)]


def discovery_rows(records, types: list[str], max_keys: int) -> list[tuple[str, str]]:
    """Rows (person, JSON [type, key]) with at most `max_keys` keys per person of each type. One pass over
    `records` (a stream from the store: no record is held past its batch), keeping only (person, key) rows."""
    per_type: dict[str, set] = {t: set() for t in types}
    for rec in records:
        for t in types:
            per_type[t].update(key_rows([rec], t))
    out = []
    for t in types:
        rows = bound_contributions(per_type[t], max_keys, 1)
        out += [(who, json.dumps([t, k])) for who, k in rows]
    return out


def answer_discovery(nd, store, query: query_pb2.Query, gate=None, now=None) -> tuple[query_pb2.Answer, list[int]]:
    """Answer a `discover_keys` query through the node's gate: cells ([type, key], noisy count) for
    the keys past the threshold. Raises PolicyViolation or QueryError."""
    from node.consent import eligible_contributors
    from node.releases import open_gate

    if query.name != DISCOVERY_KIND:
        raise QueryError(f"not a {DISCOVERY_KIND} query: {query.name!r}")
    if query.secagg:
        raise QueryError(f"{DISCOVERY_KIND} answers are sets of keys: they cannot be summed by secure aggregation")
    params = dict(query.params)
    types = key_types(params)
    if not types:
        raise QueryError(f"query parameter {Param.KEY!r} names no key type (known: {', '.join(KEY_TYPES)})")
    k = int_param(params, Param.MAX_PARTITIONS, DEFAULT_MAX_KEYS, 1, MAX_KEYS_PER_PERSON)
    policy = nd.policy()
    problem = query_epsilon_problem(policy, query.epsilon, "discovery epsilon")
    if problem:  # refused by rule before any calibration (a tiny epsilon would take minutes)
        raise QueryError(problem)
    gate = gate or open_gate(nd, store)
    eligible = eligible_contributors(store, policy, now)

    def make_payload(budget):
        eps = epsilon_within_budget(float(query.epsilon), budget, policy, "discovery")
        rows = discovery_rows(store.records(contributors=eligible), types, k)
        sel = noisy_key_selection(rows, k * len(types), eps, budget.delta, budget.delta * DISCOVERY_DELTA_SHARE)
        # post-processing: at most max_release_cells keys, the largest noisy counts first
        kept = sorted(sel.keys.items(), key=lambda kv: (-kv[1], kv[0]))[: policy.max_release_cells]
        payload = {
            "query": DISCOVERY_KIND, "keys": [[*json.loads(key), int(v)] for key, v in sorted(kept)],
            "noise": MECHANISM, "noise_parameter": sel.sigma, "threshold": sel.threshold, "sensitivity": 1,
            "max_partitions": sel.max_keys, "epsilon": epsilon_of([sel.event], budget.delta).epsilon,
            "delta": budget.delta, "selection_delta": sel.selection_delta,
        }
        return canonical_json(payload), sel.event

    from node.queries import request_of

    rel = gate.release(DISCOVERY_KIND, request_of(query), make_payload, contributors=len(eligible),
                       round_id=query.round_id, cells=len(types))
    payload = json.loads(rel.payload)
    answer = query_pb2.Answer(
        node_id=nd.node_id, query_name=DISCOVERY_KIND, mechanism=payload["noise"],
        noise_scale=payload["noise_parameter"], ledger_seq=rel.seq, cached=rel.cached,
        ledger_entry_hash=bytes.fromhex(rel.entry_hash), epsilon=payload["epsilon"], delta=payload["delta"],
        sensitivity=payload["sensitivity"], max_partitions=payload["max_partitions"], round_id=query.round_id,
    )
    for t, key, v in payload["keys"]:
        answer.cells.add(key=[t, key], value=int(v))
    return answer, [int(v) for _, _, v in payload["keys"]]
