"""PandaLM human test set (`data/testset-v1.json`).

One comparison per object: `idx`, `motivation_app`, `cmp_key` ("<model1>_<model2>"), `instruction`,
`input` (may be ""), `response1`, `response2`, `annotator1..3` (1 = response1 better, 2 = response2
better, 0 = tie). → one Record: prompt = one user message (instruction, then the input after a
blank line when non-empty), responses = [response1, response2] with their models, and three
pairwise feedback items from contributors "annotator1..3" (through `Context.who`) (or the override). The prompts
are a benchmark's, not a member's: owner is None. Key: "idx:<idx>". A response stored as a JSON
boolean or number (6 rows of the published file have `true`) is kept as its text ("True").

Detected by: `cmp_key` and `annotator1`.
"""

from __future__ import annotations

from node.importers.common import Context, Importer, choice, get, text
from node.schema import Feedback, Message, Record, Response, SchemaError

NAME = "pandalm"
OUTCOME = {1: "a", 2: "b", 0: "tie"}
ANNOTATORS = ("annotator1", "annotator2", "annotator3")


def _response(obj: dict, name: str) -> str:
    # The published file has a few responses stored as JSON booleans (a model that answered
    # "True"); they are kept as their text.
    v = get(obj, name, (str, bool, int, float))
    return v if isinstance(v, str) else str(v)


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One PandaLM comparison -> one Record."""
    idx = get(obj, "idx", int)
    cmp_key = text(obj, "cmp_key")
    models = cmp_key.split("_")
    if len(models) != 2 or not all(models):
        raise SchemaError("expected '<model of response1>_<model of response2>'", "cmp_key")
    instruction = text(obj, "instruction")
    inp = text(obj, "input", required=False) or ""
    prompt = instruction if not inp.strip() else f"{instruction}\n\n{inp}"
    responses = [Response(_response(obj, "response1"), models[0]), Response(_response(obj, "response2"), models[1])]
    feedback = []
    for name in ANNOTATORS:
        outcome = choice(get(obj, name, int), OUTCOME, name)
        who = ctx.who(name, name)
        feedback.append(Feedback("pairwise", who, {"a": 0, "b": 1, "outcome": outcome, "strength": 1.0}))
    meta = {"app": obj["motivation_app"]} if isinstance(obj.get("motivation_app"), str) else {}
    return [Record(NAME, f"idx:{idx}", [Message("user", prompt)], responses, feedback, owner=None, meta=meta)]


def detect(obj: dict) -> bool:
    """Does this object look like a PandaLM comparison?"""
    return "cmp_key" in obj and "annotator1" in obj


IMPORTER = Importer(NAME, parse, detect, description="PandaLM human test set: 3 annotators per comparison")
