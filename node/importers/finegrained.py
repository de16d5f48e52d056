"""FineGrainedRLHF qa-feedback (`tasks/qa_feedback/data/*_feedback.json`).

Fields: `question`, `passages` ([[title, sentence, ...], ...]), `gold`, `prediction 1..4`,
`preference` (6 ints for 1v2, 1v3, 1v4, 2v3, 2v4, 3v4: 1 = first preferred, 2 = second, 0 = no
preference), `feedback` on prediction 1: `errors` [{error type, explanation, start, end}],
`missing-info` [{error type, passage_id, sentence_id}], `corrected-prediction`.

→ one Record: prompt = a system message with the grounding passages ("title: sentences", one
passage per paragraph, numbered from 1 as in `passage_id`) then the user question; responses =
the 4 predictions (no model names: one policy model). Feedback, all from the `contributor`
override (the file has no annotator ids, so it is required):
- 6 pairwise items (outcome a / b / tie);
- one label per error span on response 0: name "error_span", value = error type, with `start`
  and `end` character offsets (the span's text and explanation are not copied);
- one label per missing-info entry, response 0: name "missing_info", value = error type, with
  `passage_id` and `sentence_id`;
- one critique on response 0 with the corrected prediction, when it differs from prediction 1.
The gold reference answer is not stored. owner None (benchmark questions). Key: hash of the
object (no ids in the format).

Detected by: `prediction 1` and `preference`.
"""

from __future__ import annotations

from node.importers.common import Context, Importer, choice, get, stable_hash, text
from node.schema import Feedback, Message, Record, Response, SchemaError

NAME = "finegrained"
PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
OUTCOME = {1: "a", 2: "b", 0: "tie"}


def _passages(obj: dict) -> str:
    ps = get(obj, "passages", list, required=False, default=[])
    out = []
    for i, p in enumerate(ps, start=1):
        if not isinstance(p, list) or not all(isinstance(s, str) for s in p):
            raise SchemaError(f"passage {i}: expected a list of strings", "passages")
        if p:
            out.append(f"[{i}] {p[0]}: " + " ".join(s.strip() for s in p[1:]))
    return "\n\n".join(out)


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One qa-feedback object -> one Record."""
    who = ctx.override()
    preds = [text(obj, f"prediction {i}") for i in range(1, 5)]
    prefs = get(obj, "preference", list)
    if len(prefs) != len(PAIRS):
        raise SchemaError(f"expected {len(PAIRS)} values (1v2, 1v3, 1v4, 2v3, 2v4, 3v4), got {len(prefs)}", "preference")
    feedback = []
    for (a, b), p in zip(PAIRS, prefs):
        feedback.append(Feedback("pairwise", who, {"a": a, "b": b, "outcome": choice(p, OUTCOME, "preference")}))
    fb = get(obj, "feedback", dict, required=False, default={})
    for j, err in enumerate(get(fb, "errors", list, required=False, default=[], path="feedback.errors")):
        where = f"feedback.errors[{j}]"
        if not isinstance(err, dict):
            raise SchemaError("expected an object", where)
        kind = text(err, "error type", path=f"{where}.error type")
        start = get(err, "start", int, path=f"{where}.start")
        end = get(err, "end", int, path=f"{where}.end")
        if not 0 <= start <= end <= len(preds[0]):
            raise SchemaError(f"span {start}..{end} outside prediction 1 ({len(preds[0])} characters)", where)
        feedback.append(Feedback("label", who, {"response": 0, "name": "error_span", "value": kind,
                                                "start": start, "end": end}))
    for j, miss in enumerate(get(fb, "missing-info", list, required=False, default=[], path="feedback.missing-info")):
        where = f"feedback.missing-info[{j}]"
        if not isinstance(miss, dict):
            raise SchemaError("expected an object", where)
        data = {"response": 0, "name": "missing_info", "value": text(miss, "error type", path=f"{where}.error type")}
        for k in ("passage_id", "sentence_id"):
            v = miss.get(k)
            if isinstance(v, int) or (isinstance(v, list) and all(isinstance(x, int) for x in v)):
                data[k] = v
        feedback.append(Feedback("label", who, data))
    corrected = get(fb, "corrected-prediction", str, required=False, path="feedback.corrected-prediction")
    if corrected and corrected.strip() and corrected.strip() != preds[0].strip():
        feedback.append(Feedback("critique", who, {"response": 0, "form": "corrected_response"}, text=corrected))
    prompt = []
    passages = _passages(obj)
    if passages:
        prompt.append(Message("system", passages))
    prompt.append(Message("user", text(obj, "question")))
    return [Record(NAME, stable_hash(obj), prompt, [Response(p) for p in preds], feedback, owner=None,
                   meta={"task": "long-form QA"})]


def detect(obj: dict) -> bool:
    """Does this object look like FineGrainedRLHF qa-feedback?"""
    return "prediction 1" in obj and "preference" in obj


IMPORTER = Importer(NAME, parse, detect, needs_contributor=True,
                    description="FineGrainedRLHF qa-feedback: 6 pairwise + error spans + corrections")
