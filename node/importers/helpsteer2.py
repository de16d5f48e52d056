"""NVIDIA HelpSteer2 attribute ratings (`train.jsonl.gz` / `validation.jsonl.gz`).

Fields: `prompt`, `response`, and the five attributes `helpfulness`, `correctness`, `coherence`,
`complexity`, `verbosity`, each 0..4. Multi-turn prompts hold earlier turns inline, separated by
"<extra_id_1>Assistant" / "<extra_id_1>User" lines; they are split back into messages.

→ one Record: prompt = the user (and earlier assistant) turns, one response (no model name), five
rating items (dimension = attribute name, scale 0..4). Attributes that are absent are skipped;
at least one must be present. The file has no annotator ids: `contributor` is required; the
prompts are not the contributor's own text (owner None). Key: hash of the object.

Detected by: `prompt`, `response`, `helpfulness`.
"""

from __future__ import annotations

import re

from node.importers.common import Context, Importer, number, stable_hash, text
from node.schema import Feedback, Message, Record, Response, SchemaError

NAME = "helpsteer2"
ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
SCALE = (0, 4)
TURN = re.compile(r"\n?<extra_id_1>(User|Assistant)\n?")


def split_prompt(prompt: str) -> list[Message]:
    """The prompt's turns: HelpSteer2 marks later turns with <extra_id_1>User / Assistant."""
    parts = TURN.split(prompt)
    msgs = [Message("user", parts[0])] if parts[0].strip() or len(parts) == 1 else []
    for i in range(1, len(parts), 2):
        msgs.append(Message("user" if parts[i] == "User" else "assistant", parts[i + 1]))
    return msgs


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One HelpSteer2 object -> one Record (a preference row forced to this format is read as one)."""
    if "response_1" in obj and "response" not in obj:
        from node.importers import helpsteer2_pref
        return helpsteer2_pref.parse(obj, ctx)
    who = ctx.override()
    prompt = split_prompt(text(obj, "prompt"))
    feedback = []
    for dim in ATTRIBUTES:
        v = number(obj, dim, *SCALE, required=False)
        if v is not None:
            feedback.append(Feedback("rating", who, {"response": 0, "dimension": dim, "value": v, "scale": list(SCALE)}))
    if not feedback:
        raise SchemaError(f"no attribute ratings (expected {', '.join(ATTRIBUTES)})", "helpfulness")
    return [Record(NAME, stable_hash(obj), prompt, [Response(text(obj, "response"))], feedback, owner=None)]


def detect(obj: dict) -> bool:
    """Does this object look like HelpSteer2?"""
    return all(k in obj for k in ("prompt", "response", "helpfulness"))


IMPORTER = Importer(NAME, parse, detect, needs_contributor=True, description="HelpSteer2 attribute ratings 0..4")
