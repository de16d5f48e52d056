"""The ledger's running accounting state, derived only from its verified rows (issue 16; ARCHITECTURE.md
invariants 2, 5 and 7).

The Renyi privacy filter that enforces the cap composes additively (privacy/accounting/running.py), so
a ledger keeps the filter's running state and the plans committed so far, and adds each new entry, instead
of replaying its history on every append, budget query and plan (privacy/ledger.py). The state is:

- derived only from the ledger's own rows, each one verified when it is first read: its body hashes to its
  entry_hash, its Ed25519 signature verifies under the node's key (RFC 8032), its seq follows and its
  prev_hash is the entry_hash before it (a row that does not verify raises StateError: the node refuses
  to account, and so to release, on a tampered ledger);
- cached in memory keyed by (the node's key, the head hash it was built up to). A lookup reads the head: the
  state of that head hash is reused; otherwise the node's latest cached state is used only if the row at its
  seq still carries its hash (its chain is the same), and the rows after it are verified and added (another
  process appended); otherwise (a swapped or rewritten ledger) the state is rebuilt from the first entry.

A new process (the Deployment Engine starts one per message) would re-verify every row; so the state is
also saved in a sidecar table of the same database (`privacy_accounting_state`, one row, written in an
append's own transaction at most every SIDECAR_EVERY entries), authenticated by HMAC-SHA256 (RFC 2104) under
a secret derived from the node's ledger key. It is used only if its MAC verifies and the row at its seq
still carries its head hash; the rows after it are verified and added; otherwise it is ignored and the state
is rebuilt from the first entry (a tampered, stale or swapped sidecar costs time, never accuracy). A valid
sidecar AHEAD of the ledger (its seq has no row: it is written in the same transaction as that row, so the
rows were removed or the file rolled back) is refused with StateError: a rollback would hide releases made.

The figures equal the from-scratch ones bit for bit (the running sums are exact integers:
privacy/accounting/running.py; tests/privacy/accounting/test_incremental.py compares them on random
histories).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from privacy.accounting import FilterState, new_state
from privacy.events import DpEvent, event_from_proto
from privacy.ledger_sidecar import load_sidecar
from protos import ledger_pb2

GENESIS_PREV_HASH = bytes(32)
CACHE_SIZE = 64  # ledgers (node keys) remembered per process


class StateError(ValueError):
    """A ledger row does not verify: no accounting state is derived from it (the message says which)."""


@dataclass
class AccountingState:
    """A ledger's running accounting state after entry `seq` (-1: empty), whose hash is `head_hash`."""

    seq: int
    head_hash: bytes
    filter: FilterState
    # plan id -> (plan event bytes, plan event, (target_delta, plan_epsilon, plan_accountant) its first entry committed)
    plans: dict[str, tuple[bytes, DpEvent, tuple[float, float, str]]] = field(default_factory=dict)

    def copy(self) -> AccountingState:
        """An independent copy."""
        return AccountingState(self.seq, self.head_hash, self.filter.copy(), dict(self.plans))


_CACHE: dict[tuple[bytes, bytes], AccountingState] = {}  # (public key, head hash) -> state
_LOCK = threading.Lock()  # the cache is shared by the threads of a process (one ledger connection each)


def remember(public_key: bytes, st: AccountingState) -> None:
    """Cache `st` as the latest state of the ledger signed by `public_key` (call only after a commit)."""
    with _LOCK:
        for k in [k for k in _CACHE if k[0] == public_key]:
            del _CACHE[k]
        while len(_CACHE) >= CACHE_SIZE:
            del _CACHE[next(iter(_CACHE))]
        _CACHE[(public_key, st.head_hash)] = st


def forget() -> None:
    """Drop every cached state (tests and benchmarks that time a cold start)."""
    with _LOCK:
        _CACHE.clear()


def running_state(conn: sqlite3.Connection, public_key: bytes, mac_key: bytes | None = None) -> AccountingState:
    """The running state of the ledger in `conn` signed by `public_key` (see the module docstring); with
    `mac_key`, a valid sidecar is a starting point too. The returned state is shared: copy it before changing it."""
    head = conn.execute("SELECT seq, entry_hash FROM privacy_ledger ORDER BY seq DESC LIMIT 1").fetchone()
    head_hash = GENESIS_PREV_HASH if head is None else bytes(head[1])
    with _LOCK:
        hit = _CACHE.get((public_key, head_hash))
        start = next((st for (pk, _), st in _CACHE.items() if pk == public_key), None)
    if hit is not None and (head is None or hit.seq == head[0]):
        return hit
    from_sidecar = start is None and mac_key is not None
    if start is None and mac_key is not None:
        start = load_sidecar(conn, mac_key, public_key)
    if start is not None and start.seq >= 0:
        row = conn.execute("SELECT entry_hash FROM privacy_ledger WHERE seq = ?", (start.seq,)).fetchone()
        if row is None and from_sidecar:  # saved in the transaction of entry start.seq, now missing: rolled back
            raise StateError(f"the ledger ends before seq {start.seq}, which this node's own accounting state (its "
                             "MAC verifies) reached: entries were removed or the file rolled back; refusing to "
                             "account on it (the releases they recorded were made)")
        if row is None or bytes(row[0]) != start.head_hash:
            start = None  # another chain: rebuild from the first entry
    st = start.copy() if start is not None and start.seq >= 0 else AccountingState(-1, GENESIS_PREV_HASH, new_state())
    verifier = Ed25519PublicKey.from_public_bytes(public_key)
    rows = conn.execute("SELECT seq, body, entry_hash, signature FROM privacy_ledger WHERE seq > ? ORDER BY seq",
                        (st.seq,))
    for seq, body, h, sig in rows:
        apply_row(st, verifier, int(seq), bytes(body), bytes(h), bytes(sig))
    remember(public_key, st)
    return st


def apply_row(st: AccountingState, verifier: Ed25519PublicKey, seq: int, raw: bytes, h: bytes, sig: bytes) -> None:
    """Verify one stored row against the state before it, then add it to the state (StateError if not)."""
    def refuse(why: str) -> StateError:
        return StateError(f"the ledger does not verify at seq {seq} ({why}): refusing to account on it")
    if hashlib.sha256(raw).digest() != h:
        raise refuse("its body does not hash to its entry_hash")
    try:
        verifier.verify(sig, h)
    except InvalidSignature:
        raise refuse("its Ed25519 signature does not verify with this node's key") from None
    body = ledger_pb2.LedgerEntryBody()
    body.ParseFromString(raw)
    if body.seq != seq or seq != st.seq + 1 or bytes(body.prev_hash) != st.head_hash:
        raise refuse("its seq or prev_hash does not chain to the entry before it")
    st.filter.add(event_from_proto(body.event))
    if body.plan_id and body.plan_id not in st.plans and body.HasField("plan_event"):
        st.plans[body.plan_id] = (body.plan_event.SerializeToString(deterministic=True), event_from_proto(body.plan_event),
                                  (body.target_delta, body.plan_epsilon, body.plan_accountant))
    st.seq, st.head_hash = seq, h
