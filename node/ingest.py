"""`cairn node import`: parse a file with its importer, redact PII, and store it atomically.

By default an import is all-or-nothing: its records are committed in short batches behind one
logical import that readers see only once it is done (node/import_batches.py), and the first bad
record deletes everything it wrote, with an error naming file, line and field. With
`skip_invalid`, bad records are reported and the rest land. Records already stored (same source
and key) are skipped, so importing a file twice adds nothing. A killed import leaves the store as
it was: its batches are deleted when the store next opens (ARCHITECTURE.md invariant 9). Text,
model names and metadata are redacted (node/redact.py) and sealed (node/store.py) before they are
written (invariant 1). One import runs at a time; a second waits a few seconds, then fails plainly.

An import that would store nothing because the file holds no records or every record is invalid
(even with `skip_invalid`) fails (ImportFailed, exit 1): a silent success would hide the problem.
`dry_run` runs the very same path, then deletes what it wrote (readers never saw it): validated and counted, nothing
stored.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from node import import_batches
from node.consent import check_consent, parse_time
from node.importers import RecordError, detect_format, read_records
from node.importers.diagnose import file_problem
from node.importers.table import NAME as TABLE
from node.importers.table import kind_of
from node.ownership import OwnershipError
from node.record_writer import ADDED, CHUNK, DUPLICATE, existing_uids, write_batch
from node.redact import contact_kind, redact_record
from node.store import Store, utcnow


class ImportFailed(Exception):
    """The import was rolled back; nothing changed in the store. `errors`: the record errors behind it."""

    def __init__(self, message: str, errors: list[RecordError] | None = None):
        super().__init__(message)
        self.errors = errors or []


class _DryRun(Exception):
    """Raised at the end of a dry run's transaction so that everything it wrote rolls back."""


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
    dry_run: bool = False  # validated and counted, nothing stored
    known_ids: int = 0  # contributor ids of this file already in the store: taken as the same people

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
            "dry_run": self.dry_run,
            "known_ids": self.known_ids,
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
    mapping: dict | None = None,
    dry_run: bool = False,
    policy=None,
    consent_by: str | None = None,
    id_prefix: str | None = None,
) -> ImportReport:
    """Import `path` into `store` as one logical import (see the module docstring); the ImportReport.

    `mapping`: the column mapping of a CSV/TSV/Parquet table. `dry_run`: validate, redact and count
    exactly as an import would, then roll everything back. `policy` (the CLI passes the node's):
    consent is checked against it (node/consent.py `check_consent`), `consent_by` justifies a
    backdated `consent_at`. Nothing imported because the file is empty or every record is invalid
    is an ImportFailed, not a success. `id_prefix`: namespace this file's contributor ids ("P:id"),
    for a source whose ids collide with another's (node/importers/common.py); without it an id
    already in the store is the same person (`known_ids` counts them)."""
    path = Path(path)
    problem = file_problem(str(path))
    if problem:
        raise ImportFailed(problem)
    if contributor and contact_kind(contributor):
        raise ImportFailed(f"--contributor {contributor!r} looks like {contact_kind(contributor)}; contributor ids are "
                           "stored in clear, so give a pseudonymous id")
    if not fmt and mapping is not None and kind_of(str(path)):
        fmt = TABLE  # a mapping given for a table means the table importer, whatever its rows look like
    fmt = fmt or ("table" if mapping is not None else detect_format(path, max_record_bytes))
    consent_row = None
    if consent:
        if policy is not None:
            consent_time = check_consent(consent, consent_at, policy, consent_by)
        else:
            consent_time = parse_time(consent_at) if consent_at else parse_time(utcnow())
        source = f"import:{path.name}" + (f"; given by {consent_by.strip()}" if consent_by and consent_by.strip() else "")
        consent_row = (consent, consent_time.isoformat(timespec="seconds"), source)
    report = ImportReport(file=path.name, format=fmt, dry_run=dry_run)
    bar = _progress(path, progress)
    first_errors: list[RecordError] = []
    try:
        with import_batches.run(store, path.name, file_sha256(path), fmt, utcnow()) as batches:
            before = set(store.contributor_ids())
            seen: set[str] = set()
            prepared: list = []
            parsed: list = []  # (line, record, uid) read, not yet checked against the store (one query per CHUNK)

            def prepare() -> None:
                """Records already stored counted and skipped, the rest redacted into `prepared`, written when a
                batch is due. A second copy within the batch goes to write_batch, which stores it only when the
                first was not stored (refused by the ownership rule, say): as one-by-one add_record did."""
                stored = existing_uids(store, [uid for _, _, uid in parsed])
                for line, rec, uid in parsed:
                    if uid in stored:
                        report.duplicates += 1
                        continue
                    prepared.append((line, rec, uid, redact_record(rec)))
                    if batches.due(len(prepared)):
                        _write(store, batches, prepared, path, skip_invalid, report, seen, consent_row)
                parsed.clear()

            for item in read_records(path, fmt=fmt, contributor=contributor, max_record_bytes=max_record_bytes,
                                     mapping=mapping, id_prefix=id_prefix):
                if bar is not None:
                    bar.update(1)
                if isinstance(item, RecordError):
                    if not skip_invalid:
                        raise ImportFailed(f"{item} (nothing was imported; use --skip-invalid to import the valid records)",
                                           [item])
                    report.skipped.append(str(item))
                    if len(first_errors) < 3:
                        first_errors.append(item)
                    continue
                _line, rec = item
                parsed.append((_line, rec, store.cipher.ident("record", rec.source, rec.key)))
                if len(parsed) >= CHUNK:
                    prepare()
            prepare()
            _write(store, batches, prepared, path, skip_invalid, report, seen, consent_row)
            report.known_ids = len(seen & before)
            _check_something(path, report, first_errors)
            if dry_run:
                raise _DryRun
            with batches.final():
                store.add_redactions(report.redactions)
                store.conn.execute("UPDATE imports SET records=?, duplicates=?, skipped=? WHERE id=?",
                                   (report.records, report.duplicates, len(report.skipped), batches.import_id))
    except _DryRun:
        pass
    finally:
        if bar is not None:
            bar.close()
    return report


