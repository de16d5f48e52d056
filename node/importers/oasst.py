"""OpenAssistant message trees (export format: one tree per object).

`{"message_tree_id", "tree_state", "prompt": <message>}` where a message has `message_id`,
`parent_id`, `text`, `role` ("prompter"/"assistant"), `lang`, `deleted`, `synthetic`,
`model_name` (synthetic only), `rank` (0 = best among siblings), `emojis` ({"+1": n, "-1": n,
"red_flag": n, "_skip_*": n}), optionally `labels` ({name: {"value", "count"}}) and
`created_date`, and `replies` (child messages).

The tree is walked depth-first. Every prompter message with at least one (non-deleted) assistant
reply gives one Record: prompt = the path from the root down to that prompter message (prompter →
"user", assistant → "assistant"), responses = its assistant replies in file order. Feedback:
- ranking: when two or more of those replies carry `rank`, one ranking item (best first);
- labels per reply (and, with response None, for the prompter message itself):
  "thumbs_up_count" / "thumbs_down_count" / "red_flag_count" from `emojis` (+1, -1, red_flag;
  the `_skip_*` task-queue counters are ignored), and each `labels` entry as a label with its
  value and count. Emojis come from many anonymous volunteers, so they are stored as counts, not
  as thumbs items of one person.
The export has no user ids: `contributor` is required; it is used for all feedback and as owner
(the conversation text is the contributor's). Synthetic trees (machine-generated seed data) get
owner None and meta["synthetic"] = True; reply models come from `model_name`.
Key: "<message_tree_id>/<prompter message_id>". Language: `lang` of the prompter message.

Detected by: `message_tree_id` and an object `prompt`.
"""

from __future__ import annotations

from node.importers.common import Context, Importer, choice, get, language, text, timestamp
from node.schema import Feedback, Message, Record, Response, SchemaError

NAME = "oasst"
ROLE = {"prompter": "user", "assistant": "assistant"}
EMOJI_LABELS = {"+1": "thumbs_up_count", "-1": "thumbs_down_count", "red_flag": "red_flag_count"}
MAX_DEPTH = 200


def _labels(msg: dict, response: int | None, who: str, where: str) -> list[Feedback]:
    out = []
    emojis = get(msg, "emojis", dict, required=False, default={}, path=f"{where}.emojis")
    for key, name in EMOJI_LABELS.items():
        n = emojis.get(key)
        if n is None:
            continue
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise SchemaError("expected a non-negative count", f"{where}.emojis.{key}")
        if n:
            out.append(Feedback("label", who, {"response": response, "name": name, "value": n}))
    labels = get(msg, "labels", dict, required=False, default={}, path=f"{where}.labels")
    for name, lab in labels.items():
        if isinstance(lab, dict) and isinstance(lab.get("value"), (int, float)):
            data = {"response": response, "name": str(name), "value": lab["value"]}
            if isinstance(lab.get("count"), int):
                data["count"] = lab["count"]
            out.append(Feedback("label", who, data))
    return out


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One OpenAssistant tree -> one Record per prompter message with replies."""
    who = ctx.override()
    tree_id = text(obj, "message_tree_id")
    root = get(obj, "prompt", dict)
    synthetic = bool(root.get("synthetic"))
    records: list[Record] = []

    def walk(msg: dict, path: list[Message], where: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise SchemaError("tree nested too deeply", where)
        role = choice(msg.get("role"), ROLE, f"{where}.role")
        here = path + [Message(role, text(msg, "text", path=f"{where}.text"))]
        replies = get(msg, "replies", list, required=False, default=[], path=f"{where}.replies")
        for i, r in enumerate(replies):
            if not isinstance(r, dict):
                raise SchemaError("expected a message object", f"{where}.replies[{i}]")
        if role == "user":
            _record(msg, here, [(i, r) for i, r in enumerate(replies)
                                if r.get("role") == "assistant" and not r.get("deleted")], where)
        for i, r in enumerate(replies):
            if not r.get("deleted"):
                walk(r, here, f"{where}.replies[{i}]", depth + 1)

    def _record(msg: dict, path: list[Message], replies: list[tuple[int, dict]], where: str) -> None:
        if not replies:
            return
        mid = text(msg, "message_id", path=f"{where}.message_id")
        responses, feedback, ranked = [], [], []
        for j, (i, r) in enumerate(replies):
            rwhere = f"{where}.replies[{i}]"
            model = r.get("model_name") if isinstance(r.get("model_name"), str) else None
            responses.append(Response(text(r, "text", path=f"{rwhere}.text"), model))
            rank = get(r, "rank", int, required=False, path=f"{rwhere}.rank")
            if rank is not None:
                ranked.append((rank, j))
            feedback += _labels(r, j, who, rwhere)
        if len(ranked) >= 2:
            feedback.insert(0, Feedback("ranking", who, {"order": [j for _, j in sorted(ranked)]}))
        feedback += _labels(msg, None, who, where)
        meta = {"tree_id": tree_id, "depth": len(path)}
        if synthetic:
            meta["synthetic"] = True
        if isinstance(obj.get("tree_state"), str):
            meta["tree_state"] = obj["tree_state"]
        records.append(Record(
            NAME, f"{tree_id}/{mid}", path, responses, feedback,
            owner=None if synthetic else who,
            language=language(msg.get("lang"), f"{where}.lang"),
            timestamp=timestamp(msg.get("created_date"), f"{where}.created_date"),
            meta=meta))

    walk(root, [], "prompt", 0)
    return records


def detect(obj: dict) -> bool:
    """Does this object look like an OpenAssistant tree?"""
    return "message_tree_id" in obj and isinstance(obj.get("prompt"), dict)


IMPORTER = Importer(NAME, parse, detect, needs_contributor=True,
                    description="OpenAssistant message trees: rankings of sibling replies, emoji counts")
