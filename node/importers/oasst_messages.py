"""OpenAssistant flat message rows (oasst1/oasst2 `*.messages.jsonl(.gz)` and the Hugging Face
`OpenAssistant/oasst1`, `oasst2` tables): one message per row.

Row fields (the published oasst schema): `message_id`, `parent_id` (null for a tree's root),
`user_id`, `created_date`, `text`, `role` ("prompter" | "assistant"), `lang`, `review_count`,
`review_result`, `deleted`, `rank`, `synthetic`, `model_name`, `detoxify`, `message_tree_id`,
`tree_state`, `emojis`, `labels` (both either {name: …} or Hugging Face's flattened
{"name": [...], "count": [...]}).

The rows are rebuilt into trees (children by `parent_id`, in file order) and each tree is then
imported exactly as an OpenAssistant tree export (`node.importers.oasst`: each Record owned by
its prompter's `user_id`, consensus feedback attributed to that owner). The whole file is read first (rows of a
tree need not be adjacent). A tree's Records carry the line (or record number) of its root row.
A row whose parent is not in the file (a sample, or a file filtered on `lang` or `deleted`) starts
a partial tree: its Records get meta["partial"] = True and a prompt that begins at that row. A
malformed row is an error at its own line (its subtree, then without a parent, starts a partial tree).

Detected by: `message_id`, `parent_id`, `role` and `text` (one message, no `replies`).
"""

from __future__ import annotations

from typing import Iterator

from node.importers import oasst
from node.importers.common import Context, Importer, choice
from node.importers.reader import RawRecord, RecordError
from node.schema import SchemaError

NAME = "oasst-messages"


def parse(obj: dict, ctx: Context):
    """Rows are parsed as a whole file (`parse_file`); a single row is not a Record."""
    raise SchemaError("flat OpenAssistant rows are imported as a whole file", "message_id")


def _row_error(path: str, item: RawRecord, field: str | None, msg: str) -> RecordError:
    return RecordError(path, item.line, field, msg, unit=item.unit)


def parse_file(path: str, items, ctx: Context) -> Iterator:
    """All rows of the file -> trees -> (line, Record) pairs and RecordErrors."""
    rows: dict[str, tuple[RawRecord, dict]] = {}
    order: list[str] = []
    for item in items:
        if isinstance(item, RecordError):
            yield item
            continue
        obj = item.obj
        mid = obj.get("message_id")
        if not isinstance(mid, str) or not mid:
            yield _row_error(path, item, "message_id", "missing" if mid is None else "expected a string")
            continue
        if mid in rows:
            yield _row_error(path, item, "message_id", "the same message_id appears twice in the file")
            continue
        if not isinstance(obj.get("text"), str):
            yield _row_error(path, item, "text", "missing" if obj.get("text") is None else "expected a string")
            continue
        try:
            choice(obj.get("role"), oasst.ROLE, "role")
        except SchemaError as e:
            yield _row_error(path, item, e.field, str(e))
            continue
        node = {k: v for k, v in obj.items() if k != "replies"}
        node["replies"] = []
        rows[mid] = (item, node)
        order.append(mid)
    roots, partial = [], set()
    for mid in order:
        item, node = rows[mid]
        parent = node.get("parent_id")
        if parent is None or parent == "":
            roots.append(mid)
        elif parent in rows:
            rows[parent][1]["replies"].append(node)
        else:  # a sample or a filtered file: the subtree is imported from here, marked partial
            roots.append(mid)
            partial.add(mid)
    for mid in roots:
        item, node = rows[mid]
        tree = {"message_tree_id": node.get("message_tree_id") or mid, "prompt": node}
        if isinstance(node.get("tree_state"), str):
            tree["tree_state"] = node["tree_state"]
        try:
            records = oasst.parse(tree, ctx)
            for r in records:
                r.validate()
        except SchemaError as e:
            yield _row_error(path, item, e.field, str(e))
            continue
        except RecursionError:
            yield _row_error(path, item, None, "tree nested too deeply")
            continue
        for r in records:
            if mid in partial:
                r.meta["partial"] = True
            yield item.line, r


def detect(obj: dict) -> bool:
    """One flat OpenAssistant message row?"""
    return all(k in obj for k in ("message_id", "parent_id", "role", "text")) and "replies" not in obj


def needs_contributor(obj: dict, path: str | None = None) -> bool:
    """Rows without user_id need --contributor."""
    return not (isinstance(obj.get("user_id"), str) and obj["user_id"].strip())


IMPORTER = Importer(NAME, parse, detect, needs_contributor=needs_contributor, parse_file=parse_file,
                    description="OpenAssistant flat message rows (oasst1/oasst2), rebuilt into trees")
