"""A node-signed ledger head: what a node says its ledger reached, defined and verified once (issue 15).

A bundle's manifest pins each node's ledger head, but the coordinator writes and signs the manifest,
so a coordinator could drop a node's last entries (and their lineage) and re-sign. Against that the
node signs its own head, with its ledger key, in every reply it sends (node/client_app.py `reply`)
and on request (`cairn node head DIR`, the node service's public endpoint). The coordinator
publishes the latest head each node signed during the run (bundle heads/<node_id>.json), and the
auditor (privacy/audit/heads.py) checks that the published ledger REACHES it: an entry with the
head's seq and entry hash exists in the verified chain. A published ledger shorter than a head its
node signed has had its tail cut. Protects ARCHITECTURE.md invariant 7 (the ledger is append-only
and tamper-evident) across the coordinator, and invariant 2 as seen from a bundle.

The head (JSON, `to_dict`):

    format       "cairn-ledger-head/1"
    node_id      hex SHA-256 of public_key (privacy/keys.py)
    public_key   the node's raw 32-byte Ed25519 ledger key, hex
    seq          seq of the last ledger entry; -1 for an empty ledger (or a run with no entries)
    entry_hash   that entry's entry_hash, hex; 32 zero bytes for seq -1
    epsilon      the node's cumulative epsilon after that entry: the entry's own claimed_epsilon
                 (the node's accountant, privacy/ledger.py); 0 for seq -1
    run_id       the federation (run) the head was signed for: the coordinator's federation id, or
                 "" when signed outside any run
    created_at   when it was signed, RFC 3339 UTC
    signature    Ed25519 (RFC 8032, https://www.rfc-editor.org/rfc/rfc8032) by the ledger key over
                 the canonical encoding below, hex

The canonical encoding (`canonical_bytes`) is UTF-8 text, one field per line, in this fixed order,
each line `name=value` ending in a single LF, after the domain line:

    cairn-ledger-head/1\\n node_id=<64 hex>\\n public_key=<64 hex>\\n seq=<decimal>\\n
    entry_hash=<64 hex>\\n epsilon=<16 hex digits: the IEEE 754 binary64, big-endian>\\n
    run_id=<text>\\n created_at=<text>\\n

Hex is lower case; run_id and created_at may not contain LF or CR (so the encoding is injective),
and are at most 256 characters. Epsilon is signed as its exact bits, so that any language can
rebuild the bytes without agreeing on a decimal rendering. Pure: no I/O beyond bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from privacy.keys import node_id_of, raw_public_key

HEAD_FORMAT = "cairn-ledger-head/1"
EMPTY_HASH = bytes(32)  # the entry hash of seq -1 (as privacy/ledger.py GENESIS_PREV_HASH)
MAX_TEXT = 256


class HeadError(ValueError):
    """A head that does not parse (the message names the field)."""


@dataclass(frozen=True)
class LedgerHead:
    """One node-signed ledger head (fields as in the module docstring; bytes fields raw)."""

    node_id: str
    public_key: bytes
    seq: int
    entry_hash: bytes
    epsilon: float
    run_id: str
    created_at: str
    signature: bytes = b""

    def canonical_bytes(self) -> bytes:
        """The exact bytes the node signs."""
        return canonical_bytes(self)

    def to_dict(self) -> dict:
        """The JSON form (what replies, bundles, `cairn node head` and the node service carry)."""
        return {"format": HEAD_FORMAT, "node_id": self.node_id, "public_key": self.public_key.hex(), "seq": self.seq,
                "entry_hash": self.entry_hash.hex(), "epsilon": self.epsilon, "run_id": self.run_id,
                "created_at": self.created_at, "signature": self.signature.hex()}

    def to_json(self) -> str:
        """Sorted, indented JSON of `to_dict`."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def _check_text(name: str, value: str) -> None:
    if not isinstance(value, str) or "\n" in value or "\r" in value or len(value) > MAX_TEXT:
        raise HeadError(f"head field {name}: must be text of at most {MAX_TEXT} characters without line breaks")


def canonical_bytes(head: LedgerHead) -> bytes:
    """The canonical encoding (module docstring); raises HeadError when a field cannot be encoded."""
    if len(head.public_key) != 32 or len(head.entry_hash) != 32:
        raise HeadError("head fields public_key and entry_hash must be 32 bytes")
    if not isinstance(head.seq, int) or isinstance(head.seq, bool) or head.seq < -1:
        raise HeadError(f"head field seq: {head.seq!r} is not an integer >= -1")
    if not isinstance(head.epsilon, float) or not math.isfinite(head.epsilon) or head.epsilon < 0:
        raise HeadError(f"head field epsilon: {head.epsilon!r} is not a finite float >= 0")
    _check_text("run_id", head.run_id)
    _check_text("created_at", head.created_at)
    if len(head.node_id) != 64 or any(c not in "0123456789abcdef" for c in head.node_id):
        raise HeadError("head field node_id: not 64 lower-case hex digits")
    lines = [HEAD_FORMAT, f"node_id={head.node_id}", f"public_key={head.public_key.hex()}", f"seq={head.seq}",
             f"entry_hash={head.entry_hash.hex()}", f"epsilon={struct.pack('>d', head.epsilon).hex()}",
             f"run_id={head.run_id}", f"created_at={head.created_at}"]
    return ("\n".join(lines) + "\n").encode("utf-8")


