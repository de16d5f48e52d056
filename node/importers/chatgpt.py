"""ChatGPT's data export (Settings → Data controls → Export: `conversations.json`, with
`message_feedback.json` and `user.json` beside it in the archive).

conversations.json: a JSON array of conversations `{"id" (or "conversation_id"), "title",
"create_time", "update_time", "current_node", "default_model_slug", "mapping": {node_id: {"id",
"parent", "children", "message": null | {"id", "author": {"role": "user" | "assistant" | "system"
| "tool", ...}, "create_time", "content": {"content_type": "text" | "multimodal_text" | "code" |
…, "parts": [str | {image…}]}, "recipient", "metadata": {"model_slug", ...}}}}}`. The mapping is
a tree (edits and regenerations branch it); the conversation shown is the path from the root to
`current_node`. On that path, user/assistant/system messages with text parts addressed to "all"
are kept (tool calls, tool output, hidden context and image parts are not); consecutive assistant
messages merge into one reply.

message_feedback.json (when beside it): a JSON array of `{"id", "conversation_id", "message_id",
"user_id", "rating": "thumbsUp" | "thumbsDown", "content": JSON string {"tags": [...], "text":
...}, "create_time"}`: thumbs on the rated reply, one label "tag" per tag, the text as a critique.

→ Records: one per conversation (key = its id) whose response is the last reply on the path and
whose prompt is everything before it, plus one for each other rated reply on the path (key
"<id>/<message_id>"); a conversation without a reply keeps its turns as the prompt, with no
response. The export is one person's: owner and judge are `--contributor`, else the `id` of
`user.json` beside the file, else the one `user_id` of message_feedback.json; without any of them
--contributor is required. Model: the reply's `metadata.model_slug`, else `default_model_slug`.
meta: dropped_turns (user turns after the last reply).

Detected by: a `mapping` object with `current_node` or `title`.
"""

from __future__ import annotations

import json
import os

from node.importers.common import Context, Importer, get, stable_hash, timestamp
from node.schema import Feedback, Message, Record, Response, SchemaError

NAME = "chatgpt"
THUMBS = {"thumbsup": 1, "thumbs_up": 1, "up": 1, "thumbsdown": -1, "thumbs_down": -1, "down": -1}
TEXT_TYPES = ("text", "multimodal_text")
MAX_COMPANION = 50_000_000


def _companion(ctx: Context, name: str):
    """A JSON file beside the imported one (cached), None when absent or unreadable."""
    if name not in ctx._cache:
        ctx._cache[name] = None
        if ctx.path:
            p = os.path.join(os.path.dirname(os.path.abspath(ctx.path)), name)
            if os.path.isfile(p) and os.path.getsize(p) <= MAX_COMPANION and os.path.abspath(p) != os.path.abspath(ctx.path):
                try:
                    with open(p, encoding="utf-8-sig") as f:
                        ctx._cache[name] = json.load(f)
                except (OSError, ValueError):
                    ctx._cache[name] = None
    return ctx._cache[name]


def _feedback_index(ctx: Context) -> dict:
    if "_fb_index" not in ctx._cache:
        idx: dict = {}
        rows = _companion(ctx, "message_feedback.json")
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and isinstance(row.get("message_id"), str):
                idx.setdefault((row.get("conversation_id"), row["message_id"]), []).append(row)
        ctx._cache["_fb_index"] = idx
    return ctx._cache["_fb_index"]


def _owner(ctx: Context) -> str:
    """The exporting person: --contributor, else user.json's id, else the one user_id of the feedback file."""
    if ctx.contributor:
        return ctx.contributor
    user = _companion(ctx, "user.json")
    if isinstance(user, dict) and isinstance(user.get("id"), str) and user["id"].strip():
        return ctx.who(user["id"], "user.json id")
    ids = {row["user_id"].strip() for rows in _feedback_index(ctx).values() for row in rows
           if isinstance(row.get("user_id"), str) and row["user_id"].strip()}
    if len(ids) == 1:
        return ctx.who(ids.pop(), "message_feedback.json user_id")
    raise SchemaError("a ChatGPT export names no user in conversations.json and no user.json is beside it; "
                      "pass --contributor ID (the pseudonymous id of the person who exported it)", "contributor")


def _path(mapping: dict, current) -> list[dict]:
    if not isinstance(current, str) or current not in mapping:
        leaves = [k for k, n in mapping.items() if isinstance(n, dict) and not n.get("children")]
        if not leaves:
            raise SchemaError("no leaf message", "current_node")
        current = leaves[-1]
    out, seen = [], set()
    while current is not None:
        if current in seen or len(seen) > 100_000:
            raise SchemaError("the mapping has a cycle", "mapping")
        seen.add(current)
        node = mapping.get(current)
        if not isinstance(node, dict):
            if out:  # the root's parent may be a placeholder id that is not in the mapping
                break
            raise SchemaError("the current node is not in the mapping", "current_node")
        out.append(node)
        current = node.get("parent")
    return out[::-1]


