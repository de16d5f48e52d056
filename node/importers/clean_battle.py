"""Chatbot Arena battle outcomes without text (lmsys `clean_battle_*.json`, the Elo notebook's input).

Fields: `model_a`, `model_b`, `winner` ("model_a", "model_b", "tie", "tie (bothbad)"), `judge`
(a pseudonymous voter id such as "arena_user_…"), `tstamp` (unix seconds), optionally
`question_id`, `turn`, `anony`, `language`, `conv_metadata`, `is_code`, `dedup_tag`,
`category_tag`; no conversation text. Published as one JSON array (also read as JSON Lines).

→ one Record per battle with no prompt and two empty responses named `model_a`, `model_b`
(meta["no_text"] = True): a pairwise outcome between two model names. Training skips it (two
identical texts carry no signal: `node.pairs` drops them as degenerate); leaderboard queries,
which read model names, count it. Feedback from the judge ("<judge>" through
`Context.who`); no owner (no text of the judge is stored). Key: a hash of the object (a
`question_id` is not unique across a file's battles). meta: turns, anony, no_text.

Detected by: `model_a`, `model_b`, `winner` and no conversation or completion fields (those are
`arena` and `tulu`).
"""

from __future__ import annotations

from node.importers.common import Context, Importer, choice, get, language, stable_hash, text, timestamp
from node.schema import Feedback, Record, Response, SchemaError

NAME = "arena-battles"
WINNER = {"model_a": "a", "model_b": "b", "tie": "tie", "tie (bothbad)": "both_bad"}


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One battle outcome -> one text-free Record."""
    outcome = choice(obj.get("winner"), WINNER, "winner")
    a, b = text(obj, "model_a"), text(obj, "model_b")
    if not a.strip() or not b.strip():
        raise SchemaError("empty model name", "model_a" if not a.strip() else "model_b")
    who = ctx.who(obj.get("judge"), "judge")
    ts = timestamp(obj.get("tstamp"), "tstamp")
    fb = Feedback("pairwise", who, {"a": 0, "b": 1, "outcome": outcome, "strength": 1.0}, timestamp=ts)
    meta: dict = {"no_text": True}
    turn = get(obj, "turn", int, required=False)
    if turn is not None:
        meta["turns"] = turn
    if isinstance(obj.get("anony"), bool):
        meta["anony"] = obj["anony"]
    return [Record(NAME, stable_hash(obj), [], [Response("", a), Response("", b)], [fb], owner=None,
                   language=language(obj.get("language"), "language"), timestamp=ts, meta=meta)]


def detect(obj: dict) -> bool:
    """A battle outcome: model_a/model_b/winner without conversation or completion text."""
    return (all(k in obj for k in ("model_a", "model_b", "winner"))
            and not any(k in obj for k in ("conversation_a", "conversation_b", "completion_a", "completion_b")))


IMPORTER = Importer(NAME, parse, detect, description="Chatbot Arena clean_battle outcomes (model names, no text)")
