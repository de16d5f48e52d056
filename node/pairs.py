"""Records -> Bradley-Terry training pairs, each owned by exactly one contributor.

A `Pair` says "contributor c prefers `chosen` over `rejected` as a reply to `prompt`" with soft
label `target` = P(chosen beats rejected) and a loss `weight`. Every pair derives from ONE
contributor's feedback, so that user-level DP (node/dpsgd/) can bound each person's total
influence by grouping pairs by `contributor` (ARCHITECTURE.md invariant 4: the unit of privacy is
the contributor).

Conversion rules, per feedback kind (see node/schema.py):

- pairwise, outcome a / b: winner is `chosen`, target 1, weight = `strength` (default 1).
- pairwise, outcome **tie**: target 0.5 (Bradley-Terry with a soft label: the loss is minimised
  when the two scores are equal), weight = strength. Kept for training (it carries information:
  "these are equally good"), excluded from evaluation (`eval_pairs`).
- pairwise, outcome **both_bad**: EXCLUDED from training and evaluation and counted in
  `PairStats.both_bad`. Both responses being bad says nothing about their order; treating it as a
  tie would also push their scores together for no reason. (An absolute "bad" signal belongs to a
  rating/label model, not to a pairwise one.)
- ranking (order, best first): every ordered pair (order[i] beats order[j] for i < j), target 1.
- rating: for one contributor, one record and one dimension, every two rated responses with
  different values form a pair (higher value wins, target 1). Equal values are skipped (counted in
  `rating_equal`). Ratings by DIFFERENT contributors are never combined: a pair must belong to
  one person.
- thumbs: for one contributor and one record, each (up, down) combination of responses forms a
  pair, target 1. Same-sign thumbs give no pair.
- label, critique: no pairs (counted in `other`).

Pairs whose two responses have identical text are dropped (`degenerate`): they carry no signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Iterable

from node.schema import Record

__all__ = ["Pair", "PairStats", "pairs_from_records", "eval_pairs", "group_by_contributor"]


@dataclass(frozen=True)
class Pair:
    """Contributor `contributor` prefers `chosen` over `rejected` as a reply to `prompt`, with soft label `target`."""
    contributor: str
    prompt: str
    chosen: str
    rejected: str
    target: float = 1.0  # P(chosen beats rejected): 1 strict preference, 0.5 tie
    weight: float = 1.0  # loss weight (pairwise strength)
    kind: str = "pairwise"  # feedback kind it came from
    record: str = ""  # Record.key it came from


@dataclass
class PairStats:
    """Counts of what `pairs_from_records` produced and skipped, by reason and by feedback kind."""
    pairs: int = 0
    ties: int = 0
    both_bad: int = 0
    rating_equal: int = 0
    degenerate: int = 0
    other: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def _emit(out: list[Pair], stats: PairStats, rec: Record, contributor: str, win: int, lose: int, target: float, weight: float,
          kind: str) -> None:
    chosen, rejected = rec.responses[win].text, rec.responses[lose].text
    if chosen == rejected:
        stats.degenerate += 1
        return
    out.append(Pair(contributor, rec.prompt_text(), chosen, rejected, float(target), float(weight), kind, rec.key))
    stats.pairs += 1
    stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1


def pairs_from_records(records: Iterable[Record], *, include_ties: bool = True, stats: PairStats | None = None) -> list[Pair]:
    """All training pairs from `records` (rules in the module docstring).

    `include_ties=False` drops tie pairs (target 0.5). Pass a `PairStats` to get counts of what
    was converted, skipped and why.
    """
    stats = stats if stats is not None else PairStats()
    out: list[Pair] = []
    for rec in records:
        ratings: dict[tuple[str, str], dict[int, float]] = {}
        thumbs: dict[str, dict[int, int]] = {}
        for fb in rec.feedback:
            d = fb.data
            if fb.kind == "pairwise":
                o = d.get("outcome")
                s = float(d.get("strength", 1.0) or 1.0)
                if o == "a":
                    _emit(out, stats, rec, fb.contributor, d["a"], d["b"], 1.0, s, "pairwise")
                elif o == "b":
                    _emit(out, stats, rec, fb.contributor, d["b"], d["a"], 1.0, s, "pairwise")
                elif o == "tie":
                    stats.ties += 1
                    if include_ties:
                        _emit(out, stats, rec, fb.contributor, d["a"], d["b"], 0.5, s, "pairwise")
                elif o == "both_bad":
                    stats.both_bad += 1
            elif fb.kind == "ranking":
                order = list(d.get("order", []))
                for i, j in combinations(range(len(order)), 2):
                    _emit(out, stats, rec, fb.contributor, order[i], order[j], 1.0, 1.0, "ranking")
            elif fb.kind == "rating":
                ratings.setdefault((fb.contributor, str(d["dimension"])), {})[int(d["response"])] = float(d["value"])
            elif fb.kind == "thumbs":
                thumbs.setdefault(fb.contributor, {})[int(d["response"])] = int(d["value"])
            else:
                stats.other += 1
        for (contrib, _dim), vals in ratings.items():
            for i, j in combinations(sorted(vals), 2):
                if vals[i] == vals[j]:
                    stats.rating_equal += 1
                elif vals[i] > vals[j]:
                    _emit(out, stats, rec, contrib, i, j, 1.0, 1.0, "rating")
                else:
                    _emit(out, stats, rec, contrib, j, i, 1.0, 1.0, "rating")
        for contrib, vals in thumbs.items():
            ups = sorted(i for i, v in vals.items() if v > 0)
            downs = sorted(i for i, v in vals.items() if v < 0)
            for u in ups:
                for dn in downs:
                    _emit(out, stats, rec, contrib, u, dn, 1.0, 1.0, "thumbs")
    return out


def eval_pairs(records: Iterable[Record], *, kinds: tuple[str, ...] | None = None) -> list[Pair]:
    """Strict-preference pairs for accuracy: ties and both_bad excluded.

    `kinds` restricts to feedback kinds (e.g. `("pairwise",)` for `cairn model eval`); None: all.
    Accuracy = fraction of pairs where score(chosen) > score(rejected).
    """
    ps = pairs_from_records(records, include_ties=False)
    return [p for p in ps if p.target == 1.0 and (kinds is None or p.kind in kinds)]


def group_by_contributor(pairs: Iterable[Pair]) -> dict[str, list[Pair]]:
    """Pairs grouped by contributor, in first-seen order."""
    out: dict[str, list[Pair]] = {}
    for p in pairs:
        out.setdefault(p.contributor, []).append(p)
    return out
