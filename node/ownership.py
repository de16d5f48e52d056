"""The ownership rule: every row of the store belongs to exactly one person (issue 10, finding 7).

A record with an owner (a member's own conversation) may carry only its owner's feedback. Otherwise
another person's feedback would ride on the owner's conversation: when the owner is not eligible
(no consent yet, waiting period, withdrawal) the consent gate (node/consent.py, `Store.records`)
drops the whole conversation, and `forget` deletes it, taking the other person's rows with it. So
one person's status would change which data of another person is used, against the neighbouring
relation of ARCHITECTURE.md invariant 4 (add/remove one person with all their data) and invariant 8.
Feedback by other people belongs on a conversation with no owner (benchmark prompts, shared
arenas), where each item is gated by its own contributor's status. `Store.add_record` enforces it.
"""

from __future__ import annotations

from node.schema import Record


class OwnershipError(ValueError):
    """A member's conversation carries someone else's feedback; `index` is the first offending item
    of `Record.feedback` (the field is `feedback[index].contributor`)."""

    def __init__(self, rec: Record, index: int):
        self.index = index
        who = rec.feedback[index].contributor
        super().__init__(
            f"record {rec.source}:{rec.key}: feedback[{index}] is by contributor {who!r} but the conversation is "
            f"owned by {rec.owner!r}; a member's conversation may carry only its owner's feedback, so that one "
            "person's consent, eligibility or withdrawal never removes another person's rows (import others' "
            "feedback on a conversation with no owner)")


def check_ownership(rec: Record) -> None:
    """Raise OwnershipError unless every feedback item of a record with an owner is the owner's."""
    if rec.owner:
        for i, f in enumerate(rec.feedback):
            if f.contributor != rec.owner:
                raise OwnershipError(rec, i)
