"""Tables: CSV, TSV and Parquet files of preferences, ratings or thumbs, through one column mapping.

A table has no fixed shape, so the operator says which column holds what, on the command line
(`--map prompt=question,response_a=ans1,response_b=ans2,preference=winner,contributor=user`) or in
a TOML mapping file (`--map-file mapping.toml`):

    [columns]                     # target = "column"
    prompt = "question"
    response_a = "ans1"
    response_b = "ans2"
    preference = "winner"
    contributor = "user"
    [values.preference]           # optional: cell value -> a, b, tie, both_bad
    left = "a"
    right = "b"
    [values.thumbs]               # optional: cell value -> 1 or -1
    "good answer" = 1
    [options]
    scale = [1, 10]               # rating scale (default 1..5); on the command line: scale=1..10
    dimension = "helpfulness"     # rating dimension when no dimension column (default "overall")

Targets (TARGETS): text `prompt`, `system`, `response` (one response: ratings, thumbs) or
`response_a`/`response_b` (a pairwise preference: `preference`, alias `outcome`), or `chosen` and
`rejected` (TRL layout: the chosen one won); a text cell may hold a message list
[{role, content}, ...] (a response's list ends with it; its earlier turns are the prompt when none
is mapped); `rating` and
`dimension`; `thumbs`; `contributor`; `model` or `model_a`/`model_b`; `timestamp`; `language`;
`id` (the record key; default: a hash of the row). Default preference values: a/b/tie/both_bad,
A/B, 1/2, model_a/model_b, response_a/response_b, the names of the response columns and the
model names in the row; thumbs: up/down, +1/-1, true/false, like/dislike, good/bad.

→ one Record per row: the prompt (with an optional system turn), the responses (models when
mapped), one feedback item per mapped feedback column, all from the row's contributor
(its contributor column, as Context.who spells ids, or --contributor for every row; one of them is required). The contributor wrote
the prompt, so they own the conversation. Rows are numbered from 1 after the header; errors name
file, row and column, and never quote cell text (ARCHITECTURE.md invariants 1 and 9).

Read with the standard `csv` module (UTF-8, gzip allowed) and pyarrow for Parquet
(https://arrow.apache.org/docs/python/parquet.html), batch by batch.
"""

from __future__ import annotations

import csv
import io
import os
import tomllib
from typing import Any, Iterator

from node.importers.common import Context, Importer, choice, content_text, language, role, stable_hash, timestamp
from node.importers.reader import RawRecord, RecordError, _close, _open, first_bad_utf8, iter_json_rows, utf8_error
from node.schema import Feedback, Message, Record, Response, SchemaError

NAME = "table"
ALIASES = ("table", "csv", "tsv", "parquet")
PARQUET_MAGIC = b"PAR1"
TEXT_TARGETS = ("prompt", "system", "response", "response_a", "response_b")
TARGETS = (*TEXT_TARGETS, "chosen", "rejected", "preference", "outcome", "rating", "dimension", "thumbs", "contributor", "model", "model_a",
           "model_b", "timestamp", "language", "id")
OUTCOME_VALUES = {"a": "a", "b": "b", "tie": "tie", "both_bad": "both_bad", "model_a": "a", "model_b": "b",
                  "response_a": "a", "response_b": "b", "1": "a", "2": "b", "draw": "tie", "equal": "tie",
                  "tie (bothbad)": "both_bad", "both bad": "both_bad", "neither": "both_bad", "model a": "a",
                  "model b": "b", "response a": "a", "response b": "b", "left": "a", "right": "b", "first": "a",
                  "second": "b", "same": "tie", "none": "both_bad"}
THUMBS_VALUES = {"up": 1, "down": -1, "+1": 1, "1": 1, "-1": -1, "true": 1, "false": -1, "like": 1, "dislike": -1,
                 "0": -1, "yes": 1, "no": -1, "good": 1, "bad": -1, "thumbs_up": 1, "thumbs_down": -1, "positive": 1, "negative": -1,
                 "\U0001f44d": 1, "\U0001f44e": -1}


class MappingError(ValueError):
    """The mapping is missing or does not fit the table (names the file and the columns found)."""


