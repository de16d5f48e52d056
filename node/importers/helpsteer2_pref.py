"""NVIDIA HelpSteer2 preferences (`preference/preference.jsonl.gz` of `nvidia/HelpSteer2`).

Fields: `split`, `prompt` (multi-turn prompts hold earlier turns inline, marked
"<extra_id_1>Assistant" / "<extra_id_1>User", as in HelpSteer2's ratings file), `response_1`,
`response_2`, `preference_strength` (-3..3: -3 Response 1 is much better than Response 2, -2
better, -1 slightly better, 0 neither, 1..3 the same for Response 2), `preference_statement`,
optionally `preference_elaboration`, `three_most_similar_preferences`,
`all_preferences_unprocessed`.

→ one Record: responses = [response_1, response_2]; one pairwise item, outcome "a" for a negative
strength, "b" for a positive one, "tie" for 0, strength |s| / 3 (1.0 for a tie); the
`preference_statement` (the annotators' justification, free text) as one critique on the whole
conversation. The file has no annotator ids: `contributor` is required; owner None. Key: hash of
the object. meta: split.

Detected by: `response_1`, `response_2` and `preference_strength`.
"""

from __future__ import annotations

from node.importers.common import Context, Importer, get, number, stable_hash, text
from node.importers.helpsteer2 import split_prompt
from node.schema import Feedback, Record, Response, SchemaError

NAME = "helpsteer2-preference"


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One HelpSteer2 preference row -> one Record."""
    who = ctx.override()
    s = number(obj, "preference_strength", -3, 3)
    if s != int(s):
        raise SchemaError(f"expected an integer in -3..3, got {s}", "preference_strength")
    outcome = "a" if s < 0 else "b" if s > 0 else "tie"
    fb = [Feedback("pairwise", who, {"a": 0, "b": 1, "outcome": outcome, "strength": abs(s) / 3 if s else 1.0})]
    statement = get(obj, "preference_statement", str, required=False)
    if statement and statement.strip():
        fb.append(Feedback("critique", who, {"response": None, "form": "preference_statement"}, text=statement))
    meta = {"split": obj["split"][:20]} if isinstance(obj.get("split"), str) else {}
    return [Record(NAME, stable_hash(obj), split_prompt(text(obj, "prompt")),
                   [Response(text(obj, "response_1")), Response(text(obj, "response_2"))], fb, owner=None, meta=meta)]


def detect(obj: dict) -> bool:
    """Does this object look like a HelpSteer2 preference row?"""
    return all(k in obj for k in ("response_1", "response_2", "preference_strength"))


IMPORTER = Importer(NAME, parse, detect, needs_contributor=True,
                    description="HelpSteer2 preferences: two responses, strength -3..3")
