"""The ledger's accounting sidecar: the running accounting state saved next to the ledger (issue 16).

One row of the node's own database, `privacy_accounting_state`, holding the state of privacy/ledger_accounting.py
after entry `seq` (head hash, the filter's exact RDP sums, the committed plans), authenticated by
HMAC-SHA256 (RFC 2104, https://www.rfc-editor.org/rfc/rfc2104) under a secret derived from the node's ledger
key, so nobody without the key can plant a state. It is a cache: privacy/ledger_accounting.py uses it only when
its MAC verifies and the ledger's row at its seq still carries its head hash, verifies the rows after it, and
otherwise rebuilds the state from the first entry. Protects ARCHITECTURE.md invariants 2 and 5 (a stale or
forged sidecar never lowers the figure the cap is checked against).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from typing import TYPE_CHECKING

from privacy.accounting import new_state
from privacy.accounting.running import fingerprint
from privacy.events import event_from_proto
from protos import events_pb2

if TYPE_CHECKING:
    from privacy.ledger_accounting import AccountingState

SCHEMA = """
CREATE TABLE IF NOT EXISTS privacy_accounting_state (
    id        INTEGER PRIMARY KEY CHECK (id = 0),
    seq       INTEGER NOT NULL,
    head_hash BLOB NOT NULL,
    state     BLOB NOT NULL,      -- JSON: the filter's sums and the committed plans
    mac       BLOB NOT NULL       -- HMAC-SHA256(secret, public key || seq || head hash || state)
);
"""
SIDECAR_EVERY = 32  # an append saves the state when the sidecar is this many entries behind


def mac_key_of(private_raw: bytes) -> bytes:
    """The sidecar's HMAC secret, derived from the node's raw Ed25519 private key (only the node knows it)."""
    return hashlib.sha256(b"cairn accounting sidecar v1\x00" + private_raw).digest()


def _mac(key: bytes, public_key: bytes, seq: int, head_hash: bytes, blob: bytes) -> bytes:
    return hmac.new(key, public_key + int(seq).to_bytes(8, "big", signed=True) + head_hash + blob,
                    hashlib.sha256).digest()


def save_sidecar(conn: sqlite3.Connection, key: bytes, public_key: bytes, st: AccountingState) -> None:
    """Write `st` as the sidecar (inside the caller's write transaction)."""
    f = st.filter
    doc = {"orders": list(f.orders), "curves": fingerprint(f.orders), "sums": [format(x, "x") for x in f.sums], "infinite": f.infinite,
           "approx_delta": format(f.approx_delta, "x"), "entries": f.entries,
           "plans": [[pid, raw.hex(), list(committed)] for pid, (raw, _, committed) in st.plans.items()]}
    blob = json.dumps(doc, separators=(",", ":")).encode()
    conn.execute("INSERT OR REPLACE INTO privacy_accounting_state(id, seq, head_hash, state, mac) VALUES (0, ?, ?, ?, ?)",
                 (st.seq, st.head_hash, blob, _mac(key, public_key, st.seq, st.head_hash, blob)))


def sidecar_seq(conn: sqlite3.Connection) -> int:
    """The seq the sidecar was saved at (-1: none)."""
    row = conn.execute("SELECT seq FROM privacy_accounting_state WHERE id = 0").fetchone()
    return -1 if row is None else int(row[0])


def load_sidecar(conn: sqlite3.Connection, key: bytes, public_key: bytes) -> AccountingState | None:
    """The sidecar's state if its MAC verifies (None otherwise: no sidecar, forged, or unreadable)."""
    from privacy.ledger_accounting import AccountingState

    row = conn.execute("SELECT seq, head_hash, state, mac FROM privacy_accounting_state WHERE id = 0").fetchone()
    if row is None:
        return None
    seq, head_hash, blob, mac = int(row[0]), bytes(row[1]), bytes(row[2]), bytes(row[3])
    if not hmac.compare_digest(_mac(key, public_key, seq, head_hash, blob), mac):
        return None
    try:
        doc = json.loads(blob)
        f = new_state()
        if tuple(doc["orders"]) != f.orders:
            return None  # the filter's orders changed: rebuild
        if doc["curves"] != fingerprint(f.orders):
            return None  # saved by code whose curves differ (running.py `fingerprint`): rebuild
        f.sums = [int(x, 16) for x in doc["sums"]]
        f.infinite = [bool(x) for x in doc["infinite"]]
        f.approx_delta, f.entries = int(doc["approx_delta"], 16), int(doc["entries"])
        plans = {}
        for pid, raw_hex, (c_delta, c_eps, c_method) in doc["plans"]:
            raw = bytes.fromhex(raw_hex)
            plans[str(pid)] = (raw, event_from_proto(events_pb2.DpEvent.FromString(raw)),
                               (float(c_delta), float(c_eps), str(c_method)))
    except (ValueError, KeyError, TypeError):
        return None
    return AccountingState(seq, head_hash, f, plans)
