"""Helpers shared by the format importers: field access with precise errors, contributor ids,
roles, timestamps, stable keys.

Contributor ids (issue 10, finding 6: one person, one unit). An id is the member's id as the community
knows it, the same whichever format it arrives in: "member-010" from a ShareLM file and from an OpenAI
file is one person, one privacy unit, and `cairn node forget --contributor member-010` finds them. Every
importer builds ids through `Context.who` (never by hand): the value from the file, stripped, or the
operator's `--contributor` override. When two sources' ids collide without being the same people, the
operator says so at import with `--id-prefix P` (ids become "P:value"); two ids of one person are joined
with `cairn node link` (node/store.py `Store.link`).

Importers raise `node.schema.SchemaError(message, field)`; `read_records` turns it into a
`RecordError` that names file, line and field. Messages describe types and allowed values and
never quote conversation text (ARCHITECTURE.md invariant 1).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from node.redact import contact_kind
from node.schema import Message, Record, SchemaError

_MISSING = object()


@dataclass(frozen=True)
class Importer:
    """One format: its name, how to parse an object into Records, how to recognise one."""
    name: str  # registry and --format name; also Record.source
    parse: Callable[[dict, "Context"], list[Record]]
    detect: Callable[[dict], bool]  # does this parsed JSON object look like this format?
    # True: the format never carries contributor ids (--contributor required); a callable (first record,
    # file path) judges it (formats whose ids are optional, e.g. OpenAssistant trees with or without user_id)
    needs_contributor: bool | Callable[[dict, str], bool] = False
    description: str = ""
    # formats whose records span several objects (flat message rows rebuilt into trees): takes the file's
    # raw items and yields what read_records yields; `parse` is then used for nothing but the registry
    parse_file: Callable[[str, Iterator[Any], "Context"], Iterator[Any]] | None = None


@dataclass
class Context:
    """What an importer knows besides the object: the operator's contributor override and id prefix."""

    fmt: str
    contributor: str | None = None
    _cache: dict = field(default_factory=dict)
    path: str | None = None  # the file being read (formats that merge a companion file beside it)
    id_prefix: str | None = None  # operator's --id-prefix: ids from the file become "prefix:value"

    def who(self, value: Any, field_name: str) -> str:
        """Contributor id: the override when given, else the file's value as the community knows it
        ("prefix:value" under --id-prefix). Not namespaced by format: one person, one id (module docstring).

        Without either, the record cannot be attributed to a person: inventing one id per record
        would under-count a person's contributions and break user-level DP, so it is an error.
        """
        if self.contributor:
            return self.contributor
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise SchemaError(
                "no contributor id in this record; pass --contributor ID to attribute the file to one pseudonymous contributor",
                field_name)
        kind = contact_kind(value)
        if kind:
            raise SchemaError(f"this contributor id looks like {kind}; contributor ids are stored in clear, so use a "
                              "pseudonymous id (or --contributor ID)", field_name)
        return f"{self.id_prefix}:{value.strip()}" if self.id_prefix else value.strip()

    def override(self) -> str:
        """The operator's --contributor id; SchemaError for a format that carries none."""
        if not self.contributor:
            raise SchemaError(f"the {self.fmt} format has no contributor ids; pass --contributor ID", "contributor")
        return self.contributor


def stable_hash(obj: Any) -> str:
    """A key for formats without ids: SHA-256 of the record's canonical JSON (same for .json/.jsonl)."""
    canon = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canon.encode("utf-8")).hexdigest()[:40]


def _type_name(t: Any) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object",
            bool: "a boolean"}.get(t, getattr(t, "__name__", str(t)))


