"""Check family `ledgers`: each node's key, and its signed hash-chained ledger, verified without trusting it.

  key:<node>     the node's key in the manifest, in keys/<node_id>.ed25519 and in its ledger export
                 are the same key, and node_id = SHA-256(key) (a swapped node key)
  ledger:<node>  the export parses, .json and .pb hold the same ledger, every entry's hash, Ed25519
                 signature, seq and prev_hash chain verify, and the chain ends at the head (hash and
                 length) the manifest pins (dropped, reordered, inserted, altered entries; a dropped
                 tail entry)

`verify_ledger(export)` is the chain verification on its own (also used by `bench/ledger.py` and the
ledger tests). It returns a list of Problems (empty = verified), each naming the entry (seq and
position) and what is wrong:

  foreign_key     the export's key is not the expected one, or node_id is not SHA-256(public key)
  hash            an entry's body does not hash to its entry_hash (a byte was changed)
  signature       the Ed25519 signature over entry_hash does not verify with the node's key
  seq             seq numbers skip (entry dropped) or repeat/go back (inserted or reordered)
  chain           prev_hash is not the previous entry's entry_hash (dropped, inserted, reordered)
  node_id         an entry names a different node
  event           an entry's DP event is missing or invalid
  epsilon         claimed cumulative epsilon is not what the node's accountant recomputes from the
                  events (only with recompute_epsilon=True: a reproduction with the node's own code;
                  the auditor's independent recomputation is privacy/audit/recompute.py)
  time            created_at goes backwards
  head            the chain does not end at the expected head (truncated at the end)

Protects ARCHITECTURE.md invariant 7 (the ledger is append-only and tamper-evident). A dropped LAST
entry leaves a valid shorter chain; only an external anchor (the head hash or length
the node published, e.g. in a release bundle's manifest) can catch it: pass expected_head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from privacy.audit.context import AuditContext, first_and_more, short
from privacy.audit.result import FAIL, PASS
from privacy.events import EventError, event_from_proto
from privacy.keys import node_id_of
from privacy.ledger import GENESIS_PREV_HASH, LedgerError, entry_hash_of, load_export
from protos import bundle, ledger_pb2

# The node and the verifier run the same deterministic computation; allow only float noise.
EPSILON_REL_TOL = 1e-9


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a ledger export; `seq` is the position in the export (None: the whole)."""

    code: str
    message: str
    seq: int | None = None

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
    """Every Problem of `export`: key, hashes, signatures, seq, chain, events, times, head, and (with
    `recompute_epsilon`) the claims reproduced by the node's accountant. Empty: verified."""
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

    history: list = []
    if recompute_epsilon:  # the node's accountant in one pass: the filter's running state (issue 16)
        from privacy.accounting.filter import RunningHistory

        history = RunningHistory()
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
                gap = b.seq - i
                msg = f"seq {b.seq} at position {i}: {gap} entr{'y' if gap == 1 else 'ies'} missing before it (dropped)"
            else:
                msg = f"seq {b.seq} at position {i}: seq repeats or goes back (entry inserted or reordered)"
            problems.append(Problem("seq", msg, i))
        if bytes(b.prev_hash) != prev_hash:
            problems.append(Problem("chain", (
                f"seq {b.seq}: prev_hash {bytes(b.prev_hash).hex()[:16]}... is not the entry_hash of the entry "
                f"before it ({prev_hash.hex()[:16]}...): entries dropped, inserted or reordered"), i))
        prev_hash = stored
        if b.node_id != export.node_id:
            problems.append(Problem(
                "node_id", f"seq {b.seq}: names node {b.node_id[:16]}..., the export is {export.node_id[:16]}...", i))
        if prev_time and b.created_at < prev_time:
            problems.append(Problem(
                "time", f"seq {b.seq}: created_at {b.created_at} is before the previous entry's {prev_time}", i))
        prev_time = b.created_at
        try:
            history.append(event_from_proto(b.event))
        except (EventError, ValueError) as e:
            problems.append(Problem("event", f"seq {b.seq}: DP event is invalid: {e}", i))
            events_ok = False
            continue
        if recompute_epsilon and events_ok:
            problems.extend(_reproduce_epsilon(b, history, i))
    if expected_head is not None:
        last = bytes(export.entries[-1].entry_hash) if export.entries else GENESIS_PREV_HASH
        if last != bytes(expected_head):
            problems.append(Problem("head", (
                f"chain ends at {last.hex()[:16]}... but the published head is {bytes(expected_head).hex()[:16]}... "
                "(entries dropped at the end, or a different chain)")))
    return problems