def sign_head(key: Ed25519PrivateKey, seq: int, entry_hash: bytes, epsilon: float, run_id: str = "",
              created_at: str | None = None) -> LedgerHead:
    """The head (seq, entry_hash, epsilon) signed by the node's ledger `key` for `run_id`, now."""
    pk = raw_public_key(key)
    head = LedgerHead(node_id=node_id_of(pk), public_key=pk, seq=int(seq), entry_hash=bytes(entry_hash),
                      epsilon=float(epsilon), run_id=str(run_id),
                      created_at=created_at or datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return LedgerHead(**{**head.__dict__, "signature": key.sign(canonical_bytes(head))})


def head_of_entry(key: Ed25519PrivateKey, entry, run_id: str = "", created_at: str | None = None) -> LedgerHead:
    """The signed head at ledger entry `entry` (a protos LedgerEntry), or at seq -1 when `entry` is None."""
    if entry is None:
        return sign_head(key, -1, EMPTY_HASH, 0.0, run_id, created_at)
    return sign_head(key, int(entry.body.seq), bytes(entry.entry_hash), float(entry.body.claimed_epsilon), run_id,
                     created_at)


def from_dict(d) -> LedgerHead:
    """Parse the JSON form; raises HeadError naming the field (nothing is verified: see `verify_head`)."""
    if not isinstance(d, dict):
        raise HeadError("a ledger head is a JSON object")
    if d.get("format") != HEAD_FORMAT:
        raise HeadError(f"head format is {d.get('format')!r}, expected {HEAD_FORMAT!r}")
    try:
        seq, eps = d["seq"], d["epsilon"]
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise HeadError(f"head field seq: {seq!r} is not an integer")
        if not isinstance(eps, (int, float)) or isinstance(eps, bool):
            raise HeadError(f"head field epsilon: {eps!r} is not a number")
        head = LedgerHead(node_id=str(d["node_id"]), public_key=bytes.fromhex(d["public_key"]), seq=seq,
                          entry_hash=bytes.fromhex(d["entry_hash"]), epsilon=float(eps), run_id=d["run_id"],
                          created_at=d["created_at"], signature=bytes.fromhex(d["signature"]))
    except KeyError as e:
        raise HeadError(f"head field {e.args[0]} is missing") from None
    except (TypeError, ValueError) as e:
        if isinstance(e, HeadError):
            raise
        raise HeadError(f"head field is malformed: {e}") from None
    canonical_bytes(head)  # every field encodable
    return head


def parse_json(data: bytes | str) -> LedgerHead:
    """A head from its JSON text; raises HeadError."""
    try:
        d = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise HeadError(f"a ledger head is JSON: {e}") from None
    return from_dict(d)


def verify_head(head: LedgerHead, public_key: bytes | None = None) -> list[str]:
    """What is wrong with `head` (empty: the node holding its key signed it): node_id = SHA-256(public
    key), the key is `public_key` when one is pinned, and the Ed25519 signature over the canonical bytes."""
    problems = []
    if public_key is not None and bytes(public_key) != head.public_key:
        problems.append(f"signed by key {head.public_key.hex()[:16]}..., not the node's key {bytes(public_key).hex()[:16]}...")
    if node_id_of(head.public_key) != head.node_id:
        problems.append(f"node_id {head.node_id[:16]}... is not SHA-256 of the head's public key")
    try:
        Ed25519PublicKey.from_public_bytes(head.public_key).verify(head.signature, canonical_bytes(head))
    except (InvalidSignature, ValueError, HeadError):
        problems.append("the Ed25519 signature does not verify over the head's canonical bytes (forged or altered)")
    return problems


def reach_problem(head: LedgerHead, entries) -> str | None:
    """Why a ledger (its entries, a verified chain in seq order) does not reach `head`, or None when it
    does: the entry at head.seq exists with head.entry_hash and head.epsilon as its claimed epsilon."""
    if head.seq < 0:
        return None
    if len(entries) <= head.seq:
        return (f"the published ledger has {len(entries)} entries, but the node signed a head at seq {head.seq} "
                f"(epsilon {head.epsilon:.6g}, {head.created_at}): its tail was cut "
                f"({head.seq + 1 - len(entries)} entr{'y' if head.seq + 1 - len(entries) == 1 else 'ies'} missing)")
    e = entries[head.seq]
    if bytes(e.entry_hash) != head.entry_hash:
        return (f"entry seq {head.seq} hashes to {bytes(e.entry_hash).hex()[:16]}..., the node's signed head names "
                f"{head.entry_hash.hex()[:16]}...: a different chain")
    if not math.isclose(float(e.body.claimed_epsilon), head.epsilon, rel_tol=1e-12, abs_tol=0.0):
        return f"entry seq {head.seq} claims epsilon {e.body.claimed_epsilon:.9g}, the signed head {head.epsilon:.9g}"
    return None


def later(a: LedgerHead | None, b: LedgerHead) -> LedgerHead:
    """The later of two heads of one node: the higher seq (the first kept when equal)."""
    return b if a is None or b.seq > a.seq else a


def digest(head: LedgerHead) -> str:
    """Hex SHA-256 of the canonical bytes (to name a head in messages)."""
    return hashlib.sha256(canonical_bytes(head)).hexdigest()
