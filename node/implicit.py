"""Implicit feedback found in the chat text itself, extracted locally on the node.

A member's conversation often says how the previous answer went without any button being
pressed: the user thanks the assistant, corrects it, or asks the same thing again in other words.
This module finds those signals with simple, documented heuristics; the text never leaves the
node, only DP counts per signal do (node/queries.py, query kind `implicit_feedback`;
ARCHITECTURE.md invariant 1).

A signal is read from a USER turn that directly follows an ASSISTANT turn (so it reacts to that
answer). Turns are the record's prompt messages followed by its responses (a response is an
assistant turn). Per reacting user turn, at most one signal, checked in this order:

- **correction**: the turn opens with a negation or says the answer was wrong — starts with
  "no", "nope", "wrong", "incorrect", "that's not", "actually", or contains "that's wrong",
  "is wrong", "not correct", "not what I asked", "you made a mistake", "you misunderstood",
  "that is incorrect" (and a few French/Spanish/German equivalents).
- **thanks**: contains a thanking word: "thank", "thanks", "thx", "ty", "appreciate", "cheers",
  "merci", "gracias", "danke", "obrigad" (and is not a correction).
- **rephrase**: the turn is not a correction or thanks, but repeats the previous user turn in
  other words: word-set Jaccard similarity with it >= 0.5 (lower-cased words of 3+ letters) while
  the two turns are not identical. Users rephrase when the answer missed the point.

Only conversations a member wrote (`Record.owner` set) are read: a benchmark's prompts are no
one's chat. The heuristics are deliberately simple (precision over recall); they are counted, not
used to train anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from node.schema import Message, Record

_CORRECTION_START = re.compile(
    r"^\s*(no\b|nope\b|wrong\b|incorrect\b|that'?s not\b|that is not\b|actually\b|non\b|nein\b|falsch\b|incorrecto\b)",
    re.IGNORECASE,
)
_CORRECTION_ANY = re.compile(
    r"(that'?s wrong|that is wrong|\bis wrong\b|not correct|not what i (asked|meant|wanted)|you made a mistake|"
    r"you misunderstood|that is incorrect|that'?s incorrect|c'est faux|est incorrect|es incorrecto|das ist falsch)",
    re.IGNORECASE,
)
_THANKS = re.compile(r"\b(thank|thanks|thx|ty|appreciate[sd]?|cheers|merci|gracias|danke|obrigad[oa])\b", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)

REPHRASE_JACCARD = 0.5


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def jaccard(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' word sets (lower-cased words of 3+ letters)."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


def classify_turn(text: str, previous_user: str | None) -> str | None:
    """The signal of one user turn that follows an assistant turn, or None."""
    if _CORRECTION_START.search(text) or _CORRECTION_ANY.search(text):
        return "correction"
    if _THANKS.search(text):
        return "thanks"
    if previous_user is not None and text.strip().lower() != previous_user.strip().lower():
        if jaccard(text, previous_user) >= REPHRASE_JACCARD:
            return "rephrase"
    return None


def signals_in_turns(turns: Iterable[Message]) -> list[str]:
    """Signals in a sequence of turns (in order)."""
    out: list[str] = []
    prev_role: str | None = None
    prev_user: str | None = None
    for m in turns:
        if m.role == "user":
            if prev_role == "assistant":
                s = classify_turn(m.text, prev_user)
                if s:
                    out.append(s)
            prev_user = m.text
        prev_role = m.role
    return out


def signals(record: Record) -> list[str]:
    """Implicit-feedback signals in a member's conversation (empty for no member's text)."""
    if not record.owner:
        return []
    turns = list(record.prompt) + [Message("assistant", r.text) for r in record.responses]
    return signals_in_turns(turns)
