"""Tulu-1 human evaluation (open-instruct `eval_annotations_tulu_1.xlsx`, one row per object).

Fields: `id`, `instance_index`, `instance_id`, `prompt`, `model_a`, `model_b`, `completion_a`,
`completion_b`, `completion_a_is_acceptable`, `completion_b_is_acceptable` ("yes"/"no"),
`preference` (a-is-better, a-is-slightly-better, tie, b-is-slightly-better, b-is-better),
`evaluator`, `timestamp` ("YYYY-MM-DD HH:MM:SS").

→ one Record per annotation: prompt = one user message, responses = [completion_a, completion_b]
with their models; feedback from "tulu:<evaluator>": one pairwise item (better = strength 1.0,
slightly better = 0.5, tie = outcome "tie") and one label "acceptable" (True/False) per
completion, all stamped with the annotation time. The prompts are benchmark prompts: owner None.
Key: "id:<id>". meta: instance_id, instance_index.

Detected by: `completion_a`, `completion_b`, `preference`.
"""

from __future__ import annotations

from node.importers.common import Context, Importer, choice, get, text, timestamp
from node.schema import Feedback, Message, Record, Response

NAME = "tulu"
PREFERENCE = {
    "a-is-better": ("a", 1.0),
    "a-is-slightly-better": ("a", 0.5),
    "tie": ("tie", 1.0),
    "b-is-slightly-better": ("b", 0.5),
    "b-is-better": ("b", 1.0),
}
YES_NO = {"yes": True, "no": False}


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One Tulu-1 annotation -> one Record."""
    rid = get(obj, "id", int)
    who = ctx.who(obj.get("evaluator"), "evaluator")
    ts = timestamp(obj.get("timestamp"), "timestamp")
    responses = [Response(text(obj, "completion_a"), text(obj, "model_a")),
                 Response(text(obj, "completion_b"), text(obj, "model_b"))]
    outcome, strength = choice(obj.get("preference"), PREFERENCE, "preference")
    feedback = [Feedback("pairwise", who, {"a": 0, "b": 1, "outcome": outcome, "strength": strength}, timestamp=ts)]
    for i, side in enumerate("ab"):
        name = f"completion_{side}_is_acceptable"
        v = obj.get(name)
        if v is None or v == "":
            continue
        ok = choice(v.strip().lower() if isinstance(v, str) else v, YES_NO, name)
        feedback.append(Feedback("label", who, {"response": i, "name": "acceptable", "value": ok}, timestamp=ts))
    meta = {k: obj[k] for k in ("instance_id", "instance_index") if isinstance(obj.get(k), (str, int))}
    return [Record(NAME, f"id:{rid}", [Message("user", text(obj, "prompt"))], responses, feedback,
                   owner=None, meta=meta)]


def detect(obj: dict) -> bool:
    """Does this object look like a Tulu-1 annotation?"""
    return all(k in obj for k in ("completion_a", "completion_b", "preference"))


IMPORTER = Importer(NAME, parse, detect, description="Tulu-1 human eval: 5-level preference + acceptability")