def kind_of(path: str) -> str | None:
    """'parquet', 'csv' or 'tsv' when `path` is a table (Parquet magic bytes, else the extension), else None."""
    try:
        with open(path, "rb") as f:
            if f.read(4) == PARQUET_MAGIC:
                return "parquet"
    except OSError:
        return None
    low = path.lower().removesuffix(".gz")
    if low.endswith(".csv"):
        return "csv"
    if low.endswith((".tsv", ".tab")):
        return "tsv"
    return None


def parse_map(spec: str | None, map_file: str | os.PathLike | None = None) -> dict:
    """The mapping from `--map a=b,c=d` and/or a TOML mapping file: {"columns", "values", "options"}."""
    m: dict = {"columns": {}, "values": {}, "options": {}}
    if map_file:
        try:
            with open(map_file, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise MappingError(f"{map_file}: cannot read the mapping file: {e}") from None
        cols = data.get("columns", {k: v for k, v in data.items() if isinstance(v, str)})
        m["columns"].update(cols)
        m["values"].update(data.get("values", {}))
        m["options"].update(data.get("options", {}))
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        target, sep, col = part.partition("=")
        target, col = target.strip(), col.strip()
        if not sep or not target or not col:
            raise MappingError(f"--map: expected TARGET=COLUMN, got {part.strip()!r}")
        if target == "scale":
            lo, _, hi = col.partition("..")
            try:
                m["options"]["scale"] = [float(lo), float(hi)]
            except ValueError:
                raise MappingError(f"--map: scale must be LO..HI, got {col!r}") from None
        else:
            m["columns"][target] = col
    return m


def _check_mapping(path: str, m: dict, header: list[str]) -> None:
    cols = m["columns"]
    found = f"columns found: {', '.join(repr(h) for h in header)}"
    if "chosen" in cols or "rejected" in cols:  # TRL-style: response_a is the chosen one, it won
        if not {"chosen", "rejected"} <= set(cols) or cols.keys() & {"response_a", "response_b", "preference", "outcome"}:
            raise MappingError(f"{path}: map chosen and rejected together, without response_a/b or a preference; {found}")
        cols["response_a"], cols["response_b"] = cols.pop("chosen"), cols.pop("rejected")
        m["options"]["chosen_wins"] = True
    if not cols:
        raise MappingError(f"{path} is a table; say which column holds what with --map TARGET=COLUMN,... or --map-file "
                           f"(targets: {', '.join(TARGETS)}); {found}")
    for target, col in cols.items():
        if target not in TARGETS:
            raise MappingError(f"{path}: unknown mapping target {target!r} (targets: {', '.join(TARGETS)})")
        if not isinstance(col, str) or col not in header:
            raise MappingError(f"{path}: column {col!r} (mapped to {target}) is not in the table; {found}")
    has = set(cols)
    if "outcome" in has and "preference" in has:
        raise MappingError(f"{path}: map either preference or outcome, not both")
    if has & {"preference", "outcome"} and not {"response_a", "response_b"} <= has:
        raise MappingError(f"{path}: a preference needs response_a and response_b columns; {found}")
    if has & {"rating", "thumbs"} and not has & {"response", "response_a"}:
        raise MappingError(f"{path}: a rating or thumbs needs a response column; {found}")
    if not has & set(TEXT_TARGETS):
        raise MappingError(f"{path}: map at least one text column (prompt, response, response_a/response_b); {found}")


def iter_rows(path: str, kind: str, max_bytes: int) -> Iterator[tuple[list[str], Iterator[RawRecord | RecordError]]]:
    """Yields once: (header, rows), each row a RawRecord {column: value} numbered from 1, or a RecordError."""
    if kind == "parquet":
        yield from _parquet(path)
    elif kind == "json":  # JSON/JSONL records mapped like table rows
        yield from iter_json_rows(path, max_bytes)
    else:
        yield from _csv(path, "\t" if kind == "tsv" else ",", max_bytes)


def _parquet(path: str):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for corrupt files
        raise MappingError(f"{path}: not a readable Parquet file ({type(e).__name__})") from None
    header = list(pf.schema_arrow.names)

    def rows():
        n = 0
        try:
            for batch in pf.iter_batches(batch_size=4096):
                for row in batch.to_pylist():
                    n += 1
                    yield RawRecord(n, {k: _plain(v) for k, v in row.items()}, unit="row")
        except Exception as e:
            yield RecordError(path, n + 1, None, f"cannot read past this row: {type(e).__name__}", unit="row", fatal=True)

    yield header, rows()


def _plain(v: Any) -> Any:
    """A Parquet cell as JSON-ready data (timestamps as ISO 8601, decimals as floats, bytes as hex)."""
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if type(v).__name__ == "Decimal":
        return float(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _csv(path: str, delimiter: str, max_bytes: int):
    f = _open(path)
    text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="", errors="strict")  # type: ignore[arg-type]
    csv.field_size_limit(max(max_bytes, 1024))
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader, None)
    except (UnicodeDecodeError, csv.Error) as e:
        _close(f)
        raise MappingError(f"{path}: cannot read the header row: {_why(e, path)}") from None
    if not header:
        _close(f)
        raise MappingError(f"{path}: the table is empty (no header row)")
    header = [h.strip() for h in header]

    def rows():
        n = 0
        try:
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except (UnicodeDecodeError, csv.Error) as e:
                    yield RecordError(path, n + 1, None, f"cannot read past this row: {_why(e, path)}", unit="row",
                                      fatal=True)
                    return
                n += 1
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    yield RecordError(path, n, None, f"{len(cells)} cells, the header has {len(header)} columns", unit="row")
                    continue
                yield RawRecord(n, dict(zip(header, cells)), unit="row")
        finally:
            _close(f)

    yield header, rows()


