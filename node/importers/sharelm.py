"""ShareLM (HF `shachardon/ShareLM`; the ShareLM browser plugin's export).

Fields: `conversation_id`, `conversation` ([{role, content}, ...]), `model_name`, `user_id`,
`timestamp`, `source`, `user_metadata` (not imported: demographics), `conversation_metadata`
({rate, language, redacted, toxic, title, custom_instruction, status}; all strings).

→ one Record: the last assistant message is the response (model `model_name`), everything before
it is the prompt (user turns after the last reply are dropped; meta["dropped_turns"] counts them).
Owner and contributor: "sharelm:<user_id>" (or the override). `conversation_metadata.rate`:
- "thumbs up"/"up"/"like"/"good"/"+1"/"1"/"👍" → thumbs +1; "thumbs down"/"down"/"dislike"/
  "bad"/"-1"/"👎" → thumbs -1 (on the response);
- a number 2..5 (string or number) → rating, dimension "overall", scale 1..5 ("1" reads as
  thumbs up, as the plugin writes it);
- empty, null, "0" or "none" → no feedback; anything else is an error.
Timestamp: `timestamp` (ISO or unix). Language: conversation_metadata.language. Key:
`conversation_id`, else a hash of the object. meta: source, toxic/redacted flags when given.

Detected by: `conversation` plus one of `model_name`, `user_id`, `conversation_metadata`.
"""

from __future__ import annotations

from node.importers.common import Context, Importer, get, language, message, stable_hash, timestamp
from node.schema import Feedback, Record, Response, SchemaError

NAME = "sharelm"
UP = {"thumbs up", "thumbs_up", "thumbsup", "up", "like", "liked", "good", "positive", "+1", "1", "👍", "true", "yes"}
DOWN = {"thumbs down", "thumbs_down", "thumbsdown", "down", "dislike", "disliked", "bad", "negative", "-1", "👎",
        "false", "no"}
NONE = {"", "0", "none", "null", "n/a"}


def rate_feedback(rate, who: str, ts: str | None, field: str) -> list[Feedback]:
    """A ShareLM `rate` value (up/down, +1/-1, true/false) as a thumbs item; none for no rating."""
    if rate is None:
        return []
    if isinstance(rate, bool):
        rate = "up" if rate else "down"
    r = str(rate).strip().lower()
    if r in NONE:
        return []
    if r in UP:
        return [Feedback("thumbs", who, {"response": 0, "value": 1}, timestamp=ts)]
    if r in DOWN:
        return [Feedback("thumbs", who, {"response": 0, "value": -1}, timestamp=ts)]
    try:
        v = float(r)
    except ValueError:
        v = None
    if v is not None and 1 <= v <= 5:
        return [Feedback("rating", who, {"response": 0, "dimension": "overall", "value": v, "scale": [1, 5]},
                         timestamp=ts)]
    shown = repr(r[:20])
    raise SchemaError(f"expected thumbs up/down or a 1..5 rating, got {shown}", field)


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One ShareLM conversation -> one Record."""
    conv = get(obj, "conversation", list)
    msgs = [message(m, f"conversation[{i}]") for i, m in enumerate(conv)]
    last = max((i for i, m in enumerate(msgs) if m.role == "assistant"), default=None)
    if last is None:
        raise SchemaError("no assistant message", "conversation")
    who = ctx.who(obj.get("user_id"), "user_id")
    ts = timestamp(obj.get("timestamp"), "timestamp")
    cm = get(obj, "conversation_metadata", dict, required=False, default={})
    feedback = rate_feedback(cm.get("rate"), who, ts, "conversation_metadata.rate")
    meta: dict = {}
    if last < len(msgs) - 1:
        meta["dropped_turns"] = len(msgs) - 1 - last
    if isinstance(obj.get("source"), str):
        meta["source"] = obj["source"][:100]
    for k in ("toxic", "redacted"):
        if isinstance(cm.get(k), (str, bool)) and cm.get(k) != "":
            meta[k] = cm[k]
    model = get(obj, "model_name", str, required=False)
    cid = obj.get("conversation_id")
    key = str(cid) if isinstance(cid, (str, int)) and not isinstance(cid, bool) and str(cid) else stable_hash(obj)
    return [Record(NAME, key, msgs[:last], [Response(msgs[last].text, model)], feedback, owner=who,
                   language=language(cm.get("language"), "conversation_metadata.language"), timestamp=ts,
                   meta=meta)]


def detect(obj: dict) -> bool:
    """Does this object look like a ShareLM conversation?"""
    return isinstance(obj.get("conversation"), list) and any(
        k in obj for k in ("model_name", "user_id", "conversation_metadata"))


IMPORTER = Importer(NAME, parse, detect, description="ShareLM conversations with optional rating")
