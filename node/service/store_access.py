"""Opening the node's store from the service: short lock waits that fail with a clear message.

The service runs beside a SuperNode and imports that hold the store's write lock for a while. A
request waits at most BUSY_WAIT_MS for it, then fails with `StoreBusy` (HTTP 503 with a message
that says what to do), never a "database is locked" traceback (ARCHITECTURE.md invariant 9: the
failed request changed nothing, its transaction rolled back).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from node.node_dir import NodeDir

BUSY_WAIT_MS = 2000


class ServiceNodeDir(NodeDir):
    """A NodeDir that derives its store cipher once: a passphrase node would otherwise run scrypt on
    every request (slow, and a way to burn the node's CPU). The passphrase is read once, at start."""

    def cipher(self, passphrase: str | None = None):
        """The store cipher, derived on first use and kept for the life of the service."""
        cached = self.__dict__.get("_cipher")
        if cached is None or passphrase is not None:
            cached = super().cipher(passphrase)
            self.__dict__["_cipher"] = cached
        return cached


class StoreBusy(RuntimeError):
    """The store is held by another writer (an import, a federation round) for longer than we wait."""


def is_busy(exc: BaseException) -> bool:
    """Is `exc` SQLite's (or SQLCipher's) "database is locked / busy" error, or the store's StoreBusy?"""
    if type(exc).__name__ == "StoreBusy":
        return True
    if type(exc).__name__ != "OperationalError":
        return False
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


@contextmanager
def open_store(nd: NodeDir | Path):
    """`with open_store(nd) as store:`: the node's store with a short busy wait; StoreBusy when locked."""
    nd = nd if isinstance(nd, NodeDir) else NodeDir(Path(nd))
    try:
        store = nd.open_store()
    except Exception as e:
        if is_busy(e):
            raise StoreBusy(BUSY_MESSAGE) from None
        raise
    try:
        store.conn.execute(f"PRAGMA busy_timeout={BUSY_WAIT_MS}")
        yield store
    except Exception as e:
        if is_busy(e) and not isinstance(e, StoreBusy):
            raise StoreBusy(BUSY_MESSAGE) from None
        raise
    finally:
        store.close()


BUSY_MESSAGE = (f"the node's store is busy (an import or a federation round is writing to it) and did not free up "
                f"within {BUSY_WAIT_MS / 1000:g} s; nothing was changed, try again in a moment")
