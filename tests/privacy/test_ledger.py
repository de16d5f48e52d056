import sqlite3

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy.audit.ledgers import verify_ledger
from privacy.events import (
    DiscreteGaussianEvent,
    GaussianEvent,
    LaplaceEvent,
    dpsgd_event,
    event_from_proto,
)
from privacy.keys import raw_public_key
from privacy.ledger import (
    AlreadyReleased,
    CapExceeded,
    Ledger,
    LedgerError,
    body_bytes,
    entry_hash_of,
    load_export,
)
from protos import ledger_pb2

DELTA = 1e-6
EVENTS = [
    dpsgd_event(0.02, 1.1, 50),
    DiscreteGaussianEvent(6.0, 1),
    LaplaceEvent(10.0),
    DiscreteGaussianEvent(9.0, 2),
]


def connect(path=":memory:"):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


@pytest.fixture(scope="module")
def built():
    key = Ed25519PrivateKey.generate()
    ledger = Ledger(connect(), key, "test-node")
    kinds = ["train", "battle_counts", "thumbs_rates", "coverage"]
    for i, (kind, ev) in enumerate(zip(kinds, EVENTS)):
        ledger.append(kind, ev, DELTA, "policyhash", round_id=f"r{i}", request_hash=f"req{i}",
                      payload=f"payload{i}".encode())
    return key, ledger


def fresh(built) -> ledger_pb2.LedgerExport:
    return ledger_pb2.LedgerExport.FromString(built[1].export().SerializeToString())


def codes(problems):
    return {(p.code, p.seq) for p in problems}


def resign(export, key, start=0):
    """Re-hash and re-sign the chain from `start` on, as a node rewriting its history would."""
    prev = export.entries[start - 1].entry_hash if start > 0 else bytes(32)
    for e in export.entries[start:]:
        e.body.prev_hash = prev
        e.entry_hash = entry_hash_of(e.body)
        e.signature = key.sign(e.entry_hash)
        prev = e.entry_hash


def test_intact_ledger_verifies_and_round_trips(built, tmp_path):
    key, ledger = built
    export = ledger.export()
    assert [e.body.seq for e in export.entries] == [0, 1, 2, 3]
    assert verify_ledger(export, raw_public_key(key)) == []
    assert ledger.events() == EVENTS
    claimed = [e.body.claimed_epsilon for e in export.entries]
    assert claimed == sorted(claimed) and all(e.body.accountant == "rdp-filter" and e.body.schedule == "adaptive"
                                              for e in export.entries)
    for fmt in ("pb", "json"):
        path = ledger.export_to(tmp_path / f"ledger.{fmt}", fmt)
        back = load_export(path)
        assert back == export
        assert verify_ledger(back, raw_public_key(key)) == []


def test_flipped_byte_in_a_body(built):
    export = fresh(built)
    raw = bytearray(body_bytes(export.entries[1].body))
    i = raw.index(b"battle_counts")
    raw[i] ^= 0x01  # "battle_counts" -> "cattle_counts"
    export.entries[1].body.ParseFromString(bytes(raw))
    problems = verify_ledger(export)
    assert ("hash", 1) in codes(problems)  # the signature is over the stored entry_hash, still genuine
    assert any("altered after signing" in p.message and "seq 1" in p.message for p in problems)


def test_flipped_byte_in_a_signature(built):
    export = fresh(built)
    sig = bytearray(export.entries[2].signature)
    sig[5] ^= 0x80
    export.entries[2].signature = bytes(sig)
    assert codes(verify_ledger(export)) == {("signature", 2)}


def test_flipped_byte_in_the_exported_file(built, tmp_path):
    path = built[1].export_to(tmp_path / "l.pb")
    data = bytearray(path.read_bytes())
    data[data.index(b"thumbs_rates")] ^= 0x20
    try:
        problems = verify_ledger(load_export(bytes(data)))
    except LedgerError as e:  # the flip broke the encoding itself: also a precise refusal
        assert "not a readable ledger export" in str(e)
    else:
        assert ("hash", 2) in codes(problems)


def test_dropped_entry(built):
    export = fresh(built)
    del export.entries[1]
    problems = verify_ledger(export)
    assert ("seq", 1) in codes(problems) and ("chain", 1) in codes(problems)
    assert any("missing before it (dropped)" in p.message for p in problems)


