"""node/record_writer.py writes an import batch exactly as `Store.add_record` writes its records one by
one: the same rows, ids, consent, dropped withdrawn parts, links resolved, ownership refused; and it sees a
withdrawal made by another writer between two batches."""

from __future__ import annotations

import pytest

from node import import_batches, links
from node.node_dir import NodeDir
from node.ownership import OwnershipError
from node.record_writer import ADDED, DUPLICATE, WITHDRAWN, write_batch
from node.schema import Feedback, Message, Record, Response

CONSENT = ("CC-BY-4.0", "2026-01-01T00:00:00+00:00", "import:test")


def rec(key, owner, judges=(), text=None, meta=None, source="test"):
    fb = [Feedback("thumbs", j, {"response": 0, "value": 1}, timestamp="2026-01-02T00:00:00+00:00") for j in judges]
    if text:
        fb.append(Feedback("critique", owner or judges[0], {"response": 0}, text=text))
    return Record(source, key, [Message("user", f"prompt {key} é")], [Response(f"reply {key}", "m-1"), Response("b", None)],
                  fb, owner=owner, language="en", timestamp="2026-01-01T00:00:00+00:00", meta=meta or {})


def seeded(path):
    """A store with known people: alice (consent pending), a tombstone for "gone", a v1 "test:legacy"
    tombstone, the alias "al" linked to alice, and one stored record."""
    nd = NodeDir.init(path, "t")
    with nd.open_store() as store:
        with store.transaction():
            for r in (rec("k0", "alice", ["alice"]), rec("g0", "gone", ["gone"])):
                store.add_record(r, None)
            store.conn.execute("INSERT INTO withdrawn(id_mac, withdrawn_at) VALUES(?, 'x')",
                               (store.cipher.ident("contributor", "test:legacy"),))
        store.forget("gone")
        with store.transaction():
            store.add_record(rec("b0", None, ["bob"]), None)
        links.link(store, "alice", "al")
    return nd


BATCH = [
    rec("k0", "alice", ["alice"]),  # stored already
    rec("k1", "alice", ["alice"], text="a critique", meta={"topic": "x", "n": 2}),
    rec("k2", "al", ["al"]),  # an alias: stored under alice
    rec("k3", "gone", ["gone"]),  # withdrawn owner
    rec("k4", None, ["gone", "carol"]),  # one judge withdrawn: carol's part kept
    rec("k5", None, ["gone"]),  # every judge withdrawn
    rec("k6", "legacy", ["legacy"]),  # withdrawn under its schema-v1 id
    rec("k7", "dave", ["erin"]),  # breaks the ownership rule
    rec("k8", None, ["bob", "carol"], text="shared critique"),  # bob known: consent deferred
    rec("k1", "alice", ["alice"]),  # a second copy in the same batch
]


def dump(store):
    c = store.conn
    contributors = c.execute("SELECT id, consent_licence, consent_at, consent_source, pending_import IS NOT NULL"
                             " FROM contributors ORDER BY id").fetchall()
    convs = [(r[0], r[2], r[3], r[4], r[5], r[6], r[7], store.open_meta(r[1], r[8]),  # uids: each store's own key
              store.cipher.open(r[9], b"conv:" + r[1].encode()))
             for r in c.execute("SELECT id, uid, source, owner, language, created_at, import_id IS NOT NULL, models, meta,"
                                " body FROM conversations ORDER BY id")]
    fbs = [(r[0], r[1], r[2], r[3], r[4], r[6], store.cipher.open(r[5], b"feedback:%d" % r[0]) if r[5] else None)
           for r in c.execute("SELECT id, conversation_id, contributor, kind, data, text, created_at FROM feedback ORDER BY id")]
    # A deferred consent equal to the one the row already has is a no-op at the final commit (add_record
    # defers again for a person this import created; the batch writer does not)
    deferred = {cid: v for cid, v in store._deferred_consent.items() if v[0] != v[1]}
    return contributors, convs, fbs, deferred


def one_by_one(store, records, import_id):
    out = []
    for r in records:
        try:
            out.append(store.add_record(r, import_id, CONSENT))
        except OwnershipError as e:
            out.append(e)
    return out


