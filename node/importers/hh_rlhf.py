"""Anthropic HH-RLHF (`{"chosen": transcript, "rejected": transcript}` per line).

A transcript is "\\n\\nHuman: ...\\n\\nAssistant: ..." turns. Both transcripts are split into turns
and compared turn by turn:
- usual case, they differ only in the final assistant turn: prompt = the shared turns, responses
  = [chosen reply, rejected reply], one pairwise item with outcome "a" (chosen wins);
- they diverge earlier: the shared turns up to the last shared human turn form the prompt, and
  each response is the rest of its transcript from the first assistant turn after it, kept in
  the transcript format ("Assistant: ...\\n\\nHuman: ...") so nothing is lost;
  meta["diverged"] = True and meta["diverged_at_turn"] = index of the first differing turn;
- identical transcripts: a pairwise "tie" (the worker had nothing to choose), meta["identical"].
The file has no ids: `contributor` is required and is also the owner (the crowdworker wrote the
human turns and chose). Key: hash of the object.

Detected by: string fields `chosen` and `rejected` and no `prompt` (with one: the `trl` importer).
"""

from __future__ import annotations

import re

from node.importers.common import Context, Importer, stable_hash, text
from node.schema import Feedback, Message, Record, Response, SchemaError

NAME = "hh-rlhf"
TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ ]?")
ROLE = {"Human": "user", "Assistant": "assistant"}


def split_turns(transcript: str, field: str) -> list[Message]:
    """A 'Human: ... Assistant: ...' transcript as Messages; SchemaError naming `field` when it is not one."""
    parts = TURN.split(transcript)
    # parts = [before, role, text, role, text, ...]
    if parts[0].strip():
        raise SchemaError("expected the transcript to start with 'Human:' or 'Assistant:'", field)
    if len(parts) < 3:
        raise SchemaError("no 'Human:'/'Assistant:' turns found", field)
    return [Message(ROLE[parts[i]], parts[i + 1]) for i in range(1, len(parts), 2)]


def _render(turns: list[Message]) -> str:
    return "\n\n".join(("Human: " if m.role == "user" else "Assistant: ") + m.text for m in turns)


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One HH-RLHF object -> one Record (a TRL row forced to this format is read as TRL's)."""
    if not (isinstance(obj.get("chosen"), str) and isinstance(obj.get("rejected"), str)) or "prompt" in obj:
        from node.importers import trl
        return trl.parse(obj, ctx)
    who = ctx.override()
    chosen = split_turns(text(obj, "chosen"), "chosen")
    rejected = split_turns(text(obj, "rejected"), "rejected")
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    meta: dict = {}
    if shared == len(chosen) == len(rejected):
        # identical: prompt = all but a final assistant turn
        cut = shared - 1 if chosen[-1].role == "assistant" else shared
        prompt, a, b = chosen[:cut], chosen[cut:], rejected[cut:]
        outcome, meta["identical"] = "tie", True
    elif (shared == len(chosen) - 1 == len(rejected) - 1 and chosen[-1].role == rejected[-1].role == "assistant"):
        prompt, a, b, outcome = chosen[:shared], chosen[shared:], rejected[shared:], "a"
    else:
        cut = shared
        while cut > 0 and chosen[cut - 1].role != "user":
            cut -= 1
        prompt, a, b, outcome = chosen[:cut], chosen[cut:], rejected[cut:], "a"
        meta.update(diverged=True, diverged_at_turn=shared)
        if not a or not b:
            raise SchemaError("one transcript is a prefix of the other: no reply to compare", "rejected" if not b else "chosen")
    if len(a) == 1 and a[0].role == "assistant" and len(b) == 1 and b[0].role == "assistant":
        responses = [Response(a[0].text), Response(b[0].text)]
    else:
        responses = [Response(_render(a)), Response(_render(b))]
    fb = Feedback("pairwise", who, {"a": 0, "b": 1, "outcome": outcome, "strength": 1.0})
    return [Record(NAME, stable_hash(obj), prompt, responses, [fb], owner=who, language=None, meta=meta)]


def detect(obj: dict) -> bool:
    """Does this object look like HH-RLHF?"""
    return isinstance(obj.get("chosen"), str) and isinstance(obj.get("rejected"), str) and "prompt" not in obj


IMPORTER = Importer(NAME, parse, detect, needs_contributor=True,
                    description="Anthropic HH-RLHF chosen/rejected transcripts")