def test_reordered_entries(built):
    export = fresh(built)
    a, b = ledger_pb2.LedgerEntry(), ledger_pb2.LedgerEntry()
    a.CopyFrom(export.entries[1])
    b.CopyFrom(export.entries[2])
    export.entries[1].CopyFrom(b)
    export.entries[2].CopyFrom(a)
    c = codes(verify_ledger(export))
    assert {("seq", 1), ("chain", 1), ("seq", 2), ("chain", 2)} <= c
    assert not any(code in ("hash", "signature") for code, _ in c)  # each entry itself is genuine


def test_inserted_entry_signed_by_someone_else(built):
    export = fresh(built)
    intruder = Ed25519PrivateKey.generate()
    forged = ledger_pb2.LedgerEntry()
    forged.CopyFrom(export.entries[1])
    forged.body.event.CopyFrom(GaussianEvent(100.0).to_proto())
    forged.body.prev_hash = export.entries[1].entry_hash
    forged.entry_hash = entry_hash_of(forged.body)
    forged.signature = intruder.sign(forged.entry_hash)
    export.entries.insert(2, forged)
    c = codes(verify_ledger(export))
    assert ("signature", 2) in c and ("seq", 2) in c and ("chain", 3) in c


def test_changed_sigma_is_caught_by_hash_and_if_resigned_by_epsilon(built):
    key = built[0]
    export = fresh(built)
    export.entries[1].body.event.discrete_gaussian.sigma = 60.0  # claim more noise than was used
    assert ("hash", 1) in codes(verify_ledger(export))
    resign(export, key, 1)  # the node itself rewrites its chain: signatures all check out...
    problems = verify_ledger(export, raw_public_key(key))
    assert {p.code for p in problems} == {"epsilon"}  # ...but the claimed epsilon no longer follows
    assert problems[0].seq == 1 and "not reproducible" in problems[0].message


def test_under_reported_epsilon_is_named(built):
    key = built[0]
    export = fresh(built)
    export.entries[3].body.claimed_epsilon *= 0.9
    resign(export, key, 3)
    (p,) = verify_ledger(export)
    assert p.code == "epsilon" and p.seq == 3 and "BELOW" in p.message and "under-reported" in p.message


def test_foreign_key(built):
    key = built[0]
    export = fresh(built)
    other = Ed25519PrivateKey.generate()
    problems = verify_ledger(export, raw_public_key(other))
    assert problems[0].code == "foreign_key" and "foreign key" in problems[0].message
    # whole chain re-signed by the other key and the export's key swapped: still foreign
    export.public_key = raw_public_key(other)
    resign(export, other)
    c = {p.code for p in verify_ledger(export, raw_public_key(key))}
    assert "foreign_key" in c


def test_truncated_end_needs_the_published_head(built):
    export = fresh(built)
    head = export.entries[-1].entry_hash
    del export.entries[-1]
    assert verify_ledger(export) == []  # a shorter chain is self-consistent...
    (p,) = verify_ledger(export, expected_head=head)
    assert p.code == "head"  # ...the published head catches it


def test_append_only_enforced_by_sqlite(built):
    conn = built[1].conn
    for sql in ("UPDATE privacy_ledger SET release_kind='x' WHERE seq=0",
                "DELETE FROM privacy_ledger WHERE seq=3",
                "UPDATE privacy_release_cache SET payload=x'00'",
                "DELETE FROM privacy_release_cache"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(sql)
    assert len(built[1]) == 4


def test_cache_cap_and_key_checks(tmp_path):
    key = Ed25519PrivateKey.generate()
    db = tmp_path / "store.sqlite"
    ledger = Ledger(connect(db), key, "n")
    ledger.append("coverage", DiscreteGaussianEvent(5.0), DELTA, "p", request_hash="q1", payload=b"a")
    with pytest.raises(AlreadyReleased) as e:
        ledger.append("coverage", DiscreteGaussianEvent(5.0), DELTA, "p", request_hash="q1", payload=b"b")
    assert e.value.payload == b"a" and e.value.entry.body.seq == 0
    with pytest.raises(CapExceeded):
        ledger.append("coverage", DiscreteGaussianEvent(0.5), DELTA, "p", request_hash="q2", payload=b"c",
                      epsilon_cap=1.0)
    assert len(ledger) == 1  # refused appends wrote nothing
    assert event_from_proto(ledger.head().body.event) == DiscreteGaussianEvent(5.0)
    reopened = Ledger(connect(db), key, "n")  # survives reopening
    assert reopened.cached("q1")[1] == b"a"
    with pytest.raises(LedgerError, match="not by the given key"):
        Ledger(connect(db), Ed25519PrivateKey.generate(), "n")
    with pytest.raises(LedgerError, match="not a readable ledger export"):
        load_export(b"\xff\xff\xff garbage")
