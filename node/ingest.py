"""`cairn node import`: parse a file with its importer, redact PII, and store it atomically.

By default an import is all-or-nothing: every record is written inside one SQLite transaction and
the first bad record rolls it back, with an error naming file, line and field. With
`skip_invalid`, bad records are reported and the rest land. Records already stored (same source
and key) are skipped, so importing a file twice adds nothing. A killed import leaves the store as
it was: SQLite's WAL discards an uncommitted transaction (ARCHITECTURE.md invariant 9). Text is
redacted (node/redact.py) and sealed (node/store.py) before it is written (invariant 1).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from node.consent import parse_time
from node.importers import RecordError, detect_format, read_records
from node.redact import redact_record
from node.store import Store, utcnow


class ImportFailed(Exception):
    """The import was rolled back; nothing changed in the store."""


@dataclass
class ImportReport:
    """What one import did: records stored, duplicates and withdrawn skipped, errors, feedback, redactions."""
    file: str
    format: str
    records: int = 0  # newly stored
    duplicates: int = 0  # already stored, skipped
    withdrawn: int = 0  # records dropped because their contributors withdrew
    skipped: list[str] = field(default_factory=list)  # errors of skipped records (--skip-invalid)
    feedback: Counter = field(default_factory=Counter)
    redactions: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        """The report as JSON-ready data (`cairn node import --json`)."""
        return {
            "file": self.file,
            "format": self.format,
            "records": self.records,
            "duplicates": self.duplicates,
            "withdrawn": self.withdrawn,
            "skipped": len(self.skipped),
            "skipped_errors": self.skipped,
            "feedback": dict(self.feedback),
            "redactions": dict(self.redactions),
        }


def file_sha256(path: Path) -> str:
    """SHA-256 of the file's bytes, hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def import_file(
    store: Store,
    path: Path,
    fmt: str | None = None,
    contributor: str | None = None,
    skip_invalid: bool = False,
    consent: str | None = None,
    consent_at: str | None = None,
    max_record_bytes: int = 1_000_000,
    progress: bool = False,
) -> ImportReport:
    """Import `path` into `store` in one transaction (see the module docstring); the ImportReport."""
    path = Path(path)
    if not path.is_file():
        raise ImportFailed(f"{path}: no such file")
    fmt = fmt or detect_format(path)
    consent_row = None
    if consent:
        consent_time = parse_time(consent_at) if consent_at else parse_time(utcnow())
        consent_row = (consent, consent_time.isoformat(timespec="seconds"), f"import:{path.name}")
    report = ImportReport(file=path.name, format=fmt)
    bar = _progress(path, progress)
    try:
        with store.transaction():
            import_id = store.conn.execute(
                "INSERT INTO imports(file_name, file_sha256, format, imported_at, records, duplicates, skipped)"
                " VALUES(?,?,?,?,0,0,0)",
                (path.name, file_sha256(path), fmt, utcnow()),
            ).lastrowid
            for item in read_records(path, fmt=fmt, contributor=contributor, max_record_bytes=max_record_bytes):
                if bar is not None:
                    bar.update(1)
                if isinstance(item, RecordError):
                    if not skip_invalid:
                        raise ImportFailed(f"{item} (nothing was imported; use --skip-invalid to import the valid records)")
                    report.skipped.append(str(item))
                    continue
                _line, rec = item
                if store.has_record(rec.source, rec.key):
                    report.duplicates += 1
                    continue
                counts = redact_record(rec)
                if store.add_record(rec, import_id, consent_row):
                    report.records += 1
                    report.redactions.update(counts)
                    report.feedback.update(f.kind for f in rec.feedback if not store.is_withdrawn(f.contributor))
                    store.add_redactions(counts)
                else:
                    report.withdrawn += 1
            store.conn.execute(
                "UPDATE imports SET records=?, duplicates=?, skipped=? WHERE id=?",
                (report.records, report.duplicates, len(report.skipped), import_id),
            )
    finally:
        if bar is not None:
            bar.close()
    return report


def _progress(path: Path, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(desc=f"importing {path.name}", unit=" records", leave=False, disable=None)
