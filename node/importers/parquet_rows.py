"""Parquet files whose rows are records of a known JSON format (the Hugging Face Hub distributes
oasst1/oasst2, WildChat, LMSYS-Chat-1M, UltraFeedback, PRISM and Argilla exports as Parquet).

`iter_parquet(path)` yields each row as a `RawRecord` (numbered from 1, unit "row") whose values
are JSON-like: timestamps and dates become ISO 8601 strings, decimals floats, binary values None
(images and the like are not text). Such a file is then imported by the importer its rows fit,
exactly as its JSON Lines form would be; without a fit it is a table for the column-mapping
importer (node/importers/table.py). Reading problems are RecordErrors naming the file and row;
nothing quotes record text (ARCHITECTURE.md invariants 1 and 9).
"""

from __future__ import annotations

import datetime
import decimal
import os
from typing import Any, Iterator

from node.importers.reader import RawRecord, RecordError

PARQUET_MAGIC = b"PAR1"


def is_parquet(path: str | os.PathLike) -> bool:
    """Does the file start with Parquet's magic bytes?"""
    try:
        with open(path, "rb") as f:
            return f.read(4) == PARQUET_MAGIC
    except OSError:
        return False


def jsonable(v: Any) -> Any:
    """A Parquet value as the JSON value its JSON Lines export would hold."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, datetime.timedelta):
        return v.total_seconds()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return None
    if isinstance(v, float) and v != v:  # NaN: a missing value
        return None
    return v


def iter_parquet(path: str | os.PathLike, max_record_bytes: int = 1_000_000) -> Iterator[RawRecord | RecordError]:
    """Every row as a RawRecord {column: JSON-like value}, or a RecordError naming the row."""
    import pyarrow.parquet as pq

    path = os.fspath(path)
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for corrupt files
        yield RecordError(path, 1, None, f"not a readable Parquet file ({type(e).__name__})", unit="row", fatal=True)
        return
    n = 0
    try:
        for batch in pf.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                n += 1
                yield RawRecord(n, jsonable(row), unit="row")
    except Exception as e:
        yield RecordError(path, n + 1, None, f"cannot read past this row: {type(e).__name__}", unit="row", fatal=True)
