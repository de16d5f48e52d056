"""Open WebUI's feedback export (Admin → Evaluations → Feedbacks → Export: a JSON array).

Each object (Open WebUI's `FeedbackModel`): `id`, `user_id`, `version`, `type` ("rating"),
`data`: {`rating` (1 up, -1 down, 0 none), `model_id`, `sibling_model_ids` (arena: the other
models of the battle, or null), `reason`, `comment`, `tags`, `details`: {`rating`: 1..10 or
null}}, `meta`: {`chat_id`, `message_id`, `message_index`, `model_id`, `arena`, `base_models`,
`tags`}, `snapshot`: {`chat`: {`id`, `user_id`, `title`, `chat`: {`history`: {`messages`: {id:
{`id`, `parentId`, `childrenIds`, `role`, `content`, `model`, `timestamp`}}, `currentId`},
`messages`, `models`}, …}}, `created_at`, `updated_at` (unix seconds).

→ one Record per feedback: the rated message (`meta.message_id`) is the response (model
`data.model_id`, else the message's `model`), the prompt is its ancestors in the snapshot's history
(`parentId` chain; without a history, the messages before it in `chat.messages`). Feedback from
`user_id`: thumbs from `data.rating` (0: none), a rating "overall" 1..10 from `data.details.rating`,
one label "reason" and one label "tag" per tag, the comment as a critique. Arena feedback
(`sibling_model_ids`) also gives, per sibling, a text-free Record (key "<id>/vs/<k>", meta no_text)
with one pairwise outcome between the two model names (win for rating 1, loss for -1, tie for 0),
which only leaderboards read. Without a snapshot the feedback Record is text-free too (meta
no_text). Owner: the judge, when the snapshot's chat is the judge's own (`snapshot.chat.user_id`),
else none (node/ownership.py). Key: `id`.

Detected by: `user_id`, a `data` object and a `snapshot` or `meta` object.
"""

from __future__ import annotations

from node.importers.common import Context, Importer, content_text, get, role, stable_hash, timestamp
from node.schema import Feedback, Message, Record, Response, SchemaError

NAME = "openwebui"
MAX_DEPTH = 10_000


def _int(v, where: str) -> int | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise SchemaError("expected a number", where)
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise SchemaError("expected a number", where) from None
    if x != int(x):
        raise SchemaError("expected an integer", where)
    return int(x)


