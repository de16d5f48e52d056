"""OpenAI-style chat logs with feedback: one conversation per object. The shape Cairn accepts:

```
{"id": "conv-0001",                      optional stable id (else a hash of the object is the key)
 "messages": [{"role": "system" | "user" | "assistant", "content": str | [{"type": "text", "text": str}, ...]}, ...],
 "model": "gpt-4o-mini",                 optional; else the final message's own "model"
 "user": "member-17",                    pseudonymous id of the person (else --contributor is required)
 "created": 1718000000 | "2024-06-10T08:00:00Z",   optional ("timestamp" also accepted)
 "language": "en",                       optional
 "thumbs": "up" | "down" | 1 | -1,       optional shorthand for feedback.thumbs
 "feedback": {                           optional; every key optional
     "thumbs": "up" | "down" | 1 | -1,
     "rating": 4, "scale": [1, 5],       overall rating; scale defaults to [1, 5]
     "ratings": {"helpfulness": 4, ...}, per-dimension ratings on the same scale
     "labels": {"name": value, ...},     value: bool, number or short string
     "comment": "free text"}}            ("critique" also accepted) → critique
```

The final message must be the assistant's: it is the response; the messages before it are the
prompt. All feedback is about that response and comes from the user ("openai:<user>", or the
override), who is also the owner. Non-text content parts (images, ...) are dropped.

Detected by: a `messages` list (without `chosen`/`rejected`: those rows are `trl`'s).
"""

from __future__ import annotations

from node.importers.common import Context, Importer, choice, get, language, message, stable_hash, timestamp
from node.schema import Feedback, Record, Response, SchemaError

NAME = "openai"
THUMBS = {"up": 1, "down": -1, 1: 1, -1: -1, "+1": 1, "-1": -1, "thumbs_up": 1, "thumbs_down": -1}


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One chat-messages object -> one Record."""
    raw = get(obj, "messages", list)
    msgs, model = [], None
    for i, m in enumerate(raw):
        msgs.append(message(m, f"messages[{i}]"))
        if isinstance(m.get("model"), str):
            model = m["model"]
    if not msgs or msgs[-1].role != "assistant":
        raise SchemaError("the last message must be the assistant's reply (the response)", "messages")
    model = get(obj, "model", str, required=False) or model
    who = ctx.who(obj.get("user"), "user")
    ts = timestamp(obj.get("created", obj.get("timestamp")), "created" if "created" in obj else "timestamp")
    fb_obj = get(obj, "feedback", dict, required=False, default={})
    feedback: list[Feedback] = []
    thumbs = fb_obj.get("thumbs", obj.get("thumbs"))
    if thumbs is not None:
        where = "feedback.thumbs" if "thumbs" in fb_obj else "thumbs"
        v = choice(thumbs.strip().lower() if isinstance(thumbs, str) else thumbs, THUMBS, where)
        feedback.append(Feedback("thumbs", who, {"response": 0, "value": v}, timestamp=ts))
    scale = get(fb_obj, "scale", list, required=False, default=[1, 5], path="feedback.scale")
    if len(scale) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in scale) \
            or scale[0] >= scale[1]:
        raise SchemaError("expected [low, high]", "feedback.scale")
    ratings = {}
    if fb_obj.get("rating") is not None:
        ratings["overall"] = ("feedback.rating", fb_obj["rating"])
    for dim, v in get(fb_obj, "ratings", dict, required=False, default={}, path="feedback.ratings").items():
        ratings[str(dim)] = (f"feedback.ratings.{dim}", v)
    for dim, (where, v) in ratings.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not scale[0] <= v <= scale[1]:
            raise SchemaError(f"expected a number in {scale[0]}..{scale[1]}", where)
        feedback.append(Feedback("rating", who, {"response": 0, "dimension": dim, "value": v, "scale": list(scale)},
                                 timestamp=ts))
    for name, v in get(fb_obj, "labels", dict, required=False, default={}, path="feedback.labels").items():
        if not isinstance(v, (bool, int, float, str)) or (isinstance(v, str) and len(v) > 100):
            raise SchemaError("expected a boolean, number or short string", f"feedback.labels.{name}")
        feedback.append(Feedback("label", who, {"response": 0, "name": str(name), "value": v}, timestamp=ts))
    for k in ("comment", "critique"):
        c = get(fb_obj, k, str, required=False, path=f"feedback.{k}")
        if c and c.strip():
            feedback.append(Feedback("critique", who, {"response": 0}, text=c, timestamp=ts))
    rid = obj.get("id")
    key = str(rid) if isinstance(rid, (str, int)) and not isinstance(rid, bool) and str(rid) else stable_hash(obj)
    return [Record(NAME, key, msgs[:-1], [Response(msgs[-1].text, model)], feedback, owner=who,
                   language=language(obj.get("language"), "language"), timestamp=ts)]


def detect(obj: dict) -> bool:
    """Does this object look like OpenAI-style chat messages?"""
    return isinstance(obj.get("messages"), list) and not ("chosen" in obj and "rejected" in obj)


IMPORTER = Importer(NAME, parse, detect, description="OpenAI-style messages with thumbs/ratings/comments")
