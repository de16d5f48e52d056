"""Importers: every supported feedback format → `node.schema.Record`.

API
---
- `FORMATS: dict[str, Importer]` — the registry (`--format` names).
- `detect_format(path) -> str` — the format, judged from the keys of the first parseable records;
  `FormatError` naming the file when no format (or more than one) matches.
- `read_records(path, fmt=None, contributor=None, max_record_bytes=1_000_000, id_prefix=None) -> Iterator[Parsed]`
  where `Parsed = tuple[int, Record] | RecordError`. Problems with one record come back as
  `RecordError` objects (not raised) so that the caller decides: abort atomically, or skip them
  (`--skip-invalid`). A `RecordError` with `fatal=True` means the file could not be read past
  that point. Problems with the whole file (unknown or undetectable format, a format without
  contributor ids and no `contributor` override) raise `FormatError` when `read_records` is
  called, before anything is yielded.

`contributor`, when given, is used as-is for every feedback item (and as owner where the format's
text is the contributors' own), overriding ids found in the file. Ids from the file are the
member's id as the community knows it, not namespaced by format ("member-010" from any format is
one person); `id_prefix` (`--id-prefix P`) namespaces a source whose ids collide with another's
("P:member-010"). See node/importers/common.py.

One line can yield several Records (an OpenAssistant tree): they share the line number, and a
line is either wholly valid or one error. Each Record is validated (`Record.validate()`).
PII redaction is not applied here: the import transaction calls `node.redact.redact_record`.
Errors name file, line and field and never quote record text (ARCHITECTURE.md invariants 1 and 9).
"""

from __future__ import annotations

import os
from typing import Iterator, Union

import node.importers.diagnose as diagnose
import node.importers.table as table
from node.importers import (
    arena,
    argilla,
    chatgpt,
    clean_battle,
    finegrained,
    helpsteer2,
    helpsteer2_pref,
    hh_rlhf,
    lmsys_chat,
    oasst,
    oasst_messages,
    openai_messages,
    openwebui,
    pandalm,
    prism,
    sharelm,
    trl,
    tulu,
    ultrafeedback,
    wildchat,
)
from node.importers.common import Context, Importer
from node.importers.reader import RawRecord, RecordError, iter_raw, looks_json
from node.schema import Record, SchemaError

__all__ = ["FORMATS", "FormatError", "Importer", "Parsed", "RecordError", "detect_format", "read_records"]

FORMATS: dict[str, Importer] = {m.IMPORTER.name: m.IMPORTER for m in (
    hh_rlhf, arena, sharelm, oasst, helpsteer2, pandalm, tulu, finegrained, openai_messages,
    clean_battle, trl, helpsteer2_pref, ultrafeedback, wildchat, lmsys_chat, prism, chatgpt, openwebui,
    oasst_messages, argilla)}

Parsed = Union[tuple[int, Record], RecordError]

DETECT_RECORDS = 10  # how many parseable records detection looks at


class FormatError(ValueError):
    """The whole file cannot be imported as asked (names the file; no record text)."""


