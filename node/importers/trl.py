"""The TRL preference layout (Hugging Face TRL's `DPOTrainer`/`RewardTrainer` datasets).

Three shapes, in the "standard" (strings) or "conversational" (message lists) form:
- explicit prompt: `{"prompt", "chosen", "rejected"}`; prompt a string or a list of messages,
  chosen/rejected a string or a list of (assistant) messages;
- implicit prompt, conversational: `{"chosen": [messages], "rejected": [messages]}`: both lists
  hold the whole conversation; the shared leading messages are the prompt;
- implicit prompt with strings is Anthropic's HH-RLHF transcript format: the `hh-rlhf` importer.
A message is `{"role", "content"}` (content a string or OpenAI content parts). Extra columns such
as `prompt_id`, `messages`, `score_chosen`, `score_rejected` (UltraFeedback-binarized) are ignored;
when chosen and rejected both begin with the prompt's messages, that copy is dropped.

→ one Record: prompt = the prompt messages; responses = [chosen reply, rejected reply] (a reply
of several messages is kept as one text, "role: text" per message); one pairwise item with
outcome "a" (chosen wins). The layout has no annotator ids: `contributor` is required; owner None
(the prompts are not known to be the contributor's). Key: hash of the object.

Detected by: `chosen` and `rejected`, with a `prompt` or with either given as a message list.
"""

from __future__ import annotations

from node.importers.common import Context, Importer, message, stable_hash
from node.schema import Feedback, Message, Record, Response, SchemaError

NAME = "trl"


def _messages(value, field: str) -> list[Message]:
    if isinstance(value, str):
        return [Message("user" if field == "prompt" else "assistant", value)]
    if not isinstance(value, list):
        raise SchemaError(f"expected a string or a list of messages, got {type(value).__name__}", field)
    return [message(m, f"{field}[{i}]") for i, m in enumerate(value)]


def _reply(msgs: list[Message], field: str) -> str:
    if not msgs:
        raise SchemaError("no reply", field)
    if len(msgs) == 1:
        return msgs[0].text
    return "\n\n".join(f"{m.role}: {m.text}" for m in msgs)


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One preference row -> one Record."""
    who = ctx.override()
    chosen = _messages(obj.get("chosen"), "chosen")
    rejected = _messages(obj.get("rejected"), "rejected")
    if obj.get("prompt") is not None:
        prompt = _messages(obj["prompt"], "prompt")
        n = len(prompt)  # rows whose chosen/rejected repeat the prompt (UltraFeedback-binarized): drop the copy
        if chosen[:n] == prompt and rejected[:n] == prompt and len(chosen) > n and len(rejected) > n:
            chosen, rejected = chosen[n:], rejected[n:]
    else:  # implicit prompt: the shared leading messages, cut before the last assistant turn both share
        shared = 0
        while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
            shared += 1
        while shared > 0 and chosen[shared - 1].role == "assistant" and (
                shared == len(chosen) or shared == len(rejected)):
            shared -= 1  # identical conversations: keep the final reply as the response
        while shared > 0 and chosen[shared - 1].role != "user":
            shared -= 1
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
        if not prompt:
            raise SchemaError("chosen and rejected share no prompt; give a `prompt` column", "chosen")
    responses = [Response(_reply(chosen, "chosen")), Response(_reply(rejected, "rejected"))]
    fb = Feedback("pairwise", who, {"a": 0, "b": 1, "outcome": "a", "strength": 1.0})
    return [Record(NAME, stable_hash(obj), prompt, responses, [fb], owner=None)]


def detect(obj: dict) -> bool:
    """chosen/rejected with a prompt, or as message lists."""
    if "chosen" not in obj or "rejected" not in obj:
        return False
    return "prompt" in obj or isinstance(obj["chosen"], list) or isinstance(obj["rejected"], list)


IMPORTER = Importer(NAME, parse, detect, needs_contributor=True,
                    description="TRL preference rows: prompt + chosen/rejected, strings or message lists")
