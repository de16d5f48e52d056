"""The store's database file: SQLCipher connections, bounded lock waits, sealed file modes, the
import lock, and the one-time migration of an older plaintext store into an encrypted one.

The whole file (tables, indexes, WAL) is encrypted with SQLCipher 4 (AES-256-CBC per page with an
HMAC-SHA512 per page) under a raw 256-bit key derived from the store's master secret
(node/crypto.py `StoreCipher.db_key`), so contributor ids, file names, consent sources, model
names and metadata never sit on disk in clear (ARCHITECTURE.md invariant 1; issue 15, item 9).
Temporary tables and indices stay in memory. Files are created 0600 in a 0700 directory.

Every lock wait is bounded (BUSY_TIMEOUT_S); a store that stays busy raises StoreBusy, a plain
error naming what holds it (the import lock file records the holder), never `database is locked`
(issue 15, item 8).

- SQLCipher design (page encryption, raw key form `x'...'`, `sqlcipher_export`):
  https://www.zetetic.net/sqlcipher/design/ and https://www.zetetic.net/sqlcipher/sqlcipher-api/
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlcipher3 import dbapi2 as sqlcipher

from node.crypto import CryptoError

BUSY_TIMEOUT_S = 5.0
PLAIN_HEADER = b"SQLite format 3\x00"
Error = sqlcipher.Error
OperationalError = sqlcipher.OperationalError
DatabaseError = sqlcipher.DatabaseError


class StoreBusy(Exception):
    """The node store stayed locked longer than the bounded wait: another writer holds it."""


def is_busy(e: BaseException) -> bool:
    """Is `e` SQLite's "database is locked / busy" error (from any SQLite binding)?"""
    msg = str(e).lower()
    return type(e).__name__ == "OperationalError" and ("locked" in msg or "busy" in msg)


def busy_error(path: Path) -> StoreBusy:
    """StoreBusy for the store at `path`, naming the running import when one holds the import lock."""
    holder = lock_holder(path)
    what = f"an import is running (process {holder['pid']}, since {holder['since']})" if holder else "another process is writing to it"
    return StoreBusy(f"the node store is busy: {what}; try again when it has finished ({path})")


@contextmanager
def private_umask():
    """Files and folders created inside are private to the owner (umask 077)."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def seal_modes(directory: Path) -> None:
    """Make `directory` and its sub-folders 0700 and every file in them 0600 (older node dirs)."""
    directory = Path(directory)
    for d in [directory, *(p for p in directory.rglob("*") if p.is_dir() and not p.is_symlink())]:
        _chmod(d, 0o700)
        for f in d.iterdir():
            if f.is_file() and not f.is_symlink():
                _chmod(f, 0o600)


def _chmod(p: Path, mode: int) -> None:
    try:
        if stat.S_IMODE(p.stat().st_mode) != mode:
            os.chmod(p, mode)
    except OSError:  # not ours (a mounted volume) or gone meanwhile: best effort, never a refusal
        pass


def is_plaintext(path: Path) -> bool:
    """Is `path` an unencrypted SQLite file (a store written before issue 15)?"""
    try:
        with open(path, "rb") as f:
            return f.read(16) == PLAIN_HEADER
    except FileNotFoundError:
        return False


def connect(path: Path, db_key: bytes) -> sqlcipher.Connection:
    """A SQLCipher connection keyed with `db_key` (raw key), WAL, synchronous FULL, foreign keys,
    secure_delete, temp files in memory and a bounded busy wait. A wrong key
    is refused (CryptoError) before anything is read."""
    path = Path(path)
    if not path.exists():
        with private_umask():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite copies this mode to -wal/-shm
    conn = sqlcipher.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_S)
    conn.execute("PRAGMA cipher_log_level = NONE")  # a wrong key is reported once, as CryptoError
    conn.execute(f"PRAGMA key = \"x'{db_key.hex()}'\"")
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    try:
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except DatabaseError as e:
            if is_busy(e):
                raise busy_error(path) from None
            raise CryptoError(f"{path}: the store cannot be decrypted: wrong store key or passphrase, or not a Cairn "
                              "store") from None
        retry(lambda: conn.execute("PRAGMA journal_mode=WAL"), path)
    except BaseException:
        conn.close()
        raise
    conn.execute("PRAGMA synchronous=FULL")  # a committed ledger entry survives power loss
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA secure_delete=ON")  # deleted content is overwritten with zeros
    conn.execute("PRAGMA temp_store=MEMORY")  # no temporary file holds decrypted pages
    return conn


def retry(fn, path: Path):
    """Run `fn`; SQLite's busy error (after its own bounded wait) becomes StoreBusy."""
    try:
        return fn()
    except OperationalError as e:
        if is_busy(e):
            raise busy_error(path) from None
        raise


