"""Turn the project's known errors into one clear line and a non-zero exit code."""

from __future__ import annotations

import functools

import click

from coordinator.simulation import SimulationError
from node.consent import ConsentError
from node.crypto import CryptoError
from node.importers import FormatError
from node.ingest import ImportFailed
from node.links import LinkError
from node.node_dir import NodeDirError
from node.store import StoreError
from node.store_db import StoreBusy, is_busy
from privacy.policy import PolicyError

# Errors of these packages name the rule they enforce; the CLI shows them as one line too.
PROJECT_PACKAGES = ("privacy", "node", "coordinator", "model", "protos")
KNOWN = (FormatError, ConsentError, CryptoError, ImportFailed, NodeDirError, StoreError, PolicyError, SimulationError, LinkError,
         FileNotFoundError, StoreBusy)
BUSY = "the node store is busy: another process (an import, a round) holds its write lock; try again"
DAMAGED = "the node store file DIR/store.sqlite is damaged (altered or truncated); restore it from a backup"


def is_damaged(e: BaseException) -> bool:
    """Is `e` SQLite's error for a corrupt or altered database file (from any SQLite binding)?"""
    msg = str(e).lower()
    return type(e).__name__ in ("DatabaseError", "OperationalError") and ("malformed" in msg or "not a database" in msg)


def error_json(e: BaseException) -> dict:
    """A known error as JSON-ready data (`--json` commands print this instead of a line of text):
    {"error": message, "type": class name, "errors": [{"file", "unit", "number", "field", "message"}, ...]}."""
    msg = str(e) if isinstance(e, KNOWN) or type(e).__module__.split(".")[0] in PROJECT_PACKAGES else repr(e)
    out: dict = {"error": msg, "type": type(e).__name__}
    errs = getattr(e, "errors", None)
    if isinstance(errs, list):
        out["errors"] = [{"file": x.path, "unit": x.unit, "number": x.line, "field": x.field, "message": x.message}
                         for x in errs if hasattr(x, "location")]
    return out


def friendly(fn):
    """Decorate a click command: known errors become one line (click.ClickException), exit code 1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KNOWN as e:
            raise click.ClickException(str(e)) from None
        except Exception as e:  # errors raised by the project's packages carry their rule in the message
            if is_busy(e):  # SQLite's raw "database is locked" that no layer below translated
                raise click.ClickException(BUSY) from None
            if is_damaged(e):  # a page failed SQLCipher's HMAC or SQLite's structure checks
                raise click.ClickException(f"{DAMAGED} ({e})") from None
            if type(e).__module__.split(".")[0] in PROJECT_PACKAGES:
                raise click.ClickException(f"{type(e).__name__}: {e}") from None
            raise

    return wrapper