def _kind(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def get(obj: dict, name: str, typ: Any = None, *, required: bool = True, default: Any = None,
        path: str | None = None) -> Any:
    """obj[name], checked against `typ` (a type or tuple). `path` is the field name used in errors."""
    where = path or name
    v = obj.get(name, _MISSING) if isinstance(obj, dict) else _MISSING
    if v is _MISSING or v is None:
        if required:
            raise SchemaError("missing" if v is _MISSING else "is null", where)
        return default
    if typ is not None:
        ok = isinstance(v, typ) and not (isinstance(v, bool) and typ in (int, float, (int, float)))
        if not ok:
            raise SchemaError(f"expected {_type_name(typ)}, got {_kind(v)}", where)
    return v


def text(obj: dict, name: str, *, required: bool = True, path: str | None = None) -> str | None:
    """obj[name] as a string (see `get`)."""
    return get(obj, name, str, required=required, path=path)


def number(obj: dict, name: str, lo: float, hi: float, *, required: bool = True, path: str | None = None) -> float | None:
    """obj[name] as a number within lo..hi (see `get`)."""
    v = get(obj, name, (int, float), required=required, path=path)
    if v is None:
        return None
    if not lo <= v <= hi:
        raise SchemaError(f"expected a number in {lo}..{hi}, got {v}", path or name)
    return v


def choice(value: Any, options: dict, field_name: str) -> Any:
    """options[value], else an error listing the allowed values (values are short enums)."""
    try:
        return options[value]
    except (KeyError, TypeError):
        shown = repr(value) if not isinstance(value, str) or len(value) <= 40 else repr(value[:40] + "…")
        allowed = ", ".join(repr(k) for k in options)
        raise SchemaError(f"expected one of {allowed}; got {shown}", field_name) from None


ROLES = {
    "user": "user", "human": "user", "prompter": "user", "USER": "user",
    "assistant": "assistant", "bot": "assistant", "gpt": "assistant", "model": "assistant",
    "chatbot": "assistant", "ai": "assistant",
    "system": "system", "developer": "system",
}


def role(value: Any, field_name: str) -> str:
    """A message role (user, assistant, system) from the names formats use for it."""
    if isinstance(value, str) and value.strip().lower() in ROLES:
        return ROLES[value.strip().lower()]
    return choice(value, {"user": 0, "assistant": 0, "system": 0}, field_name)


def content_text(value: Any, field_name: str) -> str:
    """Message content: a string, or OpenAI content parts [{"type": "text", "text": ...}, ...]."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for i, p in enumerate(value):
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, dict) and p.get("type", "text") == "text" and isinstance(p.get("text"), str):
                parts.append(p["text"])
            elif isinstance(p, dict) and "type" in p:
                continue  # images, audio, ...: not text, not stored
            else:
                raise SchemaError(f"content part {i}: expected text", field_name)
        return "\n".join(parts)
    raise SchemaError(f"expected a string or a list of content parts, got {_kind(value)}", field_name)


def message(value: Any, where: str, *, empty_content: bool = False) -> Message:
    """One chat message {role, content} at `where` (e.g. "messages[3]"): the shape every chat format
    shares. `empty_content`: a null content reads as "" (formats that redact or drop turns)."""
    if not isinstance(value, dict):
        raise SchemaError("expected a message object {role, content}", where)
    content = value.get("content")
    text_ = "" if empty_content and content is None else content_text(content, f"{where}.content")
    return Message(role(value.get("role"), f"{where}.role"), text_)


def timestamp(value: Any, field_name: str) -> str | None:
    """ISO 8601 from unix seconds/milliseconds or an ISO-like string; None for null/empty."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise SchemaError("expected a timestamp, got a boolean", field_name)
    if isinstance(value, str):
        s = value.strip()
        try:
            value = float(s)
        except ValueError:
            try:
                dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
            except ValueError:
                raise SchemaError("expected an ISO 8601 date-time or unix seconds", field_name) from None
            return dt.isoformat()
    if isinstance(value, (int, float)):
        if value > 1e11:  # milliseconds
            value = value / 1000
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc).isoformat()
        except (OverflowError, OSError, ValueError):
            raise SchemaError("timestamp out of range", field_name) from None
    raise SchemaError(f"expected a timestamp, got {_kind(value)}", field_name)


LANGUAGE_NAMES = {
    "english": "en", "chinese": "zh", "russian": "ru", "spanish": "es", "german": "de", "french": "fr",
    "japanese": "ja", "portuguese": "pt", "italian": "it", "korean": "ko", "polish": "pl", "dutch": "nl",
    "arabic": "ar", "turkish": "tr", "vietnamese": "vi", "indonesian": "id", "ukrainian": "uk",
    "persian": "fa", "hebrew": "he", "hindi": "hi", "swedish": "sv", "czech": "cs", "greek": "el",
}


def language(value: Any, field_name: str) -> str | None:
    """A language tag: ISO codes pass through (lower-cased), common English names map to codes."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SchemaError(f"expected a language code, got {_kind(value)}", field_name)
    v = value.strip()
    return LANGUAGE_NAMES.get(v.lower(), v if len(v) > 3 and "-" not in v else v.lower())