def _reproduce_epsilon(b: ledger_pb2.LedgerEntryBody, history: list, i: int) -> list[Problem]:
    """The node's own accountant, rerun: the claim must be reproduced to float noise. Imported here, not at
    the top: the bundle auditor never calls it (it recomputes independently, privacy/audit/recompute.py)."""
    from privacy.accounting import epsilon_of, state_report

    if not (0 < b.target_delta < 1):
        return [Problem("epsilon", f"seq {b.seq}: target_delta {b.target_delta} is not in (0, 1)", i)]
    # since issue 10 claims are the privacy filter's figure; older entries (no schedule) a PLD/RDP one
    rep = state_report(history.state, b.target_delta) if b.schedule else epsilon_of(history, b.target_delta)  # type: ignore[attr-defined]
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


# --- the bundle check -------------------------------------------------------------------------------


def check(ctx: AuditContext) -> None:
    """`key:<node>` and `ledger:<node>` for `ctx.node`; sets its export when it reads."""
    assert ctx.node is not None
    node, root = ctx.node.manifest_node, ctx.root
    pk = bytes(node.ledger_public_key)
    kp = _key_problems(ctx, node, pk)
    export = None
    lp: list[str] = []
    ledger_path = root / node.ledger_file if node.ledger_file else root / bundle.ledger_pb(node.node_id)
    try:
        export = load_export(ledger_path)
    except (LedgerError, OSError) as e:
        lp.append(f"{ledger_path.relative_to(root) if ledger_path.is_relative_to(root) else ledger_path}: {e}")
    if export is not None:
        if bytes(export.public_key) != pk:
            kp.append(f"the ledger export carries key {short(bytes(export.public_key))}, the manifest lists {short(pk)}")
        lp += _export_problems(node, export, ledger_path, pk)
    label = ctx.node.label
    ctx.add(f"key:{label}", FAIL if kp else PASS,
            first_and_more(kp) if kp else f"Ed25519 key {short(pk)} in manifest, keys/ and ledger; node_id = SHA-256(key)",
            node.node_id, kp)
    ctx.node.export = export
    ctx.exports[node.node_id] = export
    if export is None:
        ctx.add(f"ledger:{label}", FAIL, lp[0], node.node_id, lp)
        return
    ctx.add(f"ledger:{label}", FAIL if lp else PASS,
            (f"{len(lp)} problem(s): {lp[0]}" if lp else
             f"{len(export.entries)} entries: hashes, Ed25519 signatures, seq and chain verify; head "
             f"{short(bytes(node.ledger_head_hash))} as pinned"), node.node_id, lp)


def _key_problems(ctx: AuditContext, node, pk: bytes) -> list[str]:
    kp = []
    key_path = ctx.root / bundle.key_file(node.node_id)
    if len(pk) != 32:
        kp.append(f"manifest key is {len(pk)} bytes, not a raw Ed25519 key")
    if node_id_of(pk) != node.node_id:
        kp.append(f"node_id {short(node.node_id)} is not SHA-256 of the manifest's key ({short(node_id_of(pk))}): "
                  "the key was swapped")
    if not key_path.exists():
        kp.append(f"keys/{node.node_id}.ed25519 is missing")
    else:
        try:
            fk = bytes.fromhex(key_path.read_text().strip())
        except ValueError:
            fk = b""
            kp.append(f"keys/{node.node_id}.ed25519 is not a hex key")
        if fk and fk != pk:
            kp.append(f"keys/{node.node_id}.ed25519 holds key {short(fk)}, the manifest lists {short(pk)}: the key was swapped")
    return kp


def _export_problems(node, export: ledger_pb2.LedgerExport, ledger_path, pk: bytes) -> list[str]:
    lp = []
    if export.node_id != node.node_id:
        lp.append(f"the ledger export is node {short(export.node_id)}, the manifest says {short(node.node_id)}")
    if node.name and export.node_name != node.name:
        lp.append(f"the ledger export names the node {export.node_name!r}, the manifest {node.name!r}")
    json_path = ledger_path.with_suffix(".json")
    if json_path.exists():
        try:
            other = load_export(json_path)
            if other.SerializeToString(deterministic=True) != export.SerializeToString(deterministic=True):
                lp.append(f"{json_path.name} and {ledger_path.name} hold different ledgers (one was changed)")
        except LedgerError as e:
            lp.append(f"{json_path.name}: {e}")
    # an empty ledger pins no head; the entry count below still catches entries added to it
    head = bytes(node.ledger_head_hash) if node.ledger_entries else None
    lp += [str(p) for p in verify_ledger(export, pk, recompute_epsilon=False, expected_head=head)]
    if len(export.entries) != node.ledger_entries:
        lp.append(f"the ledger has {len(export.entries)} entries, the manifest pins {node.ledger_entries} "
                  f"({'entries dropped' if len(export.entries) < node.ledger_entries else 'entries added'})")
    return lp