def _write(store: Store, batches, prepared: list, path: Path, skip_invalid: bool, report: ImportReport,
           seen: set[str], consent_row) -> None:
    """Write the prepared (line, record, uid, redaction counts) in one short transaction
    (node/record_writer.py: a few statements per batch), then empty the list."""
    kinds: list[str] = []  # feedback kinds stored, counted once per batch
    ids: list[str] = []  # contributor ids of the batch as the file names them (report.known_ids)
    with batches.batch():
        snap, outcomes = write_batch(store, [(rec, uid) for _, rec, uid, _ in prepared], batches.import_id, consent_row)
        for (line, rec, _uid, counts), outcome in zip(prepared, outcomes):
            if isinstance(outcome, OwnershipError):  # a bad record: named by file, line and field
                msg = f"{path}:{line}: field 'feedback[{outcome.index}].contributor': {outcome}"
                if not skip_invalid:
                    raise ImportFailed(f"{msg} (nothing was imported; use --skip-invalid to import the valid records)") from None
                report.skipped.append(msg)
                continue
            ids.extend([f.contributor for f in rec.feedback])
            if rec.owner:
                ids.append(rec.owner)
            if outcome == ADDED:
                report.records += 1
                if counts:
                    report.redactions.update(counts)
                kinds.extend([f.kind for f in rec.feedback if not snap.withdrawn(f.contributor)] if snap.tombs
                             else [f.kind for f in rec.feedback])
            elif outcome == DUPLICATE:  # stored meanwhile by another writer (a member's contribution)
                report.duplicates += 1
            else:
                report.withdrawn += 1
    seen.update(map(snap.resolve, ids) if snap.links else ids)
    report.feedback.update(kinds)
    prepared.clear()


def _check_something(path: Path, report: ImportReport, errors: list[RecordError]) -> None:
    """ImportFailed when the file held nothing importable: empty of records, or every record invalid."""
    if report.records or report.duplicates or report.withdrawn:
        return
    if report.skipped:
        shown = "; ".join(report.skipped[:3])
        raise ImportFailed(f"{path}: every record was invalid ({len(report.skipped)} skipped), nothing was imported: "
                           f"{shown}", errors)
    raise ImportFailed(f"{path}: the file holds no records; nothing was imported")


def _progress(path: Path, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(desc=f"importing {path.name}", unit=" records", leave=False, disable=None)
