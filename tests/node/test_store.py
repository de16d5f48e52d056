"""The node store: encryption at rest, dedup, consent gate, withdrawal, key handling."""

import os
from datetime import datetime, timedelta, timezone

import pytest
from sqlcipher3 import dbapi2 as sqlcipher

from node.consent import eligible_contributors, record_consent
from node.crypto import CryptoError
from node.node_dir import NodeDir, NodeDirError
from node.schema import Feedback, Message, Record, Response

CANARY = "CANARY-7f3a9c-zebra-quartz"


def make_record(key, owner="alice", judge="alice", text=CANARY, critique=None):
    fb = [Feedback("pairwise", judge, {"a": 0, "b": 1, "outcome": "a", "strength": 1.0})]
    if critique:
        fb.append(Feedback("critique", judge, {"response": 0}, text=critique))
    return Record(
        source="test",
        key=key,
        prompt=[Message("user", f"my secret is {text}")],
        responses=[Response(f"reply about {text}", "model-x"), Response("other reply", "model-y")],
        feedback=fb,
        owner=owner,
        language="en",
    )


def all_bytes(path):
    out = b""
    for root, _, files in os.walk(path):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                out += fh.read()
    return out


def test_text_encrypted_at_rest_and_readable_back(node_dir):
    with node_dir.open_store() as store:
        with store.transaction():
            assert store.add_record(make_record("k1", critique=f"critique {CANARY}"), None)
        recs = list(store.records())
    assert recs[0].prompt[0].text == f"my secret is {CANARY}"
    assert recs[0].feedback[1].text == f"critique {CANARY}"
    assert recs[0].responses[0].model == "model-x"
    blob = all_bytes(node_dir.path)
    assert CANARY.encode() not in blob
    assert CANARY.encode("utf-16-le") not in blob


def test_same_record_twice_adds_nothing(node_dir):
    with node_dir.open_store() as store:
        with store.transaction():
            assert store.add_record(make_record("k1"), None)
            assert not store.add_record(make_record("k1"), None)
        assert store.conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] == 1
        assert store.conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 1


def test_forget_removes_text_from_every_byte_and_blocks_reimport(node_dir):
    with node_dir.open_store() as store:
        with store.transaction():
            store.add_record(make_record("k1", critique=f"critique {CANARY}"), None)
            store.add_record(make_record("k2", owner="bob", judge="bob", text="harmless"), None)
            store.add_record(make_record("k3", owner="alice", judge="alice", text=CANARY + "-2"), None)
        cache = store.embedding_cache("hashed-test")
        cache.put_many({cache.key(f"my secret is {CANARY}"): [1.0, 2.0]})
        assert len(cache.get_many([cache.key(f"my secret is {CANARY}")])) == 1
        out = store.forget("alice")
        assert out["conversations_deleted"] == 2
        recs = list(store.records())
        assert [r.owner for r in recs] == ["bob"]
        assert store.conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 0
        # re-importing alice's records adds nothing: she is tombstoned
        with store.transaction():
            assert not store.add_record(make_record("k9"), None)
    blob = all_bytes(node_dir.path)
    assert b"alice" not in blob  # only an HMAC of the id is kept
    assert CANARY.encode() not in blob


def test_forget_unknown_contributor_is_an_error(node_dir):
    from node.store import StoreError

    with node_dir.open_store() as store, pytest.raises(StoreError, match="no contributor 'nobody'"):
        store.forget("nobody")


def test_consent_gate_waiting_period(node_dir):
    with node_dir.open_store() as store:
        with store.transaction():
            store.add_record(make_record("k1"), None)
            store.add_record(make_record("k2", owner="bob", judge="bob"), None)
        policy = node_dir.policy()
        assert policy.waiting_period_hours == 24
        now = datetime.now(timezone.utc)
        assert eligible_contributors(store, policy, now) == set()  # no consent yet
        record_consent(store, ["alice"], "CC-BY-4.0", (now - timedelta(hours=25)).isoformat(), "test")
        record_consent(store, ["bob"], "CC-BY-4.0", (now - timedelta(hours=23)).isoformat(), "test")
        assert eligible_contributors(store, policy, now) == {"alice"}  # bob still waits
        assert eligible_contributors(store, policy, now + timedelta(hours=2)) == {"alice", "bob"}
        recs = list(store.records(contributors={"alice"}))
    assert {r.owner for r in recs} == {"alice"}


def test_licence_not_in_policy_is_not_eligible(node_dir):
    with node_dir.open_store() as store:
        with store.transaction():
            store.add_record(make_record("k1"), None)
        record_consent(store, ["alice"], "All-Rights-Reserved", "2020-01-01T00:00:00Z", "test")
        assert eligible_contributors(store, node_dir.policy()) == set()


def test_wrong_key_is_refused(node_dir):
    (node_dir.key_dir / "store.key").chmod(0o600)
    (node_dir.key_dir / "store.key").write_bytes(os.urandom(32))
    with pytest.raises(CryptoError, match="wrong store key"):
        node_dir.open_store()


def test_passphrase_store(tmp_path, monkeypatch):
    nd = NodeDir.init(tmp_path / "p", "pp", passphrase="correct horse")
    assert not (nd.key_dir / "store.key").exists()
    monkeypatch.delenv("CAIRN_PASSPHRASE", raising=False)
    with pytest.raises(NodeDirError, match="CAIRN_PASSPHRASE"):
        nd.open_store()
    monkeypatch.setenv("CAIRN_PASSPHRASE", "wrong")
    with pytest.raises(CryptoError):
        nd.open_store()
    monkeypatch.setenv("CAIRN_PASSPHRASE", "correct horse")
    with nd.open_store() as store:
        with store.transaction():
            store.add_record(make_record("k1"), None)
        assert len(list(store.records())) == 1


def test_key_files_are_private(node_dir):
    for name in ("store.key", "ledger_ed25519.pem", "supernode_ec"):
        assert (node_dir.key_dir / name).stat().st_mode & 0o777 == 0o600
    pub = (node_dir.key_dir / "supernode_ec.pub").read_text()
    assert pub.startswith("ecdsa-sha2-nistp384 ")
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    key = load_ssh_private_key((node_dir.key_dir / "supernode_ec").read_bytes(), None)
    assert key.curve.name == "secp384r1"


def test_migrations_are_versioned_and_idempotent(node_dir):
    from node.store import MIGRATIONS

    with node_dir.open_store() as store:
        assert store.schema_version() == len(MIGRATIONS)
    with node_dir.open_store() as store:  # opening again migrates nothing
        assert store.schema_version() == len(MIGRATIONS)
    with node_dir.open_store() as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_transaction_rolls_back_on_error(node_dir):
    with node_dir.open_store() as store:
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.add_record(make_record("k1"), None)
                raise RuntimeError("boom")
        assert store.conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] == 0


def test_store_is_a_context_manager_that_closes(node_dir):
    with pytest.raises(RuntimeError), node_dir.open_store() as store:
        raise RuntimeError("boom")
    with pytest.raises(sqlcipher.ProgrammingError):  # closed even though the block raised
        store.conn.execute("SELECT 1")
