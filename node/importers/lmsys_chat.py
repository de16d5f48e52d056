"""LMSYS-Chat-1M (`lmsys/lmsys-chat-1m`): real conversations with 25 models, no feedback.

Fields: `conversation_id`, `model`, `conversation` ([{`role`, `content`}]), `turn`, `language`,
`openai_moderation` (one {categories, category_scores, flagged} per turn), `redacted`.

→ one Record per conversation without feedback, as WildChat's (`wildchat.conversation_record`):
the last assistant message is the response (model `model`), the messages before it the prompt.
The release has no user ids at all: `contributor` is required and owns every conversation of the
file. Key: `conversation_id`. meta: turns, redacted, flagged.

Detected by: a `conversation` list, `conversation_id` and `openai_moderation`, without WildChat's keys.
"""

from __future__ import annotations

from node.importers import wildchat
from node.importers.common import Context, Importer
from node.schema import Record

NAME = "lmsys-chat"


def parse(obj: dict, ctx: Context) -> list[Record]:
    """One LMSYS-Chat-1M conversation -> one Record (no feedback)."""
    return [wildchat.conversation_record(NAME, obj, ctx, ctx.override(), ("conversation_id",))]


def detect(obj: dict) -> bool:
    """Does this object look like an LMSYS-Chat-1M row?"""
    return (isinstance(obj.get("conversation"), list) and "conversation_id" in obj and "openai_moderation" in obj
            and not wildchat.detect(obj))


IMPORTER = Importer(NAME, parse, detect, needs_contributor=True,
                    description="LMSYS-Chat-1M conversations, no feedback, no user ids")
