"""The coordinator's side of private key selection: which model names, languages and rating
dimensions to count over when nobody gave it a list.

When a query kind needs keys (protos/wire.py QUERY_KEY_TYPES) and the coordinator was given no
public list for them (`--model`, `--language`, `--dimension`), it asks every node one
`discover_keys` query (protos/wire.py DISCOVERY_KIND) before the count queries. Each node answers
through its own release gate with the keys of its data that pass differentially private partition
selection (node/discovery.py; privacy/mechanisms.py `noisy_key_selection`), accounted in its ledger.
The coordinator takes the UNION of what the nodes released (a key one community holds is counted
everywhere; a node that does not hold it adds only noise to its cells) and asks the count queries
over it. It never reads a node's data and never falls back on a built-in list of names.

A hostile node's answer is refused by rule, before use: a cell must be [key type asked, label], the
label public-safe (protos/wire.py `public_label`); one bad cell refuses the whole answer. At most
MAX_KEYS[type] keys are kept, the largest summed noisy counts first, so the count queries stay
within the nodes' answer-size rule.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from flwr.app import ConfigRecord, RecordDict

from protos import query_pb2
from protos.wire import (
    DEFAULT_MAX_KEYS,
    DISCOVERY_KIND,
    KEY_TYPES,
    QUERY_KEY_TYPES,
    Key,
    MessageType,
    Param,
    Record,
    public_label,
)

log = logging.getLogger("cairn.coordinator")

# Most keys used per type: 40 models make 780 pairs, 3120 battle cells (nodes allow 10,000 by default).
MAX_KEYS = {"model": 40, "language": 100, "dimension": 100}
# FederationConfig field holding the coordinator's own public list for each key type.
LIST_FIELDS = {"model": "query_models", "language": "query_languages", "dimension": "query_dimensions"}


def discovery_needed(cfg) -> list[str]:
    """The key types the federation `cfg` must discover: needed by a query kind it asks and not given."""
    needed = {t for kind in cfg.queries for t in QUERY_KEY_TYPES.get(kind, ())}
    return [t for t in KEY_TYPES if t in needed and not getattr(cfg, LIST_FIELDS[t], None)]


def planned_releases(cfg) -> list[str]:
    """The aggregate releases the federation asks of each node, in order: discovery first when needed."""
    return ([DISCOVERY_KIND] if discovery_needed(cfg) else []) + list(cfg.queries)


def build_discovery(types: list[str], epsilon: float, round_id: str = "", max_keys: int = DEFAULT_MAX_KEYS
                    ) -> query_pb2.Query:
    """A `discover_keys` query for `types`, asking `epsilon` of each node."""
    unknown = [t for t in types if t not in KEY_TYPES]
    if unknown or not types:
        raise ValueError(f"key types must be some of {', '.join(KEY_TYPES)}, got {types!r}")
    params = {Param.KEY: json.dumps(list(types)), Param.MAX_PARTITIONS: str(int(max_keys))}
    return query_pb2.Query(name=DISCOVERY_KIND, params=params, epsilon=float(epsilon), round_id=round_id)


@dataclass
class DiscoveryResult:
    """One discovery across the federation: every node's released keys (or refusal) and their union."""

    types: list[str]
    query: dict
    answers: dict = field(default_factory=dict)  # node_id -> answer facts and its keys
    refused: dict = field(default_factory=dict)  # node_id -> reason
    lists: dict = field(default_factory=dict)  # key type -> keys used (the union, capped)

    def sources(self) -> list[dict]:
        """Ledger entries the discovered lists derive from (lineage)."""
        return [{"node_id": nid, "ledger_seq": a["ledger_seq"], "ledger_entry_hash": a["ledger_entry_hash"]}
                for nid, a in sorted(self.answers.items())]

    def to_dict(self, names: dict[str, str] | None = None) -> dict:
        """The statistics.json form."""
        names = names or {}
        return {
            "query": self.query,
            "discovered": self.lists,
            "answers": {nid: {**a, "name": names.get(nid, "")} for nid, a in sorted(self.answers.items())},
            "refused": dict(sorted(self.refused.items())),
        }


