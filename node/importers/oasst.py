"""OpenAssistant message trees (export format: one tree per object).

`{"message_tree_id", "tree_state", "prompt": <message>}` where a message has `message_id`,
`parent_id`, `user_id` (the author's pseudonymous id; absent from some redistributions), `text`,
`role` ("prompter"/"assistant"), `lang`, `deleted`, `synthetic`, `model_name` (synthetic only),
`rank` (the consensus rank among siblings, 0 = best, merged from many volunteers' rankings),
`emojis` ({"+1": n, "-1": n, "red_flag": n, "_skip_*": n}; Hugging Face's flattening writes
{"name": [...], "count": [...]}), optionally `labels` ({name: {"value", "count"}}; flattened
{"name": [...], "value": [...], "count": [...]}) and `created_date`, and `replies` (child
messages). Flat message rows (oasst1/oasst2 `*.messages.jsonl`, the Hugging Face tables) are
rebuilt into these trees by `oasst_messages`.

The tree is walked depth-first. Every prompter message with at least one (non-deleted) assistant
reply gives one Record: prompt = the path from the root down to that prompter message (prompter →
"user", assistant → "assistant"), responses = its assistant replies in file order. Feedback:
- ranking: when two or more of those replies carry `rank`, one ranking item (best first);
- labels per reply (and, with response None, for the prompter message itself):
  "thumbs_up_count" / "thumbs_down_count" / "red_flag_count" from `emojis` (+1, -1, red_flag;
  the `_skip_*` task-queue counters are ignored), and each `labels` entry as a label with its
  value and count. Emojis come from many anonymous volunteers, so they are stored as counts, not
  as thumbs items of one person.
Who: the format says who WROTE each message (`user_id`) but not who ranked, voted or labelled
(rank, emojis and labels are consensus values over reviewers the format does not name). Each Record
is owned by the author of its prompter message (`user_id`, the person whose prompt is stored), so
`cairn node forget --contributor <prompter>` deletes it. The consensus feedback on a Record
(ranking, counts, labels) is attributed to that owner too: it is counted in the prompt author's
privacy unit (node/ownership.py: a member's conversation carries only its owner's feedback), and
the reviewers are not identified. No pseudo-contributor stands for "the volunteers". Assistant
authors whose replies sit in a prompter-owned Record are not contributors of it and cannot
withdraw their reply separately (forgetting the prompter removes it); meta["authors"] only counts
the distinct reply authors.
With `contributor` (required when the messages carry no `user_id`) it is used for all feedback and
as owner. Synthetic trees (machine-generated seed data) get owner None and meta["synthetic"] =
True (their feedback stays attributed to the prompter's `user_id`, or to `contributor`); reply
models come from `model_name`.
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


def _columns(d: dict, where: str) -> dict:
    """Hugging Face's flattened {"name": [...], "count": [...], "value": [...]} as {name: {...}}."""
    names = d.get("name")
    if not isinstance(names, list):
        return d
    out = {}
    for i, n in enumerate(names):
        entry = {}
        for k in ("count", "value"):
            col = d.get(k)
            if isinstance(col, list):
                if i >= len(col):
                    raise SchemaError(f"{k} has fewer entries than name", f"{where}.{k}")
                entry[k] = col[i]
        out[str(n)] = entry
    return out


def _labels(msg: dict, response: int | None, who: str, where: str) -> list[Feedback]:
    out = []
    emojis = get(msg, "emojis", dict, required=False, default={}, path=f"{where}.emojis")
    if isinstance(emojis.get("name"), list):
        emojis = {k: v.get("count") for k, v in _columns(emojis, f"{where}.emojis").items()}
    for key, name in EMOJI_LABELS.items():
        n = emojis.get(key)
        if n is None:
            continue
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise SchemaError("expected a non-negative count", f"{where}.emojis.{key}")
        if n:
            out.append(Feedback("label", who, {"response": response, "name": name, "value": n}))
    labels = _columns(get(msg, "labels", dict, required=False, default={}, path=f"{where}.labels"), f"{where}.labels")
    for name, lab in labels.items():
        if isinstance(lab, dict) and isinstance(lab.get("value"), (int, float)):
            data = {"response": response, "name": str(name), "value": lab["value"]}
            if isinstance(lab.get("count"), int):
                data["count"] = lab["count"]
            out.append(Feedback("label", who, data))
    return out


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One OpenAssistant tree -> one Record per prompter message with replies."""
    if "message_tree_id" in obj and "prompt" not in obj and "parent_id" in obj:
        raise SchemaError("a flat message row, not a tree: import the file as oasst-messages (it is detected "
                          "when --format is left out)", "prompt")
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
        author = ctx.who(msg.get("user_id"), f"{where}.user_id")  # the prompt's author: owner, and consensus feedback's unit
        responses, feedback, ranked = [], [], []
        for j, (i, r) in enumerate(replies):
            rwhere = f"{where}.replies[{i}]"
            model = r.get("model_name") if isinstance(r.get("model_name"), str) else None
            responses.append(Response(text(r, "text", path=f"{rwhere}.text"), model))
            rank = r.get("rank")
            if isinstance(rank, float) and rank.is_integer():  # tables store ranks as floats
                rank = int(rank)
            rank = get({"rank": rank}, "rank", int, required=False, path=f"{rwhere}.rank")
            if rank is not None:
                ranked.append((rank, j))
            feedback += _labels(r, j, author, rwhere)
        if len(ranked) >= 2:
            feedback.insert(0, Feedback("ranking", author, {"order": [j for _, j in sorted(ranked)]}))
        feedback += _labels(msg, None, author, where)
        owner = None if synthetic else author
        meta = {"tree_id": tree_id, "depth": len(path)}
        authors = {r.get("user_id") for _, r in replies if isinstance(r.get("user_id"), str)}
        if authors and not ctx.contributor:
            meta["authors"] = len(authors)
        if synthetic:
            meta["synthetic"] = True
        if isinstance(obj.get("tree_state"), str):
            meta["tree_state"] = obj["tree_state"]
        records.append(Record(
            NAME, f"{tree_id}/{mid}", path, responses, feedback,
            owner=owner,
            language=language(msg.get("lang"), f"{where}.lang"),
            timestamp=timestamp(msg.get("created_date"), f"{where}.created_date"),
            meta=meta))

    walk(root, [], "prompt", 0)
    return records


def detect(obj: dict) -> bool:
    """Does this object look like an OpenAssistant tree?"""
    return "message_tree_id" in obj and isinstance(obj.get("prompt"), dict)


def needs_contributor(obj: dict, path: str | None = None) -> bool:
    """Trees whose root message has no user_id (some redistributions strip them) need --contributor."""
    root = obj.get("prompt")
    return not (isinstance(root, dict) and isinstance(root.get("user_id"), str) and root["user_id"].strip())


IMPORTER = Importer(NAME, parse, detect, needs_contributor=needs_contributor,
                    description="OpenAssistant message trees: rankings of sibling replies, emoji counts")
