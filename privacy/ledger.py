"""The node's privacy ledger: append-only, hash-chained, Ed25519-signed (ARCHITECTURE.md invariant 7).

Each entry's body (protos/ledger.proto LedgerEntryBody) records one release: its DP event, the
cumulative epsilon claimed after it (at target_delta, by the named accountant), the previous
entry's hash and the hash of the policy in force. It never records how many contributors a release
drew on: the ledger is public, and an exact count is not differentially private (the deprecated
field `contributors` is left unset; issue 10, finding 2).

The cumulative claim is the Renyi privacy filter's figure (privacy/accounting/filter.py: accountant
"rdp-filter", schedule "adaptive"), the bound the cap is enforced with, sound when the coordinator
chose each release after seeing the earlier ones. A training plan fixed before its first round is
committed in its entries (plan_id, plan_event) with its own tight PLD figure (plan_epsilon, fixed in
advance). The payload is recorded as a hiding commitment SHA-256(salt || payload), the salt derived
from the node's key (`payload_salt`): nobody can test guesses of a small answer against the ledger.

    entry_hash = SHA-256(deterministic serialisation of the body)
    signature  = Ed25519(node key, entry_hash)          (RFC 8032, https://www.rfc-editor.org/rfc/rfc8032)

Storage: tables in the node's own SQLite database (WAL). UPDATE and DELETE are refused by
triggers. An entry and the payload it releases are written in ONE transaction, so an entry is
durably committed (PRAGMA synchronous=FULL: fsync at commit) before any payload can be handed to
the network (invariant 2); the cached payload also answers a repeated identical request (invariant
3). The claimed epsilon and the cap check are computed inside that write transaction, so two
processes cannot both squeeze under the cap.

Incremental accounting (issue 16): the ledger keeps its running accounting state, derived only from
its verified rows and cached by head hash (privacy/ledger_accounting.py), and adds each new entry to it
instead of replaying the history on every append, budget query and plan.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format

from privacy.accounting import ADAPTIVE, EpsilonReport, FilterState, epsilon_of, state_report
from privacy.events import DpEvent, event_from_proto, event_to_proto
from privacy.keys import node_id_of, raw_public_key
from privacy.ledger_accounting import GENESIS_PREV_HASH as GENESIS_PREV_HASH  # public: the chain's first prev_hash
from privacy.ledger_accounting import AccountingState, StateError, remember, running_state
from privacy.ledger_sidecar import SCHEMA as SIDECAR_SCHEMA
from privacy.ledger_sidecar import SIDECAR_EVERY, mac_key_of, save_sidecar, sidecar_seq
from protos import ledger_pb2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS privacy_ledger_meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS privacy_ledger (
    seq          INTEGER PRIMARY KEY,
    body         BLOB NOT NULL,      -- serialised LedgerEntryBody, exactly the bytes hashed
    entry_hash   BLOB NOT NULL UNIQUE,
    signature    BLOB NOT NULL,
    release_kind TEXT NOT NULL,
    round_id     TEXT NOT NULL,
    request_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS privacy_release_cache (
    request_hash TEXT PRIMARY KEY,
    seq          INTEGER NOT NULL REFERENCES privacy_ledger(seq),
    payload      BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS privacy_ledger_no_update BEFORE UPDATE ON privacy_ledger
BEGIN SELECT RAISE(ABORT, 'privacy ledger is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS privacy_ledger_no_delete BEFORE DELETE ON privacy_ledger
BEGIN SELECT RAISE(ABORT, 'privacy ledger is append-only: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS privacy_release_cache_no_update BEFORE UPDATE ON privacy_release_cache
BEGIN SELECT RAISE(ABORT, 'privacy release cache is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS privacy_release_cache_no_delete BEFORE DELETE ON privacy_release_cache
BEGIN SELECT RAISE(ABORT, 'privacy release cache is append-only: DELETE refused'); END;
"""


class LedgerError(RuntimeError):
    """The ledger cannot be opened, read or appended to (the message says why)."""


class CapExceeded(LedgerError):
    """Appending would take cumulative epsilon past the cap; nothing was written."""

    def __init__(self, projected: EpsilonReport, cap: float):
        self.projected, self.cap = projected, cap
        super().__init__(
            f"cumulative epsilon would be {projected.epsilon:.4f} > cap {cap} at delta {projected.delta} "
            f"({projected.method})"
        )


class AlreadyReleased(LedgerError):
    """The request was already answered; `entry` and `payload` are the earlier release."""

    def __init__(self, entry: ledger_pb2.LedgerEntry, payload: bytes):
        self.entry, self.payload = entry, payload
        super().__init__(f"request already answered by ledger entry seq {entry.body.seq}")