def check_answer(ans: query_pb2.Answer, types: list[str]) -> dict[str, dict[str, int]]:
    """{type: {key: noisy count}} of a node's answer; ValueError when a cell breaks the rules."""
    out: dict[str, dict[str, int]] = {t: {} for t in types}
    if ans.query_name != DISCOVERY_KIND:
        raise ValueError(f"answer to {ans.query_name!r}, not {DISCOVERY_KIND!r}")
    for c in ans.cells:
        key = list(c.key)
        if len(key) != 2 or key[0] not in out or not public_label(key[1]):
            raise ValueError(f"cell {key[:2]!r} is not [key type asked, public-safe label]")
        out[key[0]][key[1]] = int(c.value)
    return out


def union_keys(per_node: list[dict[str, dict[str, int]]], types: list[str]) -> dict[str, list[str]]:
    """The union of the nodes' released keys per type, at most MAX_KEYS[type], by summed noisy count."""
    lists = {}
    for t in types:
        total: dict[str, int] = {}
        for d in per_node:
            for k, v in d.get(t, {}).items():
                total[k] = total.get(k, 0) + v
        lists[t] = sorted(sorted(total, key=lambda k: (-total[k], k))[: MAX_KEYS[t]])
    return lists


def run_discovery(grid, nodes: list[int], infos: dict[int, dict], types: list[str], epsilon: float, send,
                  round_id: str = "", timeout=None) -> DiscoveryResult:
    """Ask `nodes` one discovery of `types` (transport `send` as in coordinator/queries.py) and union the answers."""
    q = build_discovery(types, epsilon, round_id)
    res = DiscoveryResult(types, {"name": q.name, "params": dict(sorted(q.params.items())), "epsilon": q.epsilon})
    data = q.SerializeToString(deterministic=True)
    reps = send(grid, MessageType.AGGREGATE, nodes,
                {n: RecordDict({Record.QUERY: ConfigRecord({Key.QUERY: data})}) for n in nodes}, "discover-keys", timeout)
    found = []
    for n, rep in reps.items():
        nid = infos[n][Key.NODE_ID]
        status = rep.content[Record.STATUS] if Record.STATUS in rep.content else None
        if status is not None and not status[Key.OK]:
            res.refused[nid] = str(status[Key.REFUSED])
            continue
        try:
            ans = query_pb2.Answer.FromString(bytes(rep.content[Record.ANSWER][Key.ANSWER]))
            keys = check_answer(ans, types)
        except Exception as e:  # noqa: BLE001 - a hostile or broken answer is refused, never used
            res.refused[nid] = f"invalid answer refused: {e}"
            log.warning("discovery: node %s sent an invalid answer: %s", nid[:12], e)
            continue
        found.append(keys)
        res.answers[nid] = {
            "ledger_seq": int(ans.ledger_seq), "ledger_entry_hash": bytes(ans.ledger_entry_hash).hex(),
            "epsilon": ans.epsilon, "delta": ans.delta, "mechanism": ans.mechanism, "noise_scale": ans.noise_scale,
            "max_partitions": int(ans.max_partitions), "cached": ans.cached, "keys": keys,
        }
    for n in set(nodes) - set(reps):
        res.refused.setdefault(infos[n][Key.NODE_ID], "no reply (node failed or timed out)")
    res.lists = union_keys(found, types)
    log.info("discovery: %s", ", ".join(f"{len(v)} {t}(s)" for t, v in res.lists.items()))
    return res


def discovery_phase(grid, nodes: list[int], infos: dict[int, dict], cfg, send, plans=None):
    """Private key selection for the key types the federation `cfg`'s queries need and the operator
    did not list, asked of the nodes whose plan (coordinator/planning.py) asks it: returns
    (DiscoveryResult or None, {key type: labels to count over})."""
    lists = {t: list(getattr(cfg, f) or []) for t, f in LIST_FIELDS.items()}
    types = discovery_needed(cfg)
    if not types:
        return None, lists
    asked = [n for n in nodes if plans is None or plans[infos[n][Key.NODE_ID]].asks(DISCOVERY_KIND)]
    try:
        res = run_discovery(grid, asked, infos, types, cfg.query_epsilon, send,
                            f"{cfg.federation_id}/query/{DISCOVERY_KIND}", cfg.timeout)
    except Exception as e:  # noqa: BLE001 - the queries then fail for want of keys, recorded in statistics.json
        log.error("discovery failed: %s: %s", type(e).__name__, e)
        return None, lists
    for n in nodes:
        nid = infos[n][Key.NODE_ID]
        if n not in asked and plans is not None:
            item = plans[nid].item(DISCOVERY_KIND)
            res.refused[nid] = f"not asked (plan): {item.why if item else 'not planned'}"
    lists.update(res.lists)
    return res, lists