def detect_format(path: str | os.PathLike, max_record_bytes: int = 1_000_000) -> str:
    """The format of the file at `path`, judged from its first parseable records; FormatError otherwise."""
    path = os.fspath(path)
    problem = diagnose.file_problem(path)
    if problem:
        raise FormatError(problem)
    kind = table.kind_of(path)
    if kind == "parquet":  # rows of a known format (Hugging Face's Parquet files), else a table to map
        fmt = _row_format(path, max_record_bytes)
        if fmt:
            return fmt
    if kind:
        return table.NAME
    first: dict | None = None
    read_errors: list[RecordError] = []
    looked = 0
    for item in iter_raw(path, max_record_bytes):
        if isinstance(item, RecordError):
            if item.fatal and looked == 0:
                raise FormatError(f"cannot detect the format of {path}: {item}")
            read_errors.append(item)
            continue
        looked += 1
        matches = [name for name, imp in FORMATS.items() if _detects(imp, item.obj)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise FormatError(f"cannot detect the format of {path}: its records fit {', '.join(matches)}; "
                              f"pass --format")
        if first is None:
            first = item.obj
        if looked >= DETECT_RECORDS:
            break
    if looked == 0 or first is None:
        raise FormatError(diagnose.unreadable(path, read_errors))
    raise FormatError(diagnose.nearest(path, first, FORMATS))


def _row_format(path: str, max_record_bytes: int) -> str | None:
    """The one format whose detector accepts the first rows of a Parquet file, else None."""
    for looked, item in enumerate(iter_raw(path, max_record_bytes)):
        if looked >= DETECT_RECORDS:
            break
        if isinstance(item, RawRecord):
            matches = [name for name, imp in FORMATS.items() if _detects(imp, item.obj)]
            return matches[0] if len(matches) == 1 else None
    return None


def _detects(imp, obj: dict) -> bool:
    """imp.detect(obj) (or imp(obj) for a bare predicate), False when it raises."""
    try:
        return bool(imp.detect(obj) if isinstance(imp, Importer) else imp(obj))
    except Exception:
        return False


def read_records(path: str | os.PathLike, fmt: str | None = None, contributor: str | None = None,
                 max_record_bytes: int = 1_000_000, mapping: dict | None = None,
                 id_prefix: str | None = None) -> Iterator[Parsed]:
    """Parse `path` (format `fmt`, detected when None) into (line, Record) pairs and RecordErrors.

    Tables (CSV, TSV, Parquet: format "table") need `mapping` (node/importers/table.py `parse_map`)."""
    path = os.fspath(path)
    if id_prefix is not None and (not id_prefix.strip() or ":" in id_prefix or id_prefix != id_prefix.strip()):
        raise FormatError(f"--id-prefix {id_prefix!r}: expected a non-empty name without ':' or surrounding spaces")
    problem = diagnose.file_problem(path)
    if problem:
        raise FormatError(problem)
    if fmt is None:  # a mapping given for a table means the table importer, whatever its rows look like
        fmt = table.NAME if mapping is not None else detect_format(path, max_record_bytes)
    if fmt in table.ALIASES:
        return _read_table(path, contributor, max_record_bytes, mapping, id_prefix)
    if mapping is not None:
        raise FormatError(f"--map/--map-file apply to the table importer, not to --format {fmt}; drop --format or "
                          f"pass --format table")
    imp = FORMATS.get(fmt)
    if imp is None:
        raise FormatError(f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
    if contributor is not None and not contributor.strip():
        raise FormatError("--contributor must not be empty")
    needs = imp.needs_contributor
    if callable(needs) and not contributor:
        first = next((x for x in iter_raw(path, max_record_bytes) if isinstance(x, RawRecord)), None)
        try:  # the format's own judgement from its first record (and the file's place: companion files)
            needs = first is not None and bool(needs(first.obj, path))
        except Exception:
            needs = False
    if needs and not contributor:
        raise FormatError(f"{path}: the {fmt} format carries no contributor (annotator/user) ids; pass "
                          f"--contributor ID with the pseudonymous id of the person who gave this feedback")
    return _parse_all(path, imp, contributor, max_record_bytes, id_prefix)


def _read_table(path: str, contributor: str | None, max_bytes: int, mapping: dict | None,
                id_prefix: str | None = None) -> Iterator[Parsed]:
    kind = table.kind_of(path) or ("json" if looks_json(path) else "csv")
    if contributor is not None and not contributor.strip():
        raise FormatError("--contributor must not be empty")
    try:
        imp, rows = table.open_table(path, kind, mapping, max_bytes)
    except table.MappingError as e:
        raise FormatError(str(e)) from None
    if table.needs_contributor(mapping) and not contributor:
        rows.close()
        raise FormatError(f"{path}: map a contributor column (--map contributor=COLUMN) or pass --contributor ID")
    return _parse_rows(path, imp, Context(imp.name, contributor, path=path, id_prefix=id_prefix), rows)


def _parse_rows(path: str, imp: Importer, ctx: Context, rows: Iterator) -> Iterator[Parsed]:
    for item in rows:
        if isinstance(item, RecordError):
            yield item
        else:
            yield from _parse_one(path, imp, ctx, item)


def _parse_all(path: str, imp: Importer, contributor: str | None, max_bytes: int,
               id_prefix: str | None = None) -> Iterator[Parsed]:
    ctx = Context(imp.name, contributor, path=path, id_prefix=id_prefix)
    if imp.parse_file is not None:
        yield from imp.parse_file(path, iter_raw(path, max_bytes), ctx)
        return
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
