"""Chatbot Arena battles (lmsys `chatbot_arena_conversations` / `clean_battle` style).

Fields: `question_id` (optional), `model_a`, `model_b`, `winner` ("model_a", "model_b", "tie",
"tie (bothbad)"), `conversation_a`, `conversation_b` (OpenAI-style [{role, content}, ...]),
`judge`, `turn`, `anony`, `language`, `tstamp` (unix seconds), optionally `openai_moderation`
and `toxic_chat_tag`.

Multi-turn battles: both models answer the same user turns, but their intermediate replies
differ, so one shared history does not exist. The Record keeps what both sides share: prompt =
the user (and system) turns, in order; responses = the final assistant reply of each side (models
`model_a`, `model_b`); meta["turns"] = number of user turns. The vote judged the whole
conversation; for single-turn battles (most of them) this is exact. If the two sides' user turns
differ, the record is rejected (field `conversation_b`).
Winner → one pairwise item: a / b / tie / both_bad, from "arena:<judge>"; the judge wrote the
prompts, so the judge is also the owner. Key: `question_id`, else a hash of the object.
meta: anony, turns, and `flagged` when openai_moderation flagged it / `toxic` from toxic_chat_tag.

Detected by: `conversation_a`, `conversation_b` and `winner`.
"""

from __future__ import annotations

from node.importers.common import Context, Importer, choice, content_text, get, language, role, stable_hash, text, timestamp
from node.schema import Feedback, Message, Record, Response, SchemaError

NAME = "arena"
WINNER = {"model_a": "a", "model_b": "b", "tie": "tie", "tie (bothbad)": "both_bad"}


def _side(obj: dict, name: str) -> tuple[list[Message], str]:
    conv = get(obj, name, list)
    turns, last_reply = [], None
    for i, m in enumerate(conv):
        where = f"{name}[{i}]"
        if not isinstance(m, dict):
            raise SchemaError("expected a message object", where)
        r = role(m.get("role"), f"{where}.role")
        t = content_text(m.get("content"), f"{where}.content")
        if r == "assistant":
            last_reply = t
        else:
            turns.append(Message(r, t))
    if last_reply is None:
        raise SchemaError("no assistant reply", name)
    if conv and role(conv[-1].get("role"), f"{name}[-1].role") != "assistant":
        raise SchemaError("the conversation must end with an assistant reply", name)
    return turns, last_reply


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One arena battle object -> one Record (a text-free clean_battle row is read as one)."""
    if "conversation_a" not in obj and "conversation_b" not in obj:
        from node.importers import clean_battle
        return clean_battle.parse(obj, ctx)
    outcome = choice(obj.get("winner"), WINNER, "winner")
    who = ctx.who(obj.get("judge"), "judge")
    turns_a, reply_a = _side(obj, "conversation_a")
    turns_b, reply_b = _side(obj, "conversation_b")
    if turns_a != turns_b:
        raise SchemaError("its user turns differ from conversation_a's", "conversation_b")
    ts = timestamp(obj.get("tstamp"), "tstamp")
    responses = [Response(reply_a, text(obj, "model_a")), Response(reply_b, text(obj, "model_b"))]
    fb = Feedback("pairwise", who, {"a": 0, "b": 1, "outcome": outcome, "strength": 1.0}, timestamp=ts)
    meta: dict = {"turns": sum(1 for m in turns_a if m.role == "user")}
    if isinstance(obj.get("anony"), bool):
        meta["anony"] = obj["anony"]
    mod = obj.get("openai_moderation")
    if isinstance(mod, dict) and isinstance(mod.get("flagged"), bool):
        meta["flagged"] = mod["flagged"]
    tox = obj.get("toxic_chat_tag")
    if isinstance(tox, dict):
        flags = [v.get("flagged") for v in tox.values() if isinstance(v, dict)]
        if flags and all(isinstance(f, bool) for f in flags):
            meta["toxic"] = any(flags)
    qid = obj.get("question_id")
    key = str(qid) if isinstance(qid, (str, int)) and not isinstance(qid, bool) and str(qid) else stable_hash(obj)
    return [Record(NAME, key, turns_a, responses, [fb], owner=who,
                   language=language(obj.get("language"), "language"), timestamp=ts, meta=meta)]


def detect(obj: dict) -> bool:
    """Does this object look like an arena battle?"""
    return "conversation_a" in obj and "conversation_b" in obj and "winner" in obj


IMPORTER = Importer(NAME, parse, detect, description="Chatbot Arena battles (model_a/model_b/winner)")