def _thread(obj: dict, message_id) -> tuple[list[Message], dict | None]:
    """(prompt messages, rated message) from the snapshot, ([], None) when there is none."""
    snap = obj.get("snapshot")
    chat = snap.get("chat") if isinstance(snap, dict) else None
    inner = chat.get("chat") if isinstance(chat, dict) else None
    hist = inner.get("history") if isinstance(inner, dict) else None
    msgs = hist.get("messages") if isinstance(hist, dict) else None
    flat = inner.get("messages") if isinstance(inner, dict) else None
    if not isinstance(msgs, dict) and isinstance(flat, list):  # no history tree: the flat message list
        for i, m in enumerate(flat):
            if isinstance(m, dict) and m.get("id") == message_id:
                where = "snapshot.chat.chat.messages"
                return [Message(role(x.get("role"), f"{where}[{j}].role"),
                                content_text(x.get("content", ""), f"{where}[{j}].content"))
                        for j, x in enumerate(flat[:i]) if isinstance(x, dict)], m
    if not isinstance(msgs, dict) or not isinstance(message_id, str) or message_id not in msgs:
        return [], None
    rated = msgs[message_id]
    if not isinstance(rated, dict):
        raise SchemaError("expected a message object", "snapshot.chat.chat.history.messages")
    chain, cur, seen = [], rated.get("parentId"), {message_id}
    while cur is not None:
        if cur in seen or len(seen) > MAX_DEPTH:
            raise SchemaError("the message history has a cycle", "snapshot.chat.chat.history.messages")
        seen.add(cur)
        m = msgs.get(cur)
        if not isinstance(m, dict):
            break
        where = f"snapshot.chat.chat.history.messages.{str(cur)[:40]}"
        chain.append(Message(role(m.get("role"), f"{where}.role"), content_text(m.get("content", ""), f"{where}.content")))
        cur = m.get("parentId")
    return chain[::-1], rated


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One Open WebUI feedback -> one Record (plus text-free arena outcomes)."""
    who = ctx.who(obj.get("user_id"), "user_id")
    data = get(obj, "data", dict)
    meta_in = get(obj, "meta", dict, required=False, default={})
    ts = timestamp(obj.get("created_at"), "created_at")
    fid = obj.get("id")
    key = str(fid) if isinstance(fid, (str, int)) and str(fid) else stable_hash(obj)
    prompt, rated = _thread(obj, meta_in.get("message_id"))
    model = data.get("model_id") if isinstance(data.get("model_id"), str) else meta_in.get("model_id")
    if rated is not None and not isinstance(model, str):
        model = rated.get("model") if isinstance(rated.get("model"), str) else None
    model = model if isinstance(model, str) else None
    meta: dict = {}
    if rated is None:
        response, meta["no_text"] = Response("", model), True
    else:
        response = Response(content_text(rated.get("content", ""), "snapshot…content"), model)
    fb = []
    thumbs = _int(data.get("rating"), "data.rating")
    if thumbs not in (None, 0, 1, -1):
        raise SchemaError(f"expected 1, 0 or -1, got {thumbs}", "data.rating")
    if thumbs:
        fb.append(Feedback("thumbs", who, {"response": 0, "value": thumbs}, timestamp=ts))
    details = get(data, "details", dict, required=False, default={}, path="data.details")
    score = _int(details.get("rating"), "data.details.rating")
    if score is not None:
        if not 1 <= score <= 10:
            raise SchemaError(f"expected 1..10, got {score}", "data.details.rating")
        fb.append(Feedback("rating", who, {"response": 0, "dimension": "overall", "value": score, "scale": [1, 10]},
                           timestamp=ts))
    reason = data.get("reason")
    if isinstance(reason, str) and 0 < len(reason.strip()) <= 100:
        fb.append(Feedback("label", who, {"response": 0, "name": "reason", "value": reason.strip()}, timestamp=ts))
    for tag in data.get("tags") or []:
        if isinstance(tag, str) and 0 < len(tag.strip()) <= 100:
            fb.append(Feedback("label", who, {"response": 0, "name": "tag", "value": tag.strip()}, timestamp=ts))
    comment = data.get("comment")
    if isinstance(comment, str) and comment.strip():
        fb.append(Feedback("critique", who, {"response": 0}, text=comment, timestamp=ts))
    snap_chat = (obj.get("snapshot") or {}).get("chat") if isinstance(obj.get("snapshot"), dict) else None
    chat_user = snap_chat.get("user_id") if isinstance(snap_chat, dict) else None
    # the chat's author owns it when the judge is that author; else no owner (node/ownership.py)
    owner = who if not chat_user or ctx.who(chat_user, "snapshot.chat.user_id") == who else None
    if isinstance(meta_in.get("arena"), bool):
        meta["arena"] = meta_in["arena"]
    records = [Record(NAME, key, prompt, [response], fb, owner=owner if rated is not None else None,
                      timestamp=ts, meta=meta)]
    siblings = data.get("sibling_model_ids")
    if isinstance(siblings, list) and model:
        outcome = {1: "a", -1: "b"}.get(thumbs or 0, "tie")
        for k, s in enumerate(siblings):
            if isinstance(s, str) and s and s != model:
                pw = Feedback("pairwise", who, {"a": 0, "b": 1, "outcome": outcome, "strength": 1.0}, timestamp=ts)
                records.append(Record(NAME, f"{key}/vs/{k}", [], [Response("", model), Response("", s)], [pw],
                                      owner=None, timestamp=ts, meta={"no_text": True, "arena": True}))
    return records


def detect(obj: dict) -> bool:
    """Does this object look like an Open WebUI feedback?"""
    return ("user_id" in obj and isinstance(obj.get("data"), dict)
            and (isinstance(obj.get("snapshot"), dict) or isinstance(obj.get("meta"), dict)))


IMPORTER = Importer(NAME, parse, detect, description="Open WebUI feedback export (thumbs, 1-10 rating, arena)")
