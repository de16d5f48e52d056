"""WildChat (`allenai/WildChat`, `WildChat-1M`, `WildChat-4.8M`): real ChatGPT conversations.

Fields: `conversation_hash` (1M; `conversation_id` in the first release), `model`, `timestamp`,
`conversation` ([{`role`, `content`, `language`, `redacted`, `toxic`, `turn_identifier`,
`timestamp`, and in 1M+ `hashed_ip`, `country`, `state`, `header`}]), `turn`, `language`,
`openai_moderation`, `detoxify_moderation`, `toxic`, `redacted`, and in 1M+ `hashed_ip`,
`country`, `state`, `header`.

No feedback: each conversation is stored as a Record without feedback (the owner's own text,
usable for implicit signals and aggregate queries). Record: the last assistant message is the
response (model `model`), everything before it the prompt (user turns after it are dropped and
counted in meta["dropped_turns"]); a conversation without any reply keeps its turns as the prompt
and no response. Owner: `hashed_ip` (top level, else the first message's), the only person-level
id WildChat publishes; the first release has none, so `contributor` is then required. Location
(`country`, `state`) and request `header` are not imported. Key: `conversation_hash`, else
`conversation_id`, else a hash of the object. meta: turns, toxic, redacted, flagged (any turn
flagged by the OpenAI moderation).

Detected by: a `conversation` list and one of `conversation_hash`, `hashed_ip`, `detoxify_moderation`.
"""

from __future__ import annotations

from node.importers.common import Context, Importer, get, language, message, stable_hash, timestamp
from node.schema import Record, Response, SchemaError

NAME = "wildchat"


def conversation_record(name: str, obj: dict, ctx: Context, owner: str, id_fields: tuple[str, ...]) -> Record:
    """A feedback-free Record from a `conversation` list (WildChat, LMSYS-Chat-1M)."""
    conv = get(obj, "conversation", list)
    msgs = [message(m, f"conversation[{i}]", empty_content=True) for i, m in enumerate(conv)]
    if not msgs:
        raise SchemaError("empty conversation", "conversation")
    last = max((i for i, m in enumerate(msgs) if m.role == "assistant"), default=None)
    model = get(obj, "model", str, required=False)
    meta: dict = {}
    if last is None:
        prompt, responses = msgs, []
    else:
        prompt, responses = msgs[:last], [Response(msgs[last].text, model)]
        if last < len(msgs) - 1:
            meta["dropped_turns"] = len(msgs) - 1 - last
    turn = get(obj, "turn", int, required=False)
    if turn is not None:
        meta["turns"] = turn
    for k in ("toxic", "redacted"):
        if isinstance(obj.get(k), bool):
            meta[k] = obj[k]
    mod = obj.get("openai_moderation")
    if isinstance(mod, list):
        flags = [x.get("flagged") for x in mod if isinstance(x, dict)]
        if flags and all(isinstance(f, bool) for f in flags):
            meta["flagged"] = any(flags)
    key = next((str(obj[k]) for k in id_fields if isinstance(obj.get(k), (str, int)) and str(obj[k])), None)
    return Record(name, key or stable_hash(obj), prompt, responses, [], owner=owner,
                  language=language(obj.get("language"), "language"),
                  timestamp=timestamp(obj.get("timestamp"), "timestamp"), meta=meta)


def _hashed_ip(obj: dict) -> tuple[object, str]:
    if obj.get("hashed_ip"):
        return obj["hashed_ip"], "hashed_ip"
    conv = obj.get("conversation")
    if isinstance(conv, list) and conv and isinstance(conv[0], dict) and conv[0].get("hashed_ip"):
        return conv[0]["hashed_ip"], "conversation[0].hashed_ip"
    return None, "hashed_ip"


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One WildChat conversation -> one Record (no feedback)."""
    value, where = _hashed_ip(obj)
    owner = ctx.who(value, where)
    return [conversation_record(NAME, obj, ctx, owner, ("conversation_hash", "conversation_id"))]


def detect(obj: dict) -> bool:
    """Does this object look like a WildChat conversation?"""
    return isinstance(obj.get("conversation"), list) and any(
        k in obj for k in ("conversation_hash", "hashed_ip", "detoxify_moderation"))


def needs_contributor(obj: dict, path: str | None = None) -> bool:
    """The first WildChat release has no hashed_ip: --contributor is required."""
    return _hashed_ip(obj)[0] is None


IMPORTER = Importer(NAME, parse, detect, needs_contributor=needs_contributor,
                    description="WildChat conversations (owner: hashed_ip), no feedback")