def migrate_plaintext(path: Path, db_key: bytes) -> None:
    """Encrypt an older plaintext store and clean up what a crashed migration left, under the
    store's import lock, so that two processes opening it at once never migrate it twice (the
    second would export a store the first is shredding) or remove the other's files mid-way."""
    path = Path(path)
    leftovers = [path.with_name(path.name + s) for s in (".plaintext-old", ".encrypting")]
    if not is_plaintext(path) and not any(p.exists() for p in leftovers):
        return
    with import_lock(path):
        shred_leftovers(path)
        if is_plaintext(path):
            encrypt_plaintext(path, db_key)


def encrypt_plaintext(path: Path, db_key: bytes) -> None:
    """Migrate an unencrypted store at `path` to SQLCipher: export into an encrypted copy, swap it in
    atomically, then overwrite the old file's bytes and its WAL before removing them."""
    path = Path(path)
    tmp = path.with_name(path.name + ".encrypting")
    old = path.with_name(path.name + ".plaintext-old")
    for p in (tmp,):
        p.unlink(missing_ok=True)
    plain = sqlcipher.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_S)
    try:
        plain.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        version = plain.execute("PRAGMA user_version").fetchone()[0]
        with private_umask():
            plain.execute(f"ATTACH DATABASE ? AS sealed KEY \"x'{db_key.hex()}'\"", (str(tmp),))
        plain.execute("SELECT sqlcipher_export('sealed')")
        plain.execute(f"PRAGMA sealed.user_version = {int(version)}")
        plain.execute("DETACH DATABASE sealed")
    finally:
        plain.close()
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.link(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    for side in ("-wal", "-shm"):  # the plaintext store's, closed and checkpointed above
        _shred(path.with_name(path.name + side))
    shred_leftovers(path)


def shred_leftovers(path: Path) -> None:
    """Overwrite and remove what an interrupted plaintext migration left (the old file, a partial copy).
    A crash between the hard link and the swap leaves `.plaintext-old` as a second name of the store
    itself: that one is only unlinked (overwriting it would zero the store), and the migration reruns."""
    path = Path(path)
    old = path.with_name(path.name + ".plaintext-old")
    if old.exists() and path.exists() and os.path.samefile(old, path):
        old.unlink()
    else:
        _shred(old)
    path.with_name(path.name + ".encrypting").unlink(missing_ok=True)


def _shred(p: Path) -> None:
    if p.exists():
        _overwrite(p)
        p.unlink()


def _overwrite(p: Path) -> None:
    size = p.stat().st_size
    with open(p, "rb+") as f:
        chunk = b"\0" * (1 << 20)
        left = size
        while left > 0:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the import lock: one import at a time, and who holds it ------------------------------------

def lock_path(db_path: Path) -> Path:
    """The import lock file next to the store."""
    return Path(db_path).with_name(Path(db_path).name + ".import-lock")


def lock_holder(db_path: Path) -> dict | None:
    """{"pid", "since"} of the running import, None when no import holds the lock."""
    p = lock_path(db_path)
    if not p.exists():
        return None
    fd = os.open(p, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return json.loads(p.read_text() or "{}") or {"pid": "?", "since": "?"}
            except ValueError:
                return {"pid": "?", "since": "?"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextmanager
def import_lock(db_path: Path, wait_s: float | None = None):
    """Hold the store's import lock (an flock, released when the process dies); wait at most
    `wait_s` (default BUSY_TIMEOUT_S), then StoreBusy naming the import that holds it."""
    wait_s = BUSY_TIMEOUT_S if wait_s is None else wait_s
    p = lock_path(db_path)
    with private_umask():
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise busy_error(db_path) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "since": datetime.now(timezone.utc).isoformat(timespec="seconds")})
                  .encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
