"""Verify a ledger export without trusting the node: signatures, hash chain, epsilon claims.

`verify_ledger(export)` returns a list of Problems (empty = verified). Each names the entry (seq
and position) and what is wrong, in words an auditor can act on:

  foreign_key     the export's key is not the expected one, or node_id is not SHA-256(public key)
  hash            an entry's body does not hash to its entry_hash (a byte was changed)
  signature       the Ed25519 signature over entry_hash does not verify with the node's key
  seq             seq numbers skip (entry dropped) or repeat/go back (inserted or reordered)
  chain           prev_hash is not the previous entry's entry_hash (dropped, inserted, reordered)
  node_id         an entry names a different node
  event           an entry's DP event is missing or invalid
  epsilon         claimed cumulative epsilon is not what the accountant recomputes from the events
  time            created_at goes backwards
  head            the chain does not end at the expected head (truncated at the end)

A dropped LAST entry leaves a valid shorter chain; only an external anchor (the head hash or
length the node published, e.g. in a release bundle's manifest) can catch it: pass expected_head.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from privacy.accountant import epsilon_of
from privacy.events import EventError, event_from_proto
from privacy.ledger import GENESIS_PREV_HASH, entry_hash_of, node_id_of
from protos import ledger_pb2

# The node and the verifier run the same deterministic computation; allow only float noise.
EPSILON_REL_TOL = 1e-9


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    seq: int | None = None  # position in the export (None: the export as a whole)

    def __str__(self) -> str:
        where = "ledger" if self.seq is None else f"entry #{self.seq}"
        return f"{where}: [{self.code}] {self.message}"


def verify_ledger(
    export: ledger_pb2.LedgerExport,
    public_key: bytes | None = None,
    *,
    recompute_epsilon: bool = True,
    expected_head: bytes | None = None,
) -> list[Problem]:
    problems: list[Problem] = []
    pk_raw = bytes(export.public_key)
    if public_key is not None and bytes(public_key) != pk_raw:
        problems.append(Problem("foreign_key", (
            f"ledger is signed by key {pk_raw.hex()[:16]}..., expected {bytes(public_key).hex()[:16]}... "
            "(a foreign key: not this node's ledger)")))
    if export.node_id != node_id_of(pk_raw):
        problems.append(Problem("foreign_key", (
            f"node_id {export.node_id[:16]}... is not SHA-256 of the export's public key "
            f"({node_id_of(pk_raw)[:16]}...)")))
    try:
        verifier = Ed25519PublicKey.from_public_bytes(bytes(public_key) if public_key is not None else pk_raw)
    except ValueError as e:
        return problems + [Problem("foreign_key", f"public key is not a raw 32-byte Ed25519 key: {e}")]

    history = []
    events_ok = True
    prev_hash = GENESIS_PREV_HASH
    prev_time = ""
    for i, entry in enumerate(export.entries):
        b = entry.body
        stored = bytes(entry.entry_hash)
        actual = entry_hash_of(b)
        if actual != stored:
            problems.append(Problem("hash", (
                f"seq {b.seq}: body hashes to {actual.hex()[:16]}... but entry_hash is {stored.hex()[:16]}... "
                "(the entry was altered after signing)"), i))
        try:
            verifier.verify(bytes(entry.signature), stored)
        except InvalidSignature:
            problems.append(Problem("signature", (
                f"seq {b.seq}: Ed25519 signature over entry_hash does not verify with the node's key "
                "(forged, altered, or signed by another key)"), i))
        if b.seq != i:
            if b.seq > i:
                msg = f"seq {b.seq} at position {i}: {b.seq - i} entr{'y' if b.seq - i == 1 else 'ies'} missing before it (dropped)"
            else:
                msg = f"seq {b.seq} at position {i}: seq repeats or goes back (entry inserted or reordered)"
            problems.append(Problem("seq", msg, i))
        if bytes(b.prev_hash) != prev_hash:
            problems.append(Problem("chain", (
                f"seq {b.seq}: prev_hash {bytes(b.prev_hash).hex()[:16]}... is not the entry_hash of the entry "
                f"before it ({prev_hash.hex()[:16]}...): entries dropped, inserted or reordered"), i))
        prev_hash = stored
        if b.node_id != export.node_id:
            problems.append(Problem("node_id", f"seq {b.seq}: names node {b.node_id[:16]}..., the export is {export.node_id[:16]}...", i))
        if prev_time and b.created_at < prev_time:
            problems.append(Problem("time", f"seq {b.seq}: created_at {b.created_at} is before the previous entry's {prev_time}", i))
        prev_time = b.created_at
        try:
            history.append(event_from_proto(b.event))
        except (EventError, ValueError) as e:
            problems.append(Problem("event", f"seq {b.seq}: DP event is invalid: {e}", i))
            events_ok = False
            continue
        if recompute_epsilon and events_ok:
            problems.extend(_check_epsilon(b, history, i))
    if expected_head is not None:
        last = bytes(export.entries[-1].entry_hash) if export.entries else GENESIS_PREV_HASH
        if last != bytes(expected_head):
            problems.append(Problem("head", (
                f"chain ends at {last.hex()[:16]}... but the published head is {bytes(expected_head).hex()[:16]}... "
                "(entries dropped at the end, or a different chain)")))
    return problems


def _check_epsilon(b, history, i) -> list[Problem]:
    if not (0 < b.target_delta < 1):
        return [Problem("epsilon", f"seq {b.seq}: target_delta {b.target_delta} is not in (0, 1)", i)]
    rep = epsilon_of(history, b.target_delta)
    claimed = b.claimed_epsilon
    tol = EPSILON_REL_TOL * max(1.0, abs(rep.epsilon))
    if math.isnan(claimed) or claimed < rep.epsilon - tol:
        return [Problem("epsilon", (
            f"seq {b.seq}: claimed cumulative epsilon {claimed:.6g} is BELOW the recomputed {rep.epsilon:.6g} "
            f"({rep.method}, delta {b.target_delta}): under-reported, not reproducible"), i)]
    if claimed > rep.epsilon + tol:
        return [Problem("epsilon", (
            f"seq {b.seq}: claimed cumulative epsilon {claimed:.6g} is not reproducible: the events give "
            f"{rep.epsilon:.6g} ({rep.method}, delta {b.target_delta})"), i)]
    if b.accountant != rep.method:
        return [Problem("epsilon", f"seq {b.seq}: accountant {b.accountant!r} recorded, recomputation used {rep.method!r}", i)]
    return []


def export_digest(export: ledger_pb2.LedgerExport) -> str:
    """hex SHA-256 of the deterministic serialisation (for manifests)."""
    return hashlib.sha256(export.SerializeToString(deterministic=True)).hexdigest()
