"""UltraFeedback (`openbmb/UltraFeedback`: GPT-4 annotations of four completions per instruction).

Fields: `source`, `instruction`, `models` (list), `completions`: [{`model`, `principle`,
`custom_system_prompt`, `response`, `annotations`: {`instruction_following`, `honesty`,
`truthfulness`, `helpfulness`: {`Rating` ("1".."5" or "N/A"), `Rationale`, optionally `Type`,
`Rationale For Rating`} (older releases: a one-element list of that object)},
`fine-grained_score` (mean of the aspect ratings), `overall_score` (1..10), `critique`}],
optionally `correct_answers`, `incorrect_answers`.

→ one Record: prompt = the instruction; responses = the completions with their models.
Feedback per completion: one rating per aspect with a numeric `Rating` (scale 1..5; "N/A"
skipped), or, when a completion has no usable aspect rating, `fine-grained_score` as dimension
"fine_grained" (1..5); `overall_score` as dimension "overall" (1..10); `critique` as a critique.
The annotator is GPT-4, not a member: `contributor` is required (whom the operator attributes
the file to); owner None. Rationales are not stored. Key: hash of the object. meta: source.

Detected by: `instruction` and a `completions` list.
"""

from __future__ import annotations

from node.importers.common import Context, Importer, get, stable_hash, text
from node.schema import Feedback, Message, Record, Response, SchemaError

NAME = "ultrafeedback"
ASPECTS = ("instruction_following", "honesty", "truthfulness", "helpfulness")


def _num(v, lo: float, hi: float, field: str) -> float | None:
    if v is None or (isinstance(v, str) and v.strip().upper() in ("N/A", "NA", "")):
        return None
    if isinstance(v, bool):
        raise SchemaError("expected a number", field)
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise SchemaError("expected a number or N/A", field) from None
    if not lo <= x <= hi:
        raise SchemaError(f"expected a number in {lo}..{hi}, got {x}", field)
    return x


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One UltraFeedback instruction -> one Record."""
    who = ctx.override()
    prompt = [Message("user", text(obj, "instruction"))]
    comps = get(obj, "completions", list)
    if not comps:
        raise SchemaError("no completions", "completions")
    responses, feedback = [], []
    for j, c in enumerate(comps):
        where = f"completions[{j}]"
        if not isinstance(c, dict):
            raise SchemaError("expected an object", where)
        model = c.get("model") if isinstance(c.get("model"), str) else None
        responses.append(Response(text(c, "response", path=f"{where}.response"), model))
        ann = get(c, "annotations", dict, required=False, default={}, path=f"{where}.annotations")
        rated = 0
        for aspect in ASPECTS:
            a = ann.get(aspect)
            if isinstance(a, list):
                a = a[0] if a else None
            if not isinstance(a, dict):
                continue
            v = _num(a.get("Rating"), 1, 5, f"{where}.annotations.{aspect}.Rating")
            if v is not None:
                feedback.append(Feedback("rating", who, {"response": j, "dimension": aspect, "value": v, "scale": [1, 5]}))
                rated += 1
        if not rated:
            v = _num(c.get("fine-grained_score"), 1, 5, f"{where}.fine-grained_score")
            if v is not None:
                feedback.append(Feedback("rating", who, {"response": j, "dimension": "fine_grained", "value": v,
                                                         "scale": [1, 5]}))
        v = _num(c.get("overall_score"), 1, 10, f"{where}.overall_score")
        if v is not None:
            feedback.append(Feedback("rating", who, {"response": j, "dimension": "overall", "value": v, "scale": [1, 10]}))
        crit = c.get("critique")
        if isinstance(crit, str) and crit.strip():
            feedback.append(Feedback("critique", who, {"response": j}, text=crit))
    meta = {"source": obj["source"][:100]} if isinstance(obj.get("source"), str) else {}
    return [Record(NAME, stable_hash(obj), prompt, responses, feedback, owner=None, meta=meta)]


def detect(obj: dict) -> bool:
    """Does this object look like an UltraFeedback row?"""
    return "instruction" in obj and isinstance(obj.get("completions"), list)


IMPORTER = Importer(NAME, parse, detect, needs_contributor=True,
                    description="UltraFeedback: four completions rated per aspect (GPT-4 annotations)")
