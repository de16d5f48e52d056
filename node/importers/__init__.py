"""Importers: every supported feedback format → `node.schema.Record`.

API
---
- `FORMATS: dict[str, Importer]` — the registry (`--format` names).
- `detect_format(path) -> str` — the format, judged from the keys of the first parseable records;
  `FormatError` naming the file when no format (or more than one) matches.
- `read_records(path, fmt=None, contributor=None, max_record_bytes=1_000_000) -> Iterator[Parsed]`
  where `Parsed = tuple[int, Record] | RecordError`. Problems with one record come back as
  `RecordError` objects (not raised) so that the caller decides: abort atomically, or skip them
  (`--skip-invalid`). A `RecordError` with `fatal=True` means the file could not be read past
  that point. Problems with the whole file (unknown or undetectable format, a format without
  contributor ids and no `contributor` override) raise `FormatError` when `read_records` is
  called, before anything is yielded.

`contributor`, when given, is used as-is for every feedback item (and as owner where the format's
text is the contributors' own), overriding ids found in the file. Ids from the file are
namespaced by format: "tulu:ja", "pandalm:annotator1", "arena:<judge>".

One line can yield several Records (an OpenAssistant tree): they share the line number, and a
line is either wholly valid or one error. Each Record is validated (`Record.validate()`).
PII redaction is not applied here: the import transaction calls `node.redact.redact_record`.
Errors name file, line and field and never quote record text (ARCHITECTURE.md invariants 1 and 9).
"""

from __future__ import annotations

import os
from typing import Iterator, Union

from node.importers import arena, finegrained, helpsteer2, hh_rlhf, oasst, openai_messages, pandalm, sharelm, tulu
from node.importers.common import Context, Importer
from node.importers.reader import RawRecord, RecordError, iter_raw
from node.schema import Record, SchemaError

__all__ = ["FORMATS", "FormatError", "Importer", "Parsed", "RecordError", "detect_format", "read_records"]

FORMATS: dict[str, Importer] = {m.IMPORTER.name: m.IMPORTER for m in (
    hh_rlhf, arena, sharelm, oasst, helpsteer2, pandalm, tulu, finegrained, openai_messages)}

Parsed = Union[tuple[int, Record], RecordError]

DETECT_RECORDS = 10  # how many parseable records detection looks at


class FormatError(ValueError):
    """The whole file cannot be imported as asked (names the file; no record text)."""


def detect_format(path: str | os.PathLike, max_record_bytes: int = 1_000_000) -> str:
    """The format of the file at `path`, judged from its first parseable records; FormatError otherwise."""
    path = os.fspath(path)
    seen_keys: list[str] = []
    looked = 0
    for item in iter_raw(path, max_record_bytes):
        if isinstance(item, RecordError):
            if item.fatal and looked == 0:
                raise FormatError(f"cannot detect the format of {path}: {item}")
            continue
        looked += 1
        matches = [name for name, imp in FORMATS.items() if _detects(imp, item.obj)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise FormatError(f"cannot detect the format of {path}: its records fit {', '.join(matches)}; "
                              f"pass --format")
        if not seen_keys:
            seen_keys = sorted(str(k)[:40] for k in item.obj)[:20]
        if looked >= DETECT_RECORDS:
            break
    if looked == 0:
        raise FormatError(f"cannot detect the format of {path}: it holds no readable JSON records")
    raise FormatError(f"cannot detect the format of {path}: no known format has records with keys "
                      f"{seen_keys}; pass --format (one of {', '.join(FORMATS)})")


def _detects(imp: Importer, obj: dict) -> bool:
    try:
        return bool(imp.detect(obj))
    except Exception:
        return False


def read_records(path: str | os.PathLike, fmt: str | None = None, contributor: str | None = None,
                 max_record_bytes: int = 1_000_000) -> Iterator[Parsed]:
    """Parse `path` (format `fmt`, detected when None) into (line, Record) pairs and RecordErrors."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FormatError(f"{path}: no such file")
    if fmt is None:
        fmt = detect_format(path, max_record_bytes)
    imp = FORMATS.get(fmt)
    if imp is None:
        raise FormatError(f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
    if contributor is not None and not contributor.strip():
        raise FormatError("--contributor must not be empty")
    if imp.needs_contributor and not contributor:
        raise FormatError(f"{path}: the {fmt} format carries no contributor (annotator/user) ids; pass "
                          f"--contributor ID with the pseudonymous id of the person who gave this feedback")
    return _parse_all(path, imp, contributor, max_record_bytes)


def _parse_all(path: str, imp: Importer, contributor: str | None, max_bytes: int) -> Iterator[Parsed]:
    ctx = Context(imp.name, contributor)
    for item in iter_raw(path, max_bytes):
        if isinstance(item, RecordError):
            yield item
            continue
        yield from _parse_one(path, imp, ctx, item)


def _parse_one(path: str, imp: Importer, ctx: Context, item: RawRecord) -> Iterator[Parsed]:
    try:
        records = imp.parse(item.obj, ctx)
        for r in records:
            r.validate()
    except SchemaError as e:
        yield RecordError(path, item.line, e.field, str(e), unit=item.unit)
        return
    except RecursionError:
        yield RecordError(path, item.line, None, "record nested too deeply", unit=item.unit)
        return
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
        # An importer bug or an unforeseen variant of the format; the message omits record content.
        yield RecordError(path, item.line, None, f"unexpected record structure for format {imp.name} "
                          f"({type(e).__name__})", unit=item.unit)
        return
    for r in records:
        yield item.line, r
