"""PRISM (`HannahRoseKirk/prism-alignment`): `conversations.jsonl` and `survey.jsonl`.

conversations: `conversation_id`, `user_id`, `conversation_type`, `opening_prompt`,
`conversation_turns`, `conversation_history` ([{`turn`, `role` ("user" | "model"), `content`,
`model_provider`, `model_name`, `score` (1..100), `if_chosen`, `within_turn_id`}]),
`performance_attributes` and `choice_attributes` ({values, fluency, factuality, safety,
diversity, creativity, helpfulness}: 1..100), `open_feedback`, `generated_datetime`, `timing_*`,
`included_in_balanced_subset`. → one Record per turn with model replies: prompt = the earlier
turns (each user message and the reply the user chose, `if_chosen`), then this turn's user
message; responses = this turn's model replies (by `within_turn_id`, with `model_name`);
feedback from the user (`user_id`), who also owns the conversation: one rating "score" (1..100)
per scored reply; on the first turn, one rating per `performance_attributes` entry on the chosen
reply; `open_feedback` as a critique of the conversation (first turn's Record). Key:
"<conversation_id>/<turn>". meta: conversation_type, turn.

survey: `user_id`, `survey_only`, `stated_prefs` ({values, fluency, …}: 1..100), `system_string`,
`self_description`, and demographics (age, gender, religion, ethnicity, location, …). → one
text-free Record per participant (key "survey/<user_id>", meta no_text/survey): one rating per
stated preference (dimension = attribute, scale 1..100, on an empty placeholder response) and the
participant's `system_string` and `self_description` as critiques (free text, encrypted).
Demographics are special-category data and are NOT imported.

Detected by: `conversation_history` and `user_id` (conversations); `user_id` with `stated_prefs`
or `self_description` (survey).
"""

from __future__ import annotations

from node.importers.common import Context, Importer, get, stable_hash, text, timestamp
from node.schema import Feedback, Message, Record, Response, SchemaError

NAME = "prism"
ATTRS = ("values", "fluency", "factuality", "safety", "diversity", "creativity", "helpfulness")
SCALE = [1, 100]


def _score(v, where: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 <= v <= 100:
        raise SchemaError("expected a number in 1..100", where)
    return v


def _conversation(obj: dict, ctx: Context) -> list[Record]:
    who = ctx.who(obj.get("user_id"), "user_id")
    cid = obj.get("conversation_id")
    cid = str(cid) if isinstance(cid, (str, int)) and str(cid) else stable_hash(obj)
    hist = get(obj, "conversation_history", list)
    turns: dict[int, dict] = {}
    for i, m in enumerate(hist):
        where = f"conversation_history[{i}]"
        if not isinstance(m, dict):
            raise SchemaError("expected an object", where)
        t = get(m, "turn", int, path=f"{where}.turn")
        slot = turns.setdefault(t, {"user": [], "model": []})
        r = m.get("role")
        if r == "user":
            slot["user"].append(text(m, "content", path=f"{where}.content"))
        elif r in ("model", "assistant"):
            slot["model"].append((m.get("within_turn_id") if isinstance(m.get("within_turn_id"), int) else i, i, m))
        else:
            raise SchemaError("expected 'user' or 'model'", f"{where}.role")
    ts = timestamp(obj.get("generated_datetime"), "generated_datetime")
    records: list[Record] = []
    context: list[Message] = []
    for t in sorted(turns):
        slot = turns[t]
        prompt = context + [Message("user", u) for u in slot["user"]]
        models = sorted(slot["model"], key=lambda x: (x[0], x[1]))
        responses, feedback, chosen = [], [], None
        for j, (_, i, m) in enumerate(models):
            where = f"conversation_history[{i}]"
            responses.append(Response(text(m, "content", path=f"{where}.content"),
                                      m.get("model_name") if isinstance(m.get("model_name"), str) else None))
            s = _score(m.get("score"), f"{where}.score")
            if s is not None:
                feedback.append(Feedback("rating", who, {"response": j, "dimension": "score", "value": s,
                                                         "scale": SCALE}, timestamp=ts))
            if m.get("if_chosen") is True and chosen is None:
                chosen = j
        if not records:  # first turn: the conversation-level feedback
            perf = get(obj, "performance_attributes", dict, required=False, default={})
            for a, v in perf.items():
                s = _score(v, f"performance_attributes.{a}")
                if s is not None and chosen is not None:
                    feedback.append(Feedback("rating", who, {"response": chosen, "dimension": str(a)[:40], "value": s,
                                                             "scale": SCALE}, timestamp=ts))
            fbtext = obj.get("open_feedback")
            if isinstance(fbtext, str) and fbtext.strip():
                feedback.append(Feedback("critique", who, {"response": None}, text=fbtext, timestamp=ts))
        meta = {"turn": t}
        if isinstance(obj.get("conversation_type"), str):
            meta["conversation_type"] = obj["conversation_type"][:40]
        if responses or prompt:
            records.append(Record(NAME, f"{cid}/{t}", prompt, responses, feedback, owner=who, timestamp=ts,
                                  language="en", meta=meta))
        context = prompt + ([Message("assistant", responses[chosen].text)] if chosen is not None else [])
    if not records:
        raise SchemaError("no turns", "conversation_history")
    return records


def _survey(obj: dict, ctx: Context) -> list[Record]:
    who = ctx.who(obj.get("user_id"), "user_id")
    feedback = []
    prefs = get(obj, "stated_prefs", dict, required=False, default={})
    for a, v in prefs.items():
        s = _score(v, f"stated_prefs.{a}")
        if s is not None:
            feedback.append(Feedback("rating", who, {"response": 0, "dimension": str(a)[:40], "value": s, "scale": SCALE}))
    for k in ("system_string", "self_description"):
        v = obj.get(k)
        if isinstance(v, str) and v.strip():
            feedback.append(Feedback("critique", who, {"response": None, "form": k}, text=v))
    uid = str(obj.get("user_id")).strip()
    return [Record(NAME, f"survey/{uid}", [], [Response("")], feedback, owner=who,
                   meta={"no_text": True, "survey": True})]


def parse(obj: dict, ctx: Context) -> list[Record]:
    """A PRISM conversation (one Record per turn) or survey row (one text-free Record)."""
    if "conversation_history" in obj:
        return _conversation(obj, ctx)
    return _survey(obj, ctx)


def detect(obj: dict) -> bool:
    """A PRISM conversation or survey row."""
    if "user_id" not in obj:
        return False
    return isinstance(obj.get("conversation_history"), list) or "stated_prefs" in obj or "self_description" in obj


IMPORTER = Importer(NAME, parse, detect, description="PRISM conversations (scores 1..100) and survey (stated preferences)")
