"""privacy/ledger_head.py: the node-signed ledger head, its canonical encoding, its verification, and
whether a ledger reaches it (issue 15). The attacks: a forged or altered head, another key, a ledger
whose tail was cut, a different chain."""

import hashlib
import json
import sqlite3
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy.events import GaussianEvent
from privacy.ledger import Ledger
from privacy.ledger_head import (
    EMPTY_HASH,
    HeadError,
    canonical_bytes,
    from_dict,
    head_of_entry,
    later,
    parse_json,
    reach_problem,
    sign_head,
    verify_head,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def _ledger(n: int) -> Ledger:
    led = Ledger(sqlite3.connect(":memory:", isolation_level=None), KEY, "c")
    for i in range(n):
        led.append("train", GaussianEvent(4.0), 1e-6, "p" * 64, round_id=f"fed/{i}", request_hash=f"{i}", payload=b"x")
    return led


def test_canonical_bytes_are_the_documented_layout():
    h = sign_head(KEY, 3, b"\x01" * 32, 1.5, "fed-x", "2026-11-30T00:00:00+00:00")
    pk = h.public_key.hex()
    assert canonical_bytes(h) == (
        f"cairn-ledger-head/1\nnode_id={hashlib.sha256(h.public_key).hexdigest()}\npublic_key={pk}\nseq=3\n"
        f"entry_hash={'01' * 32}\nepsilon={struct.pack('>d', 1.5).hex()}\nrun_id=fed-x\n"
        "created_at=2026-11-30T00:00:00+00:00\n").encode()
    assert verify_head(h) == [] and verify_head(h, h.public_key) == []
    assert parse_json(h.to_json()) == h  # JSON round trip, signature included


@pytest.mark.parametrize("field,value", [("seq", 2), ("epsilon", 1.25), ("run_id", "fed-y"), ("entry_hash", "02" * 32),
                                         ("created_at", "2026-12-01T00:00:00+00:00")])
def test_altered_head_is_refused(field, value):
    d = sign_head(KEY, 3, b"\x01" * 32, 1.5, "fed-x").to_dict()
    d[field] = value
    assert any("signature" in p for p in verify_head(from_dict(d)))


def test_forged_and_foreign_heads_are_refused():
    good = sign_head(KEY, 3, b"\x01" * 32, 1.5, "fed-x")
    forged = from_dict({**good.to_dict(), "signature": OTHER.sign(canonical_bytes(good)).hex()})
    assert any("signature" in p for p in verify_head(forged))
    other = sign_head(OTHER, 3, b"\x01" * 32, 1.5, "fed-x")  # genuine, but another node's key
    assert any("not the node's key" in p for p in verify_head(other, good.public_key))
    swapped = from_dict({**other.to_dict(), "node_id": good.node_id})  # another key under this node's id
    assert any("node_id" in p for p in verify_head(swapped))


@pytest.mark.parametrize("bad", [{"format": "x"}, {"seq": "3"}, {"seq": True}, {"epsilon": "1"}, {"run_id": "a\nseq=9"},
                                 {"public_key": "zz"}, {"node_id": "ABC"}, {"epsilon": float("nan")}, {"seq": -2}])
def test_malformed_head_fields_are_named(bad):
    d = {**sign_head(KEY, 0, b"\x01" * 32, 0.5, "r").to_dict(), **bad}
    with pytest.raises(HeadError, match="head"):
        from_dict(d)
    with pytest.raises(HeadError):
        parse_json(b"not json")
    d = sign_head(KEY, 0, b"\x01" * 32, 0.5, "r").to_dict()
    del d["signature"]
    with pytest.raises(HeadError, match="signature is missing"):
        from_dict(d)


def test_a_ledger_reaches_its_heads_and_a_cut_tail_does_not():
    led = _ledger(3)
    entries = led.entries()
    head = head_of_entry(KEY, led.head(), "fed")
    assert head.seq == 2 and head.epsilon == entries[-1].body.claimed_epsilon and verify_head(head) == []
    assert reach_problem(head, entries) is None
    assert reach_problem(head_of_entry(KEY, entries[0]), entries) is None  # an earlier head is reached too
    assert "tail was cut" in reach_problem(head, entries[:2]) and "1 entry missing" in reach_problem(head, entries[:2])
    fork = sign_head(KEY, 2, b"\x09" * 32, head.epsilon, "fed")  # the node signed another entry at seq 2
    assert "different chain" in reach_problem(fork, entries)
    low = sign_head(KEY, 2, head.entry_hash, head.epsilon / 2, "fed")
    assert "claims epsilon" in reach_problem(low, entries)
    empty = head_of_entry(KEY, None, "fed")
    assert empty.seq == -1 and empty.entry_hash == EMPTY_HASH and reach_problem(empty, []) is None
    assert later(later(None, empty), head) is head and later(head, empty) is head


def test_head_json_is_stable_and_public():
    d = sign_head(KEY, 1, b"\x01" * 32, 0.25, "").to_dict()
    assert set(d) == {"format", "node_id", "public_key", "seq", "entry_hash", "epsilon", "run_id", "created_at",
                      "signature"}
    assert json.loads(json.dumps(d)) == d
