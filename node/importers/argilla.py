"""Argilla dataset exports, v1 (`FeedbackDataset`) and v2 (`rg.Dataset`), records with responses.

Shapes read (one record per object; JSON array or JSON Lines):
- v2 nested (`dataset.records.to_list(flatten=False)`, `to_json`): {"id", "status", "_server_id",
  "fields": {name: str | chat [{role, content}]}, "metadata", "suggestions", "vectors",
  "responses": {question: [{"value", "user_id", "status"?}, ...]}};
- v1 nested (`FeedbackRecord` dicts): {"external_id", "fields": {...}, "metadata",
  "responses": [{"user_id", "status", "values": {question: {"value"}}}], "suggestions"};
- v2 flat (`to_hub` / `to_datasets` tables): field columns, and per question
  "<q>.responses" (values), "<q>.responses.users" (user ids), "<q>.responses.status";
- v1 flat (`push_to_huggingface` / `format_as("datasets")`): field columns, and per question a
  column "<q>" holding [{"user_id", "value", "status"}], "<q>-suggestion", "external_id".
Lists of objects may also come as Hugging Face's struct of lists ({"user_id": [...], "value": [...]}).

Fields: names that look like responses (response, completion, answer, output, generation, chosen,
rejected, …) are the responses, in field order; the other text fields form the prompt (a chat
field gives its messages). A record with no response-like field is judged as a whole: its text is
one response.
Responses become feedback from their annotator (`user_id`; "discarded" and "draft" responses are
skipped): a number → rating on the response the question names (else the only response; else a
label on the record), scale 0..10 (Argilla's rating range; the export does not carry the
question's own options); a list of {"value", "rank"} (v1) or of option names (v2) naming
response fields (by name, or by the number they end with) → ranking; a boolean or short string → label; a list of strings → one label per
item; span answers → one label per span; a long string (text question) → critique. Owner None
(the records' text is the dataset's, not the annotators'). Key: `id`, `external_id`,
`_server_id`, else a hash of the object.

Detected by: `fields` with `responses`; or a "<q>.responses.users" column; or a column holding
[{"user_id", "value", ...}].
"""

from __future__ import annotations

import re

from node.importers.common import Context, Importer, content_text, role, stable_hash
from node.schema import Feedback, Message, Record, Response, SchemaError

NAME = "argilla"
RESPONSE_NAME = re.compile(r"(response|completion|answer|output|generation|chosen|rejected|reply|candidate)",
                           re.IGNORECASE)
META_KEYS = {"id", "status", "_server_id", "external_id", "metadata", "suggestions", "vectors", "inserted_at",
             "updated_at"}
SCALE = [0, 10]
SKIP_STATUS = {"discarded", "draft"}
TRAILING_NUMBER = re.compile(r"(\d+)\s*$")


def _rows(v):
    """A Hugging Face struct-of-lists ({"user_id": [...], "value": [...]}) as a list of dicts; else v."""
    if isinstance(v, dict) and v and all(isinstance(c, list) for c in v.values()):
        n = {len(c) for c in v.values()}
        if len(n) == 1:
            return [{k: c[i] for k, c in v.items()} for i in range(n.pop())]
    return v


def _is_vote_list(v) -> bool:
    v = _rows(v)
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) and "user_id" in x and "value" in x for x in v)


def _normalise(obj: dict) -> tuple[dict, list[tuple[str, str, object, object]]]:
    """(fields, [(question, user_id, value, status)]) from any of the four shapes."""
    votes: list[tuple[str, str, object, object]] = []
    if isinstance(obj.get("fields"), dict):
        fields = obj["fields"]
        resp = obj.get("responses")
        if isinstance(resp, dict):  # v2 nested
            for q, lst in resp.items():
                for x in lst if isinstance(lst, list) else []:
                    if isinstance(x, dict):
                        votes.append((str(q), x.get("user_id"), x.get("value"), x.get("status")))
        elif isinstance(resp, list):  # v1 nested
            for x in resp:
                if isinstance(x, dict):
                    for q, v in (x.get("values") or {}).items():
                        votes.append((str(q), x.get("user_id"), v.get("value") if isinstance(v, dict) else v,
                                      x.get("status")))
        return fields, votes
    fields, questions = {}, set()
    for k, v in obj.items():
        if k.endswith(".responses.users"):
            questions.add(k[:-len(".responses.users")])
        elif _is_vote_list(v):
            questions.add(k)
    for q in questions:
        if _is_vote_list(obj.get(q)):
            for x in _rows(obj[q]):
                votes.append((q, x.get("user_id"), x.get("value"), x.get("status")))
        else:
            values, users = obj.get(f"{q}.responses") or [], obj.get(f"{q}.responses.users") or []
            status = obj.get(f"{q}.responses.status") or []
            if not isinstance(values, list) or not isinstance(users, list) or len(values) != len(users):
                raise SchemaError("responses and responses.users differ in length", f"{q}.responses")
            for i, (v, u) in enumerate(zip(values, users)):
                votes.append((q, u, v, status[i] if isinstance(status, list) and i < len(status) else None))
    for k, v in obj.items():
        base = k.split(".")[0].split("-suggestion")[0]
        if k in META_KEYS or base in questions or k.startswith("_") or "suggestion" in k:
            continue
        if isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(m, dict) and "content" in m for m in v)):
            fields[k] = v
    return fields, votes


