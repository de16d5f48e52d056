"""Generic reading of JSON Lines (`.jsonl`, optionally gzip-compressed) and JSON array files.

`iter_raw(path)` yields, for every non-empty record of the file, either a `RawRecord` (the
decoded JSON object and where it was) or a `RecordError` naming the file, the line and what is
wrong with it. Reading is strict: invalid UTF-8, malformed JSON, records larger than
`max_record_bytes` and truncated or corrupt gzip streams are errors, never silently skipped.
Only blank lines are skipped (they still count for line numbers).

Compression is recognised by the gzip magic bytes, not by the file name. A file whose first
non-blank byte is `[` is read as one JSON array: its records are then numbered by their 0-based
index in the array ("record N") instead of by line. A `.json` file holding one (possibly
pretty-printed) object is record 0; a `.json` file with one object per line is read as JSON Lines.

Error messages never quote record text (ARCHITECTURE.md invariant 1: raw text does not leave the
node through errors or logs); they name the place and the problem (invariant 9).
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
_SKIP_CHUNK = 1 << 20


class RecordError(Exception):
    """One record (line) that cannot be imported.

    `line` is the 1-based line number, or for JSON array files (`unit == "record"`) the 0-based
    index of the element. `field` names the offending source field (None when the problem is not
    in one field, e.g. malformed JSON). `fatal` is True when reading had to stop there (a
    truncated or corrupt file): nothing after it was read.
    """

    def __init__(self, path: str | os.PathLike, line: int, field: str | None, message: str,
                 *, unit: str = "line", fatal: bool = False):
        super().__init__(message)
        self.path = os.fspath(path)
        self.line = line
        self.field = field
        self.message = message
        self.unit = unit
        self.fatal = fatal

    @property
    def location(self) -> str:
        """Where the record is: `path:line`, or `path: record N` in a JSON array."""
        return f"{self.path}:{self.line}" if self.unit == "line" else f"{self.path}: record {self.line}"

    def __str__(self) -> str:
        where = f" field '{self.field}':" if self.field else ""
        return f"{self.location}:{where} {self.message}"

    def __reduce__(self):
        return (_make_error, (self.path, self.line, self.field, self.message, self.unit, self.fatal))

    def __repr__(self) -> str:
        return f"RecordError({self.path!r}, {self.line}, {self.field!r}, {self.message!r})"


def _make_error(path, line, field, message, unit, fatal) -> RecordError:
    return RecordError(path, line, field, message, unit=unit, fatal=fatal)


@dataclass
class RawRecord:
    """One decoded JSON object and where it was in the file."""
    line: int  # 1-based line, or 0-based array index when unit == "record"
    obj: Any
    unit: str = "line"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _open(path: str) -> BinaryIO:
    f = open(path, "rb")
    if f.read(2) == GZIP_MAGIC:
        f.seek(0)
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    f.seek(0)
    return f


def _close(f: BinaryIO) -> None:
    inner = getattr(f, "fileobj", None)
    f.close()
    if inner is not None:
        inner.close()


def _first_byte(path: str) -> bytes:
    """The first non-blank byte of the (decompressed) file, b'' when there is none."""
    f = _open(path)
    try:
        while True:
            chunk = f.read(4096)
            if not chunk:
                return b""
            chunk = chunk.lstrip(b" \t\r\n")
            if chunk.startswith(UTF8_BOM):
                chunk = chunk[len(UTF8_BOM):].lstrip(b" \t\r\n")
            if chunk:
                return chunk[:1]
    except (EOFError, OSError, zlib.error):
        return b""  # iter_raw reports the broken stream with its line
    finally:
        _close(f)


def _decode(raw: bytes, path: str, line: int, unit: str) -> Any:
    """Strict UTF-8 then JSON; raises RecordError."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(path, line, None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1})",
                          unit=unit) from None
    try:
        return _loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(path, line, None, f"malformed JSON: {e.msg} (column {e.colno})", unit=unit) from None
    except (ValueError, RecursionError) as e:
        raise RecordError(path, line, None, f"malformed JSON: {type(e).__name__}", unit=unit) from None