def test_a_batch_leaves_the_rows_add_record_leaves(tmp_path):
    results = {}
    for how in ("one_by_one", "batch"):
        nd = seeded(tmp_path / how)
        with nd.open_store() as store, import_batches.run(store, "f", "sha", "openai", "2026-01-03T00:00:00+00:00") as b:
            with b.batch():
                pairs = [(r, store.cipher.ident("record", r.source, r.key)) for r in BATCH]
                if how == "batch":
                    _, outcomes = write_batch(store, pairs, b.import_id, CONSENT)
                else:
                    outcomes = one_by_one(store, BATCH, b.import_id)
                results[how] = (outcomes, dump(store))
    (old_out, old_rows), (new_out, new_rows) = results["one_by_one"], results["batch"]
    assert [type(o) for o in new_out if not isinstance(o, str)] == [OwnershipError]
    # add_record says False for a duplicate and a withdrawn record alike; the batch tells them apart
    assert [o is True for o in old_out] == [o == ADDED for o in new_out]
    assert [new_out[i] for i in (0, 3, 5, 6, 9)] == [DUPLICATE, WITHDRAWN, WITHDRAWN, WITHDRAWN, DUPLICATE]
    assert new_rows == old_rows
    contributors, convs, fbs, deferred = new_rows
    assert "gone" not in {f[2] for f in fbs} and "al" not in {f[2] for f in fbs} and "legacy" not in {c[0] for c in contributors}
    assert set(deferred) == {"alice", "bob"}  # known people: their consent waits for the final commit


def test_a_withdrawal_between_batches_is_seen_by_the_next(tmp_path):
    nd = NodeDir.init(tmp_path / "n", "t")
    with nd.open_store() as store, nd.open_store() as other:
        with import_batches.run(store, "f", "sha", "openai", "2026-01-03T00:00:00+00:00") as b:
            with b.batch():
                first = rec("k1", None, ["zed", "yan"])
                write_batch(store, [(first, store.cipher.ident("record", "test", "k1"))], b.import_id, None)
            with other.transaction():  # another process withdraws zed meanwhile
                other.conn.execute("INSERT INTO withdrawn(id_mac, withdrawn_at) VALUES(?, 'x')",
                                   (other.cipher.ident("contributor", "zed"),))
            with b.batch():
                later = rec("k2", None, ["zed", "yan"])
                snap, out = write_batch(store, [(later, store.cipher.ident("record", "test", "k2"))], b.import_id, None)
            assert out == [ADDED] and snap.withdrawn("zed")
            judges = [r[0] for r in store.conn.execute(
                "SELECT contributor FROM feedback f JOIN conversations c ON c.id = f.conversation_id WHERE c.id ="
                " (SELECT MAX(id) FROM conversations)")]
            assert judges == ["yan"]


def test_write_batch_refuses_to_run_outside_its_import(tmp_path):
    nd = NodeDir.init(tmp_path / "n", "t")
    with nd.open_store() as store, pytest.raises(ValueError, match="pending import"):
        write_batch(store, [], 1, None)


def test_a_refused_record_does_not_make_a_later_valid_copy_a_duplicate(tmp_path, monkeypatch):
    """Line 1 breaks the ownership rule, line 2 has the same (source, key) and is valid: with --skip-invalid
    line 2 is stored, as one-by-one add_record stored it (found by the review of the batch writer)."""
    import node.ingest as ingest

    rows = [(1, rec("kx", "dave", ["erin"])), (2, rec("kx", None, ["erin"])), (3, rec("kx", None, ["erin"]))]
    monkeypatch.setattr(ingest, "read_records", lambda *a, **k: iter(rows))
    f = tmp_path / "f.jsonl"
    f.write_text("{}\n")
    nd = NodeDir.init(tmp_path / "n", "t")
    with nd.open_store() as store:
        report = ingest.import_file(store, f, fmt="sharelm", skip_invalid=True)
        assert report.records == 1 and report.duplicates == 1 and len(report.skipped) == 1
        assert "f.jsonl:1: field 'feedback[0].contributor'" in report.skipped[0]
        assert store.conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] == 1