def _message(node: dict, where: str) -> tuple[str, str, str, dict] | None:
    """(role, text, message id, message) for a visible text message, else None."""
    m = node.get("message")
    if not isinstance(m, dict):
        return None
    author = m.get("author") if isinstance(m.get("author"), dict) else {}
    r = author.get("role")
    if r not in ("user", "assistant", "system"):
        return None
    meta = m.get("metadata") if isinstance(m.get("metadata"), dict) else {}
    if meta.get("is_visually_hidden_from_conversation") or m.get("recipient", "all") != "all":
        return None
    content = m.get("content") if isinstance(m.get("content"), dict) else {}
    if content.get("content_type", "text") not in TEXT_TYPES:
        return None
    parts = content.get("parts")
    if parts is None:
        return None
    if not isinstance(parts, list):
        raise SchemaError("expected a list", f"{where}.message.content.parts")
    t = "\n".join(p for p in parts if isinstance(p, str))
    if not t.strip():
        return None
    return r, t, str(m.get("id") or node.get("id") or ""), m


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One ChatGPT conversation -> Records (the final reply, and every other rated reply)."""
    mapping = get(obj, "mapping", dict)
    cid = obj.get("id", obj.get("conversation_id"))
    cid = str(cid) if isinstance(cid, (str, int)) and str(cid) else stable_hash(obj)
    turns: list[tuple[str, str, list[str], dict]] = []  # role, text, message ids, last message
    for node in _path(mapping, obj.get("current_node")):
        got = _message(node, f"mapping.{str(node.get('id'))[:40]}")
        if got is None:
            continue
        r, t, mid, m = got
        if turns and r == "assistant" == turns[-1][0]:
            turns[-1] = (r, turns[-1][1] + "\n\n" + t, turns[-1][2] + [mid], m)
        else:
            turns.append((r, t, [mid], m))
    replies = [i for i, x in enumerate(turns) if x[0] == "assistant"]
    if not replies:  # a conversation that got no reply: kept as the owner's prompt, no response
        if not turns:
            raise SchemaError("no text message on the conversation's path", "mapping")
        return [Record(NAME, cid, [Message(x[0], x[1]) for x in turns], [], [], owner=_owner(ctx),
                       timestamp=timestamp(obj.get("create_time"), "create_time"))]
    index = _feedback_index(ctx)
    rated = {i: [row for mid in turns[i][2] for row in index.get((cid, mid), []) + index.get((None, mid), [])]
             for i in replies}
    who = _owner(ctx)
    default_model = obj.get("default_model_slug") if isinstance(obj.get("default_model_slug"), str) else None
    records = []
    for i in replies:
        if i != replies[-1] and not rated[i]:
            continue
        r, t, mids, m = turns[i]
        meta_m = m.get("metadata") if isinstance(m.get("metadata"), dict) else {}
        model = meta_m.get("model_slug") if isinstance(meta_m.get("model_slug"), str) else default_model
        feedback = []
        for row in rated[i]:
            ts = timestamp(row.get("create_time"), "message_feedback.json create_time")
            v = THUMBS.get(str(row.get("rating", "")).strip().lower())
            if v is not None:
                feedback.append(Feedback("thumbs", who, {"response": 0, "value": v}, timestamp=ts))
            content = row.get("content")
            if isinstance(content, str):
                try:
                    content = json.loads(content)
                except ValueError:
                    content = {"text": content}
            if isinstance(content, dict):
                for tag in content.get("tags") or []:
                    if isinstance(tag, str) and 0 < len(tag) <= 100:
                        feedback.append(Feedback("label", who, {"response": 0, "name": "tag", "value": tag},
                                                 timestamp=ts))
                if isinstance(content.get("text"), str) and content["text"].strip():
                    feedback.append(Feedback("critique", who, {"response": 0}, text=content["text"], timestamp=ts))
        prompt = [Message(x[0], x[1]) for x in turns[:i]]
        meta = {"dropped_turns": len(turns) - 1 - i} if i == replies[-1] and i < len(turns) - 1 else {}
        records.append(Record(NAME, cid if i == replies[-1] else f"{cid}/{mids[-1]}", prompt,
                              [Response(t, model)], feedback, owner=who,
                              timestamp=timestamp(m.get("create_time") or obj.get("create_time"), "create_time"),
                              meta=meta))
    return records


def needs_contributor(obj: dict, path: str | None = None) -> bool:
    """No user.json nor message_feedback.json with a user_id beside the file: --contributor is required."""
    ctx = Context(NAME, None, path=path)
    try:
        _owner(ctx)
    except SchemaError:
        return True
    return False


def detect(obj: dict) -> bool:
    """Does this object look like a ChatGPT export conversation?"""
    return isinstance(obj.get("mapping"), dict) and ("current_node" in obj or "title" in obj)


IMPORTER = Importer(NAME, parse, detect, needs_contributor=needs_contributor,
                    description="ChatGPT data export (conversations.json + message_feedback.json)")