def iter_raw(path: str | os.PathLike, max_record_bytes: int = 1_000_000) -> Iterator[RawRecord | RecordError]:
    """Every non-empty record of the file as a RawRecord, or a RecordError naming file, line and problem."""
    path = os.fspath(path)
    first = _first_byte(path)
    if first == b"[":
        yield from _iter_array(path, max_record_bytes)
        return
    if first == b"{" and path.lower().endswith((".json", ".json.gz")):
        single = _single_object(path, max_record_bytes)
        if single is not None:
            yield single
            return
    yield from _iter_lines(path, max_record_bytes)


def _single_object(path: str, max_bytes: int) -> RawRecord | None:
    """The file as one JSON object when it is exactly that (and not too large), else None."""
    if os.path.getsize(path) > max_bytes:
        return None
    f = _open(path)
    try:
        data = f.read(max_bytes + 1)
    except (EOFError, OSError, zlib.error):
        return None
    finally:
        _close(f)
    if len(data) > max_bytes:
        return None
    try:
        obj = _loads(data.removeprefix(UTF8_BOM).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return RawRecord(0, obj, unit="record") if isinstance(obj, dict) else None


def _broken_stream(path: str, line: int, e: BaseException) -> RecordError:
    what = "truncated (the compressed stream ends early)" if isinstance(e, EOFError) else f"corrupt ({type(e).__name__})"
    return RecordError(path, line, None, f"cannot read past this point: the file is {what}", fatal=True)


def _iter_lines(path: str, max_bytes: int) -> Iterator[RawRecord | RecordError]:
    f = _open(path)
    try:
        line_no = 0
        while True:
            try:
                raw = f.readline(max_bytes + 2)  # room for "\r\n"
            except (EOFError, OSError, zlib.error) as e:
                yield _broken_stream(path, line_no + 1, e)
                return
            if not raw:
                return
            line_no += 1
            if line_no == 1 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM):]
            if not raw.endswith(b"\n") and len(raw) >= max_bytes + 2:
                # oversized: skip the rest of the line without holding it in memory
                size = len(raw)
                try:
                    while raw and not raw.endswith(b"\n"):
                        raw = f.readline(_SKIP_CHUNK)
                        size += len(raw)
                except (EOFError, OSError, zlib.error) as e:
                    yield _broken_stream(path, line_no, e)
                    return
                yield RecordError(path, line_no, None,
                                  f"record too large (over {max_bytes} bytes, at least {size}); raise the limit or split it")
                continue
            body = raw.rstrip(b"\r\n")
            if len(body) > max_bytes:
                yield RecordError(path, line_no, None, f"record too large ({len(body)} bytes, limit {max_bytes})")
                continue
            if not body.strip():
                continue
            try:
                obj = _decode(body, path, line_no, "line")
            except RecordError as e:
                yield e
                continue
            if not isinstance(obj, dict):
                yield RecordError(path, line_no, None, f"expected a JSON object, got {type(obj).__name__}")
                continue
            yield RawRecord(line_no, obj)
    finally:
        _close(f)


def _iter_array(path: str, max_bytes: int) -> Iterator[RawRecord | RecordError]:
    f = _open(path)
    try:
        data = f.read()
    except (EOFError, OSError, zlib.error) as e:
        yield _broken_stream(path, 1, e)
        return
    finally:
        _close(f)
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        yield RecordError(path, line, None, f"not valid UTF-8 (byte 0x{data[e.start]:02x}); cannot read the JSON array",
                          fatal=True)
        return
    try:
        arr = _loads(text)
    except json.JSONDecodeError as e:
        yield RecordError(path, e.lineno, None, f"malformed JSON: {e.msg} (column {e.colno}); cannot read the JSON array",
                          fatal=True)
        return
    except (ValueError, RecursionError) as e:
        yield RecordError(path, 1, None, f"malformed JSON: {type(e).__name__}", fatal=True)
        return
    if not isinstance(arr, list):
        yield RecordError(path, 1, None, "expected a JSON array of objects", fatal=True)
        return
    for i, obj in enumerate(arr):
        if not isinstance(obj, dict):
            yield RecordError(path, i, None, f"expected a JSON object, got {type(obj).__name__}", unit="record")
            continue
        size = len(json.dumps(obj, ensure_ascii=False).encode("utf-8"))
        if size > max_bytes:
            yield RecordError(path, i, None, f"record too large ({size} bytes, limit {max_bytes})", unit="record")
            continue
        yield RawRecord(i, obj, unit="record")
