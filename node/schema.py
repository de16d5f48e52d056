"""One internal schema for every feedback kind Cairn imports.

A `Record` is one imported unit: a conversation (the prompt turns) with one or more candidate
responses, and the feedback that contributors gave on them. Every importer produces Records;
the store persists them (text encrypted) and the rest of the node reads them back. Every Record
names its contributors, so the unit of privacy is a person across sources (ARCHITECTURE.md
invariant 4).

Feedback kinds (`Feedback.kind`) and the fields each uses:

| kind       | fields                                                                         |
|------------|--------------------------------------------------------------------------------|
| pairwise   | a, b (response indices), outcome in OUTCOMES, strength in (0, 1]               |
| ranking    | order: response indices best first (k-way; ties not expressible)                |
| rating     | response, dimension, value, scale (lo, hi)                                     |
| thumbs     | response, value +1 (up) or -1 (down)                                           |
| label      | response (or None for the whole conversation), name, value (bool/int/float/str)|
| critique   | response (or None), text (free text, encrypted at rest)                        |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protos.wire import OUTCOMES  # pairwise winner: response a, response b, tie, both bad

KINDS = ("pairwise", "ranking", "rating", "thumbs", "label", "critique")


class SchemaError(ValueError):
    """A record that cannot be represented; `field` names the offending source field."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass
class Message:
    """One conversation turn."""
    role: str  # "user", "assistant", "system"
    text: str


@dataclass
class Response:
    """One candidate response, with the model that wrote it when known."""
    text: str
    model: str | None = None


@dataclass
class Feedback:
    """One contributor's feedback on a Record (fields per kind: see the module table)."""
    kind: str
    contributor: str
    data: dict[str, Any] = field(default_factory=dict)  # structured, text-free fields (see table)
    text: str | None = None  # free text (critique); encrypted at rest
    timestamp: str | None = None  # ISO 8601, when the feedback was given

    def validate(self, n_responses: int) -> None:
        """SchemaError naming the field when this feedback is malformed for a Record of `n_responses` responses."""
        d = self.data
        if self.kind not in KINDS:
            raise SchemaError(f"unknown feedback kind {self.kind!r}", "kind")
        if not self.contributor:
            raise SchemaError("feedback has no contributor", "contributor")

        def idx(name: str, optional: bool = False) -> None:
            v = d.get(name)
            if v is None and optional:
                return
            if not isinstance(v, int) or not 0 <= v < n_responses:
                raise SchemaError(f"{self.kind}: {name}={v!r} is not a response index (0..{n_responses - 1})", name)

        if self.kind == "pairwise":
            idx("a"), idx("b")
            if d["a"] == d["b"]:
                raise SchemaError("pairwise: a and b are the same response", "b")
            if d.get("outcome") not in OUTCOMES:
                raise SchemaError(f"pairwise: outcome {d.get('outcome')!r} not in {OUTCOMES}", "outcome")
            s = d.get("strength", 1.0)
            if not isinstance(s, (int, float)) or not 0 < s <= 1:
                raise SchemaError(f"pairwise: strength {s!r} not in (0, 1]", "strength")
        elif self.kind == "ranking":
            order = d.get("order")
            if not isinstance(order, list) or len(order) < 2 or len(set(order)) != len(order):
                raise SchemaError("ranking: order must list at least two distinct responses", "order")
            for v in order:
                if not isinstance(v, int) or not 0 <= v < n_responses:
                    raise SchemaError(f"ranking: {v!r} is not a response index", "order")
        elif self.kind == "rating":
            idx("response")
            lo, hi = d.get("scale", (None, None))
            v = d.get("value")
            if not isinstance(d.get("dimension"), str) or not d["dimension"]:
                raise SchemaError("rating: missing dimension", "dimension")
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (lo, hi, v)) or not lo <= v <= hi:
                raise SchemaError(f"rating: value {v!r} outside scale {lo}..{hi}", d["dimension"])
        elif self.kind == "thumbs":
            idx("response")
            if d.get("value") not in (1, -1):
                raise SchemaError(f"thumbs: value must be +1 or -1, got {d.get('value')!r}", "thumbs")
        elif self.kind == "label":
            idx("response", optional=True)
            if not isinstance(d.get("name"), str) or not d["name"]:
                raise SchemaError("label: missing name", "label")
        elif self.kind == "critique":
            idx("response", optional=True)
            if not self.text:
                raise SchemaError("critique: empty text", "critique")


@dataclass
class Record:
    """One imported unit: prompt turns, candidate responses, and contributors' feedback on them."""
    source: str  # importer format name, e.g. "pandalm"
    key: str  # stable id within the source (dedup); never derived from text alone
    prompt: list[Message]  # conversation context before the responses
    responses: list[Response]
    feedback: list[Feedback] = field(default_factory=list)
    owner: str | None = None  # contributor who wrote the conversation (None: not a member's text)
    language: str | None = None
    timestamp: str | None = None  # ISO 8601, when the conversation happened
    meta: dict[str, Any] = field(default_factory=dict)  # text-free extras (topic, app, ...)

    def validate(self) -> None:
        """SchemaError naming the field when the Record or any of its feedback is malformed."""
        if not self.key:
            raise SchemaError("record has no key", "key")
        if not self.prompt and not self.responses:
            raise SchemaError("record has no text", "prompt")
        for m in self.prompt:
            if not isinstance(m.text, str):
                raise SchemaError("message text is not a string", "text")
        for r in self.responses:
            if not isinstance(r.text, str):
                raise SchemaError("response text is not a string", "response")
        for f in self.feedback:
            f.validate(len(self.responses))

    def contributors(self) -> set[str]:
        """Everyone with a part in this Record: the judges of its feedback and its owner."""
        out = {f.contributor for f in self.feedback}
        if self.owner:
            out.add(self.owner)
        return out

    def prompt_text(self) -> str:
        """The prompt as one string (what a reward model conditions on)."""
        return "\n\n".join(f"{m.role}: {m.text}" for m in self.prompt)