def _why(e: Exception, path: str) -> str:
    if isinstance(e, UnicodeDecodeError):
        found = first_bad_utf8(path)
        if found:
            data, err, offset = found
            return utf8_error(data, err, offset)
        return "not valid UTF-8"
    if "field larger than field limit" in str(e):
        return "a cell is larger than the record size limit; raise --max-record-bytes"
    return f"malformed CSV ({e})"


def _cell(row: dict, m: dict, target: str) -> Any:
    col = m["columns"].get(target)
    if col is None:
        return None
    v = row.get(col)
    if isinstance(v, str) and not v.strip():
        return None
    if isinstance(v, float) and v != v:  # NaN: pandas' empty cell in Parquet
        return None
    if hasattr(v, "isoformat"):  # Parquet timestamps/dates
        return v.isoformat()
    return v


def _text(row: dict, m: dict, target: str, required: bool = False) -> str | None:
    v = _cell(row, m, target)
    col = m["columns"].get(target, target)
    if v is None:
        if required:
            raise SchemaError("empty", col)
        return None
    if isinstance(v, list) and target != "prompt":  # a conversation ending with the response
        turns = _turns(v, col)
        if not turns or turns[-1].role != "assistant":
            raise SchemaError("a message list must end with the assistant's response", col)
        return turns[-1].text
    if not isinstance(v, str):
        raise SchemaError(f"expected text, got {type(v).__name__}", col)
    return v


def _outcome(v: Any, row: dict, m: dict) -> str:
    col = m["columns"].get("preference") or m["columns"]["outcome"]
    custom = m["values"].get("preference") or m["values"].get("outcome") or {}
    key = str(v).strip()
    if key in custom:
        return choice(custom[key], {o: o for o in ("a", "b", "tie", "both_bad")}, col)
    table = dict(OUTCOME_VALUES)
    for side in ("a", "b"):
        for name in (m["columns"].get(f"response_{side}"), row.get(m["columns"].get(f"model_{side}", "\0"))):
            if isinstance(name, str) and name:
                table.setdefault(name.strip().lower(), side)
    return choice(key.lower(), table, col)


def _thumbs(v: Any, m: dict) -> int:
    col = m["columns"]["thumbs"]
    custom = m["values"].get("thumbs") or {}
    key = str(v).strip()
    if key in custom:
        return choice(custom[key], {1: 1, -1: -1}, col)
    if isinstance(v, bool):
        return 1 if v else -1
    if isinstance(v, (int, float)) and v in (1, -1):
        return int(v)
    return choice(key.lower(), THUMBS_VALUES, col)


