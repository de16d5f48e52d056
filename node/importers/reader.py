"""Generic reading of JSON Lines (`.jsonl`, optionally gzip-compressed) and JSON array files.

`iter_raw(path)` yields, for every non-empty record of the file, either a `RawRecord` (the
decoded JSON object and where it was) or a `RecordError` naming the file, the line and what is
wrong with it. Reading is strict: invalid UTF-8, malformed JSON, records larger than
`max_record_bytes` and truncated or corrupt gzip streams are errors, never silently skipped.
Only blank lines are skipped (they still count for line numbers).

Compression is recognised by the gzip magic bytes, not by the file name. A file whose first
non-blank byte is `[` is read as one JSON array: its records are then numbered by their 1-based
position in the array ("record N") instead of by line, so record numbers are 1-based for arrays
and JSON Lines alike. A `.json` file holding one (possibly pretty-printed) object is record 1; a
`.json` file with one object per line is read as JSON Lines.

Encoding problems name their cause: a UTF-16/UTF-32 file (byte order mark, or NUL bytes between
ASCII characters) is one fatal error saying so; an invalid UTF-8 byte names its byte offset in the
file and, when it looks like Latin-1/Windows-1252 text, says that too (`encoding_problem`).

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

    `line` is the 1-based line number, or for JSON array files (`unit == "record"`) the 1-based
    position of the element (tables: `unit == "row"`, the 1-based data row). `field` names the
    offending source field (None when the problem is not in one field, e.g. malformed JSON).
    `fatal` is True when reading had to stop there (a truncated or corrupt file): nothing after
    it was read.
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
        return f"{self.path}:{self.line}" if self.unit == "line" else f"{self.path}: {self.unit} {self.line}"

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
    line: int  # 1-based line, or 1-based array position when unit == "record" (data row when "row")
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


UTF16_BOMS = {b"\xff\xfe\x00\x00": "UTF-32-LE", b"\x00\x00\xfe\xff": "UTF-32-BE",
              b"\xff\xfe": "UTF-16-LE", b"\xfe\xff": "UTF-16-BE"}


def encoding_problem(head: bytes) -> str | None:
    """Why these first bytes of a file are not UTF-8 text, when they are UTF-16/32 (BOM or NUL pattern)."""
    for bom, name in UTF16_BOMS.items():
        if head.startswith(bom):
            return (f"the file is {name} encoded (byte order mark {bom.hex(' ').upper()} at byte offset 0); Cairn reads "
                    f"UTF-8: convert it, e.g. `iconv -f {name.rsplit('-', 1)[0]} -t UTF-8`")
    sample = head[:4096]
    if len(sample) >= 4 and sample.count(0) * 4 >= len(sample):
        odd = sample[1::2].count(0) > sample[0::2].count(0)
        name = "UTF-16-LE" if odd else "UTF-16-BE"
        first = sample.index(0)
        return (f"the file looks {name} encoded without a byte order mark (NUL byte at byte offset {first}); Cairn "
                f"reads UTF-8: convert it, e.g. `iconv -f {name} -t UTF-8`")
    return None


def utf8_error(data: bytes, e: UnicodeDecodeError, offset: int = 0) -> str:
    """'not valid UTF-8' with the bad byte, its byte offset in the file, and the likely encoding."""
    bad = data[e.start]
    msg = f"not valid UTF-8 (byte 0x{bad:02x} at byte offset {offset + e.start} of the file)"
    try:
        data[max(0, e.start - 64):e.start + 64].decode("cp1252")
        if bad >= 0x80:
            msg += ("; the file looks Latin-1/Windows-1252 encoded: convert it to UTF-8, "
                    "e.g. `iconv -f WINDOWS-1252 -t UTF-8`")
    except UnicodeDecodeError:
        pass
    return msg


def first_bad_utf8(path: str) -> tuple[bytes, UnicodeDecodeError, int] | None:
    """(bytes around, the error, where those bytes start) for the first invalid UTF-8 byte of the file."""
    f = _open(path)
    try:
        offset, carry = 0, b""
        while chunk := f.read(1 << 20):
            data = carry + chunk
            try:
                data.decode("utf-8")
                carry = b""
            except UnicodeDecodeError as e:
                if e.reason == "unexpected end of data" and e.start >= len(data) - 3:
                    carry = data[e.start:]
                    offset += e.start
                    continue
                return data, e, offset
            offset += len(data)
    finally:
        _close(f)
    return None


def _decode(raw: bytes, path: str, line: int, unit: str, offset: int = 0) -> Any:
    """Strict UTF-8 then JSON; raises RecordError (`offset`: where `raw` starts in the file)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(path, line, None, utf8_error(raw, e, offset), unit=unit) from None
    try:
        return _loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(path, line, None, f"malformed JSON: {e.msg} (column {e.colno})", unit=unit) from None
    except (ValueError, RecursionError) as e:
        raise RecordError(path, line, None, f"malformed JSON: {type(e).__name__}", unit=unit) from None