def _text_messages(name: str, v, default_role: str) -> list[Message]:
    if isinstance(v, str):
        return [Message(default_role, v)]
    if isinstance(v, list):
        return [Message(role(m.get("role"), f"fields.{name}[{i}].role"),
                        content_text(m.get("content"), f"fields.{name}[{i}].content")) for i, m in enumerate(v)]
    return []


def _number(name: str) -> str | None:
    m = TRAILING_NUMBER.search(name)
    return m.group(1) if m else None


def _response_order(names: list[str], resp_names: list[str]) -> list[int] | None:
    """Ranked options as response indices: by field name, else by a shared trailing number
    ("reply-2" ranks the field "response2"); None when the options are not the responses."""
    if len(names) < 2 or len(set(names)) != len(names):
        return None
    if set(names) <= set(resp_names):
        return [resp_names.index(n) for n in names]
    by_number = {_number(n): i for i, n in enumerate(resp_names)}
    nums = [_number(n) for n in names]
    if None not in nums and None not in by_number and len(by_number) == len(resp_names) and set(nums) <= set(by_number):
        return [by_number[k] for k in nums]
    return None


def _feedback(q: str, who: str, v, resp_names: list[str]) -> list[Feedback]:
    def target() -> int | None:
        hits = [i for i, n in enumerate(resp_names) if n.lower() in q.lower()]
        return hits[0] if len(hits) == 1 else (0 if len(resp_names) == 1 else None)

    if isinstance(v, bool):
        return [Feedback("label", who, {"response": target(), "name": q, "value": v})]
    if isinstance(v, (int, float)):
        t = target()
        if t is not None and SCALE[0] <= v <= SCALE[1]:
            return [Feedback("rating", who, {"response": t, "dimension": q, "value": v, "scale": SCALE})]
        return [Feedback("label", who, {"response": t, "name": q, "value": v})]
    if isinstance(v, str):
        if len(v) <= 64 and "\n" not in v:
            return [Feedback("label", who, {"response": target(), "name": q, "value": v})]
        return [Feedback("critique", who, {"response": target()}, text=v)] if v.strip() else []
    v = _rows(v)
    if isinstance(v, list) and v:
        if all(isinstance(x, dict) and "rank" in x for x in v):  # v1 ranking
            ranked = sorted(((x.get("rank") or 0), str(x.get("value"))) for x in v)
            names = [n for _, n in ranked]
        elif all(isinstance(x, str) for x in v):
            names = list(v)
        elif all(isinstance(x, dict) and "start" in x and "end" in x for x in v):  # spans
            return [Feedback("label", who, {"response": target(), "name": q, "value": str(x.get("label"))[:64],
                                            "start": x["start"], "end": x["end"]}) for x in v
                    if isinstance(x.get("start"), int) and isinstance(x.get("end"), int)]
        else:
            raise SchemaError("unsupported response value", q)
        order = _response_order(names, resp_names)
        if order is not None:
            return [Feedback("ranking", who, {"order": order})]
        return [Feedback("label", who, {"response": target(), "name": q, "value": n[:64]}) for n in names]
    return []


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One Argilla record -> one Record."""
    fields, votes = _normalise(obj)
    prompt, responses, resp_names = [], [], []
    for name, v in fields.items():
        if RESPONSE_NAME.search(name) and isinstance(v, str):
            responses.append(Response(v))
            resp_names.append(name)
        else:
            prompt += _text_messages(name, v, "user")
    if not responses:
        if not prompt:
            raise SchemaError("no text fields", "fields")
        responses = [Response("\n\n".join(m.text for m in prompt))]
        resp_names, prompt = ["record"], []
    feedback = []
    for q, user, value, status in votes:
        if isinstance(status, str) and status.lower() in SKIP_STATUS:
            continue
        if value is None:
            continue
        feedback += _feedback(q, ctx.who(user, f"{q}.user_id"), value, resp_names)
    key = next((str(obj[k]) for k in ("id", "external_id", "_server_id")
                if isinstance(obj.get(k), (str, int)) and not isinstance(obj.get(k), bool) and str(obj[k])), None)
    return [Record(NAME, key or stable_hash(obj), prompt, responses, feedback, owner=None)]


def detect(obj: dict) -> bool:
    """Does this object look like an Argilla record?"""
    if isinstance(obj.get("fields"), dict) and "responses" in obj:
        return True
    return any(k.endswith(".responses.users") for k in obj) or any(_is_vote_list(v) for v in obj.values())


IMPORTER = Importer(NAME, parse, detect, description="Argilla v1/v2 records: responses by user_id")