def parse_row(row: dict, ctx: Context, m: dict) -> list[Record]:
    """One table row -> one Record (see the module docstring)."""
    cols = m["columns"]
    who = ctx.who(_cell(row, m, "contributor"), cols.get("contributor", "contributor"))
    ts = timestamp(_cell(row, m, "timestamp"), cols.get("timestamp", "timestamp"))
    prompt = []
    if (sys_text := _text(row, m, "system")) is not None:
        prompt.append(Message("system", sys_text))
    if isinstance(_cell(row, m, "prompt"), list):
        prompt.extend(_turns(_cell(row, m, "prompt"), cols["prompt"]))
    elif (p := _text(row, m, "prompt", required="prompt" in cols)) is not None:
        prompt.append(Message("user", p))
    feedback: list[Feedback] = []
    if "response_a" in cols:
        responses = [Response(_text(row, m, "response_a", True), _opt(row, m, "model_a")),  # type: ignore[arg-type]
                     Response(_text(row, m, "response_b", True), _opt(row, m, "model_b"))]  # type: ignore[arg-type]
    elif "response" in cols:
        responses = [Response(_text(row, m, "response", True), _opt(row, m, "model"))]  # type: ignore[arg-type]
    else:
        responses = []
    lead = "response_a" if "response_a" in cols else "response"
    if not prompt and isinstance(_cell(row, m, lead), list):  # implicit prompt: the turns before the response
        prompt = _turns(_cell(row, m, lead), cols[lead])[:-1]
    pref = _cell(row, m, "preference") if "preference" in cols else _cell(row, m, "outcome")
    if pref is not None or m["options"].get("chosen_wins"):
        outcome = "a" if m["options"].get("chosen_wins") else _outcome(pref, row, m)
        feedback.append(Feedback("pairwise", who, {"a": 0, "b": 1, "outcome": outcome, "strength": 1.0}, timestamp=ts))
    rating = _cell(row, m, "rating")
    if rating is not None:
        feedback.append(_rating(rating, row, m, who, ts))
    thumbs = _cell(row, m, "thumbs")
    if thumbs is not None:
        feedback.append(Feedback("thumbs", who, {"response": 0, "value": _thumbs(thumbs, m)}, timestamp=ts))
    rid = _cell(row, m, "id")
    key = str(rid).strip() if rid is not None else stable_hash(row)
    return [Record(NAME, key, prompt, responses, feedback, owner=who,
                   language=language(_cell(row, m, "language"), cols.get("language", "language")), timestamp=ts)]


def _turns(v: list, col: str) -> list[Message]:
    """A cell holding a message list [{"role", "content"}, ...] (Parquet/JSON cells) as Messages."""
    out = []
    for i, x in enumerate(v):
        if not isinstance(x, dict):
            raise SchemaError(f"message {i}: expected an object with role and content", col)
        out.append(Message(role(x.get("role"), col), content_text(x.get("content"), col)))
    return out


def _opt(row: dict, m: dict, target: str) -> str | None:
    v = _cell(row, m, target)
    return None if v is None else str(v).strip()


def _rating(v: Any, row: dict, m: dict, who: str, ts: str | None) -> Feedback:
    col = m["columns"]["rating"]
    try:
        value = float(v) if not isinstance(v, bool) else None
    except (TypeError, ValueError):
        value = None
    if value is None:
        raise SchemaError(f"expected a number, got {type(v).__name__}", col)
    lo, hi = m["options"].get("scale", (1, 5))
    if not lo <= value <= hi:
        raise SchemaError(f"rating {value:g} outside the scale {lo:g}..{hi:g} (set it with --map scale=LO..HI or "
                          f"[options] scale)", col)
    dim = _cell(row, m, "dimension")
    dim = str(dim).strip() if dim is not None else str(m["options"].get("dimension", "overall"))
    return Feedback("rating", who, {"response": 0, "dimension": dim, "value": value, "scale": [lo, hi]}, timestamp=ts)


def open_table(path: str, kind: str, mapping: dict | None, max_bytes: int) -> tuple[Importer, Iterator]:
    """(the row importer for this mapping, the rows); MappingError naming the columns found when it does not fit."""
    m = mapping or {"columns": {}, "values": {}, "options": {}}
    header, rows = next(iter_rows(path, kind, max_bytes))
    try:
        _check_mapping(path, m, header)
    except MappingError:
        close = getattr(rows, "close", None)
        if close:
            close()
        raise
    imp = Importer(NAME, lambda obj, ctx: parse_row(obj, ctx, m), lambda obj: False,
                   description="CSV/TSV/Parquet tables through a column mapping")
    return imp, rows


def needs_contributor(mapping: dict | None) -> bool:
    """Without a contributor column, rows cannot be attributed: --contributor is required."""
    return not (mapping or {}).get("columns", {}).get("contributor")


__all__ = ["ALIASES", "MappingError", "NAME", "TARGETS", "kind_of", "open_table", "parse_map", "parse_row"]