def iter_raw(path: str | os.PathLike, max_record_bytes: int = 1_000_000) -> Iterator[RawRecord | RecordError]:
    """Every non-empty record of the file as a RawRecord, or a RecordError naming file, line and problem."""
    path = os.fspath(path)
    from node.importers.parquet_rows import is_parquet, iter_parquet  # noqa: PLC0415 (it imports this module)
    if is_parquet(path):  # rows of a known format distributed as Parquet
        yield from iter_parquet(path, max_record_bytes)
        return
    f = _open(path)
    try:
        head = f.read(4096)
    except (EOFError, OSError, zlib.error):
        head = b""
    finally:
        _close(f)
    problem = encoding_problem(head)
    if problem:
        yield RecordError(path, 1, None, problem, fatal=True)
        return
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
    return RawRecord(1, obj, unit="record") if isinstance(obj, dict) else None


def _broken_stream(path: str, line: int, e: BaseException) -> RecordError:
    what = "truncated (the compressed stream ends early)" if isinstance(e, EOFError) else f"corrupt ({type(e).__name__})"
    return RecordError(path, line, None, f"cannot read past this point: the file is {what}", fatal=True)


def _iter_lines(path: str, max_bytes: int) -> Iterator[RawRecord | RecordError]:
    f = _open(path)
    try:
        line_no = 0
        offset = 0  # byte offset of the line in the (decompressed) file
        while True:
            try:
                raw = f.readline(max_bytes + 2)  # room for "\r\n"
            except (EOFError, OSError, zlib.error) as e:
                yield _broken_stream(path, line_no + 1, e)
                return
            if not raw:
                return
            line_no += 1
            start, offset = offset, offset + len(raw)
            if line_no == 1 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM):]
                start += len(UTF8_BOM)
            if not raw.endswith(b"\n") and len(raw) >= max_bytes + 2:
                # oversized: skip the rest of the line without holding it in memory
                size = len(raw)
                try:
                    while raw and not raw.endswith(b"\n"):
                        raw = f.readline(_SKIP_CHUNK)
                        size += len(raw)
                        offset += len(raw)
                except (EOFError, OSError, zlib.error) as e:
                    yield _broken_stream(path, line_no, e)
                    return
                yield RecordError(path, line_no, None,
                                  f"record too large ({size} bytes, limit {max_bytes}); raise --max-record-bytes or split it")
                continue
            body = raw.rstrip(b"\r\n")
            if len(body) > max_bytes:
                yield RecordError(path, line_no, None,
                                  f"record too large ({len(body)} bytes, limit {max_bytes}); raise --max-record-bytes or split it")
                continue
            if not body.strip():
                continue
            try:
                obj = _decode(body, path, line_no, "line", start)
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
        yield RecordError(path, line, None, f"{utf8_error(data, e)}; cannot read the JSON array", fatal=True)
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
    for i, obj in enumerate(arr, start=1):
        if not isinstance(obj, dict):
            yield RecordError(path, i, None, f"expected a JSON object, got {type(obj).__name__}", unit="record")
            continue
        size = len(json.dumps(obj, ensure_ascii=False).encode("utf-8"))
        if size > max_bytes:
            yield RecordError(path, i, None, f"record too large ({size} bytes, limit {max_bytes}); raise --max-record-bytes "
                              f"or split it", unit="record")
            continue
        yield RawRecord(i, obj, unit="record")


def iter_json_rows(path: str | os.PathLike, max_record_bytes: int = 1_000_000):
    """Yields once: (the first record's keys, every item of `iter_raw`): JSON records read as table rows."""
    items = iter_raw(path, max_record_bytes)
    head: list = []
    for item in items:
        head.append(item)
        if isinstance(item, RawRecord) or item.fatal:
            break
    keys = list(head[-1].obj) if head and isinstance(head[-1], RawRecord) else []

    def rows():
        yield from head
        yield from items

    yield keys, rows()


def looks_json(path: str | os.PathLike) -> bool:
    """Does the file's first non-blank byte open a JSON object or array?"""
    return _first_byte(os.fspath(path)) in (b"{", b"[")