def body_bytes(body: ledger_pb2.LedgerEntryBody) -> bytes:
    """The exact bytes hashed and signed: the body's deterministic serialisation."""
    return body.SerializeToString(deterministic=True)


def entry_hash_of(body: ledger_pb2.LedgerEntryBody) -> bytes:
    """SHA-256 of `body_bytes(body)`: the entry hash that is signed and chained."""
    return hashlib.sha256(body_bytes(body)).digest()


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of `data` (payload and request hashes)."""
    return hashlib.sha256(data).hexdigest()


COMMITMENT_PREFIX = "c1:"  # payload_hash of entries since issue 10: a hiding commitment


def payload_salt(key: Ed25519PrivateKey, seq: int) -> bytes:
    """Entry `seq`'s 32-byte commitment salt: HMAC-SHA256 under a secret derived from the node's
    ledger key (RFC 2104), so only the node knows it and revealing one salt reveals no other."""
    secret = hashlib.sha256(b"cairn payload commitment v1\x00" + key.private_bytes_raw()).digest()
    return hmac.new(secret, int(seq).to_bytes(8, "big"), hashlib.sha256).digest()


def payload_commitment(salt: bytes, payload: bytes) -> str:
    """"c1:" + hex SHA-256(salt || payload): binding (SHA-256) and hiding (a 256-bit secret salt), so
    a ledger reader cannot test guesses of a small answer (issue 10, finding 8)."""
    if len(salt) != 32:
        raise LedgerError("a payload commitment salt is 32 bytes")
    return COMMITMENT_PREFIX + hashlib.sha256(bytes(salt) + bytes(payload)).hexdigest()


def open_payload_commitment(payload_hash: str, payload: bytes, salt: bytes | None = None) -> bool:
    """Whether `payload` (with the node's `salt`) opens the entry's `payload_hash`; older entries'
    plain SHA-256 needs no salt."""
    if payload_hash.startswith(COMMITMENT_PREFIX):
        return salt is not None and hmac.compare_digest(payload_commitment(salt, payload), payload_hash)
    return hmac.compare_digest(sha256_hex(payload), payload_hash)


def utc_now() -> str:
    """The current UTC time, ISO 8601 with microseconds and a Z suffix."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Committed:
    """An appended entry and the cumulative epsilon report including it."""

    entry: ledger_pb2.LedgerEntry
    report: EpsilonReport  # cumulative, including this entry


class Ledger:
    """A node's ledger in its SQLite database. `conn` should not be inside a transaction when
    appending: the ledger runs its own BEGIN IMMEDIATE ... COMMIT."""

    def __init__(self, conn: sqlite3.Connection, signing_key: Ed25519PrivateKey, node_name: str):
        self.conn = conn
        self._key = signing_key
        self.node_name = node_name
        self.public_key = raw_public_key(signing_key)
        self.node_id = node_id_of(self.public_key)
        conn.execute("PRAGMA synchronous=FULL")  # a committed entry survives power loss (fsync)
        if conn.in_transaction:
            raise LedgerError("open the ledger on a connection outside a transaction")
        conn.executescript(_SCHEMA + SIDECAR_SCHEMA)
        self._mac_key = mac_key_of(signing_key.private_bytes_raw())  # the accounting sidecar's HMAC secret
        row = conn.execute("SELECT value FROM privacy_ledger_meta WHERE key='public_key'").fetchone()
        if row is None:
            self._write(lambda: conn.execute(
                "INSERT OR IGNORE INTO privacy_ledger_meta(key, value) VALUES ('public_key', ?)", (self.public_key,)))
        elif bytes(row[0]) != self.public_key:
            raise LedgerError(
                f"this ledger was signed by node {node_id_of(bytes(row[0]))[:16]}..., not by the given key "
                f"({self.node_id[:16]}...): refusing to mix keys in one chain"
            )

    # --- transactions ---------------------------------------------------------------------------

    def _write(self, fn):
        if self.conn.in_transaction:
            raise LedgerError("ledger writes need the connection outside a transaction (commit or roll back first)")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            out = fn()
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return out

    # --- reading --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM privacy_ledger").fetchone()[0]

    def entries(self) -> list[ledger_pb2.LedgerEntry]:
        """Every entry, in sequence order."""
        rows = self.conn.execute("SELECT body, entry_hash, signature FROM privacy_ledger ORDER BY seq").fetchall()
        return [self._entry(*r) for r in rows]

    @staticmethod
    def _entry(body, entry_hash, signature) -> ledger_pb2.LedgerEntry:
        e = ledger_pb2.LedgerEntry()
        e.body.ParseFromString(bytes(body))
        e.entry_hash, e.signature = bytes(entry_hash), bytes(signature)
        return e

    def events(self) -> list[DpEvent]:
        """The DP event of every entry, in sequence order."""
        return [event_from_proto(e.body.event) for e in self.entries()]

    def head(self) -> ledger_pb2.LedgerEntry | None:
        """The last entry, or None for an empty ledger."""
        row = self.conn.execute(
            "SELECT body, entry_hash, signature FROM privacy_ledger ORDER BY seq DESC LIMIT 1").fetchone()
        return self._entry(*row) if row else None

    def spent(self, delta: float) -> EpsilonReport:
        """Cumulative epsilon of the whole ledger at `delta`: the privacy filter's figure, what the
        cap is enforced against (privacy/accounting/filter.py; method "rdp-filter", adaptive)."""
        return state_report(self._accounting().filter, delta)

    def filter_state(self) -> FilterState:
        """A copy of the privacy filter's running state of the whole ledger (privacy/accounting/running.py):
        add projected releases to it (`.add(event)`) and read their figure with `state_report`."""
        return self._accounting().filter.copy()

    def plans(self, delta: float) -> dict[str, EpsilonReport]:
        """The tight epsilon of each training plan committed in the ledger before its first round
        (plan id -> report; method "pld", fixed in advance), from the plan's first entry; each plan's
        figure is computed once (privacy/accounting `epsilon_of` caches it)."""
        return {pid: epsilon_of([ev], delta) for pid, (_, ev, _) in self._accounting().plans.items()}

    def _accounting(self) -> AccountingState:
        """The running state of the whole ledger (privacy/ledger_accounting.py); LedgerError on a row that
        does not verify."""
        try:
            return running_state(self.conn, self.public_key, self._mac_key)
        except StateError as e:
            raise LedgerError(str(e)) from None

    def payload_salt(self, seq: int) -> bytes:
        """The 32-byte salt of entry `seq`'s payload commitment: the node reveals it (with the payload)
        to open that one commitment; it reveals nothing about any other entry."""
        return payload_salt(self._key, seq)

    def cached(self, request_hash: str) -> tuple[ledger_pb2.LedgerEntry, bytes] | None:
        """The entry and payload that answered `request_hash` before, or None."""
        row = self.conn.execute(
            "SELECT l.body, l.entry_hash, l.signature, c.payload FROM privacy_release_cache c "
            "JOIN privacy_ledger l ON l.seq = c.seq WHERE c.request_hash = ?", (request_hash,)).fetchone()
        return (self._entry(*row[:3]), bytes(row[3])) if row else None

    # --- appending ------------------------------------------------------------------------------

    def append(
        self,
        release_kind: str,
        event: DpEvent,
        target_delta: float,
        policy_hash: str,
        *,
        round_id: str = "",
        request_hash: str = "",
        payload: bytes | None = None,
        epsilon_cap: float | None = None,
        created_at: str | None = None,
        plan: tuple[str, DpEvent] | None = None,
    ) -> Committed:
        """Append one signed entry (and cache `payload` under `request_hash`) in one durable
        transaction. Raises AlreadyReleased if `request_hash` was answered before, CapExceeded if
        the cumulative epsilon (the privacy filter's figure) would pass `epsilon_cap`; in both cases
        nothing is written. `plan` = (plan id, the whole plan's event): this release is part of a
        training plan fixed in advance; its first entry commits the plan, later ones must repeat it."""
        event_msg = event_to_proto(event)  # validates the event

        def txn() -> tuple[Committed, AccountingState]:
            if request_hash:
                hit = self.cached(request_hash)
                if hit is not None:
                    raise AlreadyReleased(*hit)
            st = self._accounting()  # the running state up to the head, read inside the write lock
            projected = st.filter.copy().add(event)
            # the cap is a privacy filter: sound under adaptively chosen releases (issue 10, finding 4)
            report = state_report(projected, target_delta)
            if epsilon_cap is not None and report.epsilon > epsilon_cap:
                raise CapExceeded(report, epsilon_cap)
            seq = st.seq + 1
            plan_report = self._check_plan(plan, target_delta, st) if plan is not None else None
            body = ledger_pb2.LedgerEntryBody(
                seq=seq,
                prev_hash=st.head_hash,
                node_id=self.node_id,
                created_at=created_at or utc_now(),
                release_kind=release_kind,
                round_id=round_id,
                request_hash=request_hash,
                payload_hash=payload_commitment(payload_salt(self._key, seq), payload) if payload is not None else "",
                claimed_epsilon=report.epsilon,
                target_delta=target_delta,
                accountant=report.method,
                policy_hash=policy_hash,
                schedule=ADAPTIVE,
            )
            body.event.CopyFrom(event_msg)
            if plan is not None and plan_report is not None:
                body.plan_id = plan[0]
                body.plan_event.CopyFrom(event_to_proto(plan[1]))
                body.plan_epsilon, body.plan_accountant = plan_report.epsilon, plan_report.method
            raw = body_bytes(body)
            h = hashlib.sha256(raw).digest()
            sig = self._key.sign(h)
            self.conn.execute(
                "INSERT INTO privacy_ledger(seq, body, entry_hash, signature, release_kind, round_id, request_hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (body.seq, raw, h, sig, release_kind, round_id, request_hash))
            if payload is not None and request_hash:
                self.conn.execute("INSERT INTO privacy_release_cache(request_hash, seq, payload) VALUES (?, ?, ?)",
                                  (request_hash, body.seq, payload))
            after = AccountingState(seq, h, projected, st.plans)
            if plan is not None and plan_report is not None and plan[0] not in st.plans:
                after.plans = {**st.plans, plan[0]: (body.plan_event.SerializeToString(deterministic=True), plan[1],
                                                     (target_delta, plan_report.epsilon, plan_report.method))}
            if seq - sidecar_seq(self.conn) >= SIDECAR_EVERY:  # a new process starts from here
                save_sidecar(self.conn, self._mac_key, self.public_key, after)
            return Committed(self._entry(raw, h, sig), report), after

        committed, after = self._write(txn)
        remember(self.public_key, after)  # only once the entry is durably committed
        return committed

    def _check_plan(self, plan: tuple[str, DpEvent], delta: float, st: AccountingState) -> EpsilonReport:
        """The plan's own tight epsilon, computed once per plan: a later round repeats the figure the plan's
        first (verified, signed) entry committed at the same delta. Refuses a plan id whose committed plan was
        different."""
        plan_id, plan_event = plan
        if not plan_id:
            raise LedgerError("a training plan needs a non-empty plan id")
        committed = st.plans.get(plan_id)
        if committed is not None:
            if committed[0] != event_to_proto(plan_event).SerializeToString(deterministic=True):
                raise LedgerError(f"plan {plan_id!r} was committed with other parameters: a plan fixed in advance "
                                  "cannot change")
            c_delta, c_eps, c_method = committed[2]
            if c_delta == delta and c_method:
                return EpsilonReport(epsilon=c_eps, delta=delta, method=c_method)
        return epsilon_of([plan_event], delta)

    # --- export ---------------------------------------------------------------------------------

    def export(self) -> ledger_pb2.LedgerExport:
        """The public export: node id, name, public key and every signed entry."""
        out = ledger_pb2.LedgerExport(node_id=self.node_id, node_name=self.node_name, public_key=self.public_key)
        out.entries.extend(self.entries())
        return out

    def export_to(self, path: Path, fmt: str = "pb") -> Path:
        """Write the export atomically to `path` as protobuf ("pb") or JSON ("json")."""
        path = Path(path)
        export = self.export()
        if fmt == "pb":
            data = export.SerializeToString(deterministic=True)
        elif fmt == "json":
            data = export_to_json(export).encode()
        else:
            raise LedgerError(f"unknown export format {fmt!r} (pb or json)")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return path


def export_to_json(export: ledger_pb2.LedgerExport) -> str:
    """The export as sorted, indented JSON (protobuf field names)."""
    d = json_format.MessageToDict(export, preserving_proto_field_name=True)
    return json.dumps(d, indent=2, sort_keys=True) + "\n"


def load_export(path_or_bytes) -> ledger_pb2.LedgerExport:
    """Read a LedgerExport from a .pb or .json file (or bytes); raises LedgerError naming the problem."""
    data = Path(path_or_bytes).read_bytes() if isinstance(path_or_bytes, (str, Path)) else bytes(path_or_bytes)
    export = ledger_pb2.LedgerExport()
    stripped = data.lstrip()
    try:
        if stripped.startswith(b"{"):
            json_format.Parse(data.decode("utf-8"), export)
        else:
            export.ParseFromString(data)
    except Exception as e:  # protobuf raises DecodeError / ParseError / UnicodeDecodeError
        raise LedgerError(f"not a readable ledger export: {type(e).__name__}: {e}") from None
    return export
