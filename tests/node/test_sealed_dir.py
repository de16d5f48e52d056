"""Issue 15 item 9: a stolen node directory reveals no contributor id, file name, model name, consent
source or metadata (grepped byte-wise, WAL included), and without the passphrase can neither open the
store nor sign ledger entries. Older directories (plaintext store, open modes, plain keys) are sealed
when they open."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from sqlcipher3 import dbapi2 as sqlcipher

from cairn.cli import cli
from node import keys
from node.crypto import CryptoError
from node.ingest import import_file
from node.node_dir import NodeDir, NodeDirError
from node.store_db import is_plaintext

PASS = "correct horse battery staple"
PLANTED = {
    "contributor": "plantedcontrib7zq81",
    "file": "plantedfile4xk42",
    "model": "plantedmodel9wv77",
    "email": "planted.person@example.org",
    "phone": "+44 20 7946 0958",
    "card": "4111 1111 1111 1111",
    "witness": "plantedwitness5jr55",
    "text": "plantedtext3qq19",
}


def sharelm_file(directory: Path) -> Path:
    path = directory / f"{PLANTED['file']}.jsonl"
    rows = [{"conversation_id": f"c{i}", "user_id": PLANTED["contributor"], "model_name": PLANTED["model"],
             "source": f"mail {PLANTED['email']} or call {PLANTED['phone']}",
             "conversation_metadata": {"rate": "thumbs up", "toxic": f"card {PLANTED['card']}",
                                       "redacted": f"reach me at {PLANTED['email']}", "title": PLANTED["email"]},
             "conversation": [{"role": "user", "content": f"{PLANTED['text']} question {i}"},
                              {"role": "assistant", "content": "an answer"}]} for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def hits(directory: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    files = [p for p in directory.rglob("*") if p.is_file()]
    for name, value in PLANTED.items():
        for variant in {value, value.replace(" ", "")}:
            for p in files:
                if variant.encode() in p.read_bytes():
                    found.setdefault(name, []).append(p.name)
    return found


@pytest.fixture
def sealed(tmp_path, monkeypatch):
    monkeypatch.setenv("CAIRN_PASSPHRASE", PASS)
    d = tmp_path / "node"
    nd = NodeDir.init(d, "clinic", passphrase=PASS)
    return nd, sharelm_file(tmp_path)


def test_stolen_directory_reveals_no_planted_string(sealed):
    nd, src = sealed
    with nd.open_store() as keeper:  # held open, so the WAL stays on disk while we grep
        with nd.open_store() as store:
            report = import_file(store, src, consent="CC-BY-4.0", consent_by=PLANTED["witness"])
        assert report.records == 12
        keeper.conn.execute("SELECT COUNT(*) FROM conversations").fetchone()
        wal = nd.path / "store.sqlite-wal"
        assert wal.exists() and wal.stat().st_size > 0
        assert hits(nd.path) == {}
        # what a thief sees: every folder 0700, every file 0600
        for p in [nd.path, *nd.path.rglob("*")]:
            assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p
        # the metadata was redacted at import as well as sealed
        meta = [r.meta for r in keeper.records()]
        assert meta and all(PLANTED["email"] not in json.dumps(m) and "4111" not in json.dumps(m) for m in meta)
        cols = keeper.conn.execute("SELECT consent_source FROM contributors").fetchall()
        assert PLANTED["witness"] in cols[0][0]  # the operator, with the key, still reads it


def test_stolen_directory_cannot_open_the_store_or_sign(sealed, tmp_path, monkeypatch):
    nd, src = sealed
    with nd.open_store() as store:
        import_file(store, src, consent="CC-BY-4.0")
    stolen = tmp_path / "stolen"
    shutil.copytree(nd.path, stolen)
    monkeypatch.delenv("CAIRN_PASSPHRASE")
    thief = NodeDir(stolen)
    with pytest.raises(NodeDirError, match="passphrase"):
        thief.open_store()
    with pytest.raises(NodeDirError, match="passphrase"):
        thief.ledger_key()
    with pytest.raises(CryptoError):
        thief.open_store(passphrase="guess")
    with pytest.raises(keys.KeyLocked):  # the key files themselves are sealed
        keys.load_ledger_key(stolen / "keys")
    for name in (keys.LEDGER_KEY, keys.SUPERNODE_KEY):
        raw = (stolen / "keys" / name).read_bytes()
        assert raw.startswith(keys.SEALED) and b"PRIVATE KEY" not in raw
        with pytest.raises(ValueError):
            serialization.load_pem_private_key(raw, password=None)
    conn = sqlcipher.connect(str(stolen / "store.sqlite"))  # no key: SQLite cannot read it
    with pytest.raises(sqlcipher.DatabaseError):
        conn.execute("SELECT * FROM contributors").fetchall()
    conn.close()
    # the owner, with the passphrase, signs and reads
    key = NodeDir(stolen).ledger_key(passphrase=PASS)
    assert key.sign(b"x")
    with NodeDir(stolen).open_store(passphrase=PASS) as store:
        assert len(list(store.records())) == 12


def test_supernode_key_is_unsealed_only_while_needed(sealed):
    nd, _ = sealed
    with nd.supernode_key_file() as path:
        assert path.parent == nd.key_dir and stat.S_IMODE(path.stat().st_mode) == 0o600
        key = serialization.load_ssh_private_key(path.read_bytes(), None)
        assert key.curve.name == "secp384r1"
    assert not path.exists()
    assert sorted(p.name for p in nd.key_dir.iterdir()) == sorted(
        [keys.LEDGER_KEY, keys.LEDGER_PUB, keys.SUPERNODE_KEY, keys.SUPERNODE_PUB])


def _decrypt_to_plaintext(nd: NodeDir) -> None:
    """Turn the node's store back into an unencrypted one, as Cairn wrote it before issue 15."""
    db = nd.path / "store.sqlite"
    plain = nd.path / "plain.sqlite"
    conn = sqlcipher.connect(str(db), isolation_level=None)
    conn.execute(f"PRAGMA key = \"x'{nd.cipher().db_key.hex()}'\"")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.execute(f"ATTACH DATABASE '{plain}' AS plain KEY ''")
    conn.execute("SELECT sqlcipher_export('plain')")
    conn.execute(f"PRAGMA plain.user_version = {version}")
    conn.execute("DETACH DATABASE plain")
    conn.close()
    plain.replace(db)


def test_plaintext_store_and_open_modes_are_sealed_on_open(tmp_path):
    d = tmp_path / "node"
    nd = NodeDir.init(d, "clinic")
    src = sharelm_file(tmp_path)
    with nd.open_store() as store:
        import_file(store, src)
    _decrypt_to_plaintext(nd)
    assert is_plaintext(d / "store.sqlite") and PLANTED["contributor"].encode() in (d / "store.sqlite").read_bytes()
    for p in [d, *d.rglob("*")]:  # an older directory: world-readable
        p.chmod(0o755 if p.is_dir() else 0o644)
    with NodeDir(d).open_store() as store:
        assert len(list(store.records())) == 12
        assert list(store.contributor_ids()) == [PLANTED["contributor"]]
    assert not is_plaintext(d / "store.sqlite")
    assert hits(d) == {}
    leftovers = {p.name for p in d.iterdir() if p.name.startswith("store.sqlite")} - {"store.sqlite", "store.sqlite.import-lock"}
    assert not leftovers  # no plaintext copy, WAL or SHM of the old file
    for p in [d, *d.rglob("*")]:
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p


def test_older_passphrase_nodes_get_their_keys_sealed(sealed):
    nd, _ = sealed
    kk = nd.cipher().keys_key
    for name in (keys.LEDGER_KEY, keys.SUPERNODE_KEY):  # as an older node wrote them: in clear
        path = nd.key_dir / name
        data = keys.read_private(path, kk)
        path.write_bytes(data)
        assert not keys.is_sealed(path)
    signer = nd.ledger_key()
    with nd.open_store():
        pass
    assert all(keys.is_sealed(nd.key_dir / n) for n in (keys.LEDGER_KEY, keys.SUPERNODE_KEY))
    assert NodeDir(nd.path).ledger_key().public_key().public_bytes_raw() == signer.public_key().public_bytes_raw()
    assert not list(nd.key_dir.glob("*plain-old*"))


def test_cli_init_creates_a_private_directory(tmp_path):
    d = tmp_path / "node"
    res = CliRunner().invoke(cli, ["node", "init", str(d), "--name", "clinic"])
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600) for p in d.rglob("*"))


def decrypted_pages(path: Path, db_key: bytes, page: int = 4096, reserve: int = 80) -> bytes:
    """Every page of a SQLCipher 4 file (and of its WAL's frames) decrypted with the raw key: what
    someone holding the key could read, free pages included."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    def open_page(raw: bytes, first: bool) -> bytes:
        body = raw[16:page - reserve] if first else raw[:page - reserve]
        iv = raw[page - reserve:page - reserve + 16]
        dec = Cipher(algorithms.AES(db_key), modes.CBC(iv)).decryptor()
        return dec.update(body) + dec.finalize()

    out = []
    data = path.read_bytes()
    out += [open_page(data[i:i + page], i == 0) for i in range(0, len(data) - page + 1, page)]
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        w = wal.read_bytes()
        for off in range(32, len(w) - 24 - page + 1, 24 + page):
            pgno = int.from_bytes(w[off:off + 4], "big")
            out.append(open_page(w[off + 24:off + 24 + page], pgno == 1))
    return b"".join(out)


def test_forget_leaves_no_trace_even_to_the_key_holder(tmp_path):
    nd = NodeDir.init(tmp_path / "node", "clinic")
    src = sharelm_file(tmp_path)
    with nd.open_store() as store:
        import_file(store, src, consent="CC-BY-4.0")
    db, key = nd.path / "store.sqlite", nd.cipher().db_key
    with nd.open_store() as keeper:  # held open: the WAL stays
        assert PLANTED["contributor"].encode() in decrypted_pages(db, key)  # the decryptor reads the pages
        with nd.open_store() as store:
            store.forget(PLANTED["contributor"])
        keeper.conn.execute("SELECT 1").fetchone()
        assert PLANTED["contributor"].encode() not in decrypted_pages(db, key)


def test_the_deployment_gets_the_supernode_key_only_until_it_connects(sealed, tmp_path):
    from deploy.local import LocalDeployment

    nd, _ = sealed
    dep = LocalDeployment([nd.path], tmp_path / "work")
    path = dep._unsealed_key(nd.path.resolve(), "supernode-node")  # what start_supernode passes to flower-supernode
    assert serialization.load_ssh_private_key(path.read_bytes(), None).curve.name == "secp384r1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    dep.stop()  # (wait_supernode drops it as soon as the SuperNode has connected)
    assert not path.exists() and keys.is_sealed(nd.key_dir / keys.SUPERNODE_KEY)


def test_a_crash_between_link_and_swap_of_the_migration_keeps_the_store(tmp_path):
    """Killed after `.plaintext-old` was linked to the plaintext store but before the swap: the
    leftover is the store's own second name, and shredding it would zero the store."""
    d = tmp_path / "node"
    nd = NodeDir.init(d, "clinic")
    with nd.open_store() as store:
        import_file(store, sharelm_file(tmp_path))
    _decrypt_to_plaintext(nd)
    db = d / "store.sqlite"
    (d / "store.sqlite.plaintext-old").hardlink_to(db)
    with NodeDir(d).open_store() as store:
        assert len(list(store.records())) == 12
    assert not is_plaintext(db) and not (d / "store.sqlite.plaintext-old").exists() and hits(d) == {}


def test_a_killed_key_sealing_or_supernode_run_leaves_no_plain_key(sealed):
    nd, _ = sealed
    plain = keys.read_private(nd.key_dir / keys.LEDGER_KEY, nd.cipher().keys_key)
    sn = keys.read_private(nd.key_dir / keys.SUPERNODE_KEY, nd.cipher().keys_key)
    # killed after the swap, before the overwrite: a plain copy of the ledger key under its own inode
    (nd.key_dir / (keys.LEDGER_KEY + ".plain-old")).write_bytes(plain)
    # killed while flower-supernode started (kill -9: no finally): the plain copy of a dead process
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = nd.key_dir / f".{keys.SUPERNODE_KEY}.run-{int(dead.stdout)}-0badcafe"
    stale.write_bytes(sn)
    alive = nd.key_dir / f".{keys.SUPERNODE_KEY}.run-{os.getpid()}-00c0ffee"  # a running deployment's copy
    alive.write_bytes(sn)
    with nd.open_store():
        pass
    left = b"".join(p.read_bytes() for p in nd.key_dir.iterdir() if p != alive)
    assert plain not in left and sn not in left
    assert not stale.exists() and alive.exists()
    alive.unlink()
    # killed between the hard link and the swap: `.plain-old` is the key file itself, never zeroed
    path = nd.key_dir / keys.SUPERNODE_KEY
    path.write_bytes(sn)
    (nd.key_dir / (keys.SUPERNODE_KEY + ".plain-old")).hardlink_to(path)
    with nd.open_store():
        pass
    assert keys.is_sealed(path) and keys.read_private(path, nd.cipher().keys_key) == sn
    assert not list(nd.key_dir.glob("*plain-old*"))


def test_forget_while_a_reader_holds_a_transaction_is_scrubbed_at_next_open(tmp_path, monkeypatch):
    from node import store_db

    monkeypatch.setattr(store_db, "BUSY_TIMEOUT_S", 0.2)
    nd = NodeDir.init(tmp_path / "node", "clinic")
    with nd.open_store() as store:
        import_file(store, sharelm_file(tmp_path), consent="CC-BY-4.0")
    db, key = nd.path / "store.sqlite", nd.cipher().db_key
    with nd.open_store() as keeper:
        keeper.conn.execute("BEGIN")
        keeper.conn.execute("SELECT COUNT(*) FROM conversations").fetchone()  # a reader mid-transaction
        with nd.open_store() as store:
            store.forget(PLANTED["contributor"])
            assert store.meta_get("scrub_pending")  # the checkpoint was held off: remembered
        keeper.conn.execute("COMMIT")
        with nd.open_store() as store:  # the next open redoes the scrub
            assert store.meta_get("scrub_pending") is None
        assert PLANTED["contributor"].encode() not in decrypted_pages(db, key)


OPEN_AND_COUNT = """
import sys
from node.node_dir import NodeDir
with NodeDir(sys.argv[1]).open_store() as store:
    print(len(list(store.records())))
"""


def test_processes_opening_a_plaintext_store_at_once_migrate_it_once(tmp_path):
    d = tmp_path / "node"
    nd = NodeDir.init(d, "clinic")
    with nd.open_store() as store:
        import_file(store, sharelm_file(tmp_path))
    _decrypt_to_plaintext(nd)
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AND_COUNT, str(d)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [o.strip() for o, _ in outs] == ["12"] * 3, [e[-500:] for _, e in outs]
    with NodeDir(d).open_store() as store:
        assert len(list(store.records())) == 12
    assert not is_plaintext(d / "store.sqlite") and hits(d) == {}


def test_a_damaged_store_is_one_plain_line(tmp_path):
    d = tmp_path / "node"
    assert CliRunner().invoke(cli, ["node", "init", str(d), "--name", "clinic"]).exit_code == 0
    db = d / "store.sqlite"
    data = bytearray(db.read_bytes())
    data[9000:9004] = b"XXXX"  # a page that fails SQLCipher's HMAC
    db.write_bytes(bytes(data))
    res = CliRunner().invoke(cli, ["node", "status", str(d)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "store.sqlite is damaged" in res.output and len(res.output.strip().splitlines()) == 1


KILLED_MID_IMPORT = """
import os, sys
from node import import_batches
from node.ingest import import_file
from node.node_dir import NodeDir
import_batches.BATCH_ROWS = 4
committed, batch = [0], import_batches.Batches.batch
def dying(self):
    if committed[0] == 2:
        os._exit(9)  # killed at a batch boundary: two batches on disk, pending
    committed[0] += 1
    return batch(self)
import_batches.Batches.batch = dying
with NodeDir(sys.argv[1]).open_store() as store:
    import_file(store, sys.argv[2], consent="CC-BY-4.0", consent_by=sys.argv[3])
"""


def test_a_directory_stolen_after_a_killed_import_reveals_nothing(sealed):
    nd, src = sealed
    proc = subprocess.run([sys.executable, "-c", KILLED_MID_IMPORT, str(nd.path), str(src), PLANTED["witness"]],
                          capture_output=True, timeout=120)
    assert proc.returncode == 9, proc.stderr.decode()[-2000:]
    assert (nd.path / "store.sqlite-wal").stat().st_size > 0  # the pending batches, as the crash left them
    assert hits(nd.path) == {}
    lock = (nd.path / "store.sqlite.import-lock").read_bytes()
    assert set(json.loads(lock)) <= {"pid", "since"}  # the stale lock names a process, nothing else
    with nd.open_store() as store:  # and the next open rolls the pending import back
        assert list(store.records()) == [] and list(store.contributor_ids()) == []


def test_a_planted_plain_ledger_key_is_refused(sealed):
    """Someone who can write the directory but lacks the passphrase swaps in a key they know."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    nd, _ = sealed
    theirs = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (nd.key_dir / keys.LEDGER_KEY).write_bytes(theirs)
    with pytest.raises(CryptoError, match="does not match the node's public key"):
        nd.ledger_key()


def test_scrypt_parameters_are_recorded_so_raising_them_never_locks_a_node_out(sealed, monkeypatch):
    import tomllib

    from node import crypto

    nd, _ = sealed
    cfg = tomllib.loads(nd.config_path.read_text())["store"]
    assert (cfg["scrypt_n"], cfg["scrypt_r"], cfg["scrypt_p"]) == (crypto.SCRYPT_N, crypto.SCRYPT_R, crypto.SCRYPT_P)
    from node import node_dir

    monkeypatch.setattr(crypto, "SCRYPT_N", 2**16)  # a later Cairn raises its default
    monkeypatch.setattr(node_dir, "SCRYPT_N", 2**16)
    with NodeDir(nd.path).open_store() as store:
        assert store.meta_get("node_name") == "clinic"


READ_LOOP = """
import sys, time
from node.node_dir import NodeDir
with NodeDir(sys.argv[1]).open_store() as store:
    n, end = 0, time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        n += sum(1 for _ in store.records(batch=7))
print(n)
"""


def test_a_reader_in_another_process_survives_forget_and_its_vacuum(tmp_path):
    nd = NodeDir.init(tmp_path / "node", "clinic")
    rows = [{"conversation_id": f"c{i}", "user_id": f"user{i % 5}", "model_name": "m",
             "conversation": [{"role": "user", "content": f"q {i}"}, {"role": "assistant", "content": "a"}]}
            for i in range(300)]
    (tmp_path / "many.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with nd.open_store() as store:
        import_file(store, tmp_path / "many.jsonl", consent="CC-BY-4.0")
    reader = subprocess.Popen([sys.executable, "-c", READ_LOOP, str(nd.path), "2"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    import time
    time.sleep(0.8)
    with nd.open_store() as store:
        for u in ("user1", "user2", "user3"):
            assert store.forget(u)["conversations_deleted"] == 60
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0 and int(out) > 0, err[-1000:]
    with nd.open_store() as store:
        assert sum(1 for _ in store.records()) == 120


def test_a_short_passphrase_is_refused_at_init(tmp_path):
    res = CliRunner().invoke(cli, ["node", "init", str(tmp_path / "n"), "--name", "x", "--passphrase-env", "P"],
                             env={"P": "hunter2"})
    assert res.exit_code == 1 and "at least 12 characters" in res.output and not (tmp_path / "n").exists()


@pytest.mark.parametrize("how", ["emptied", "removed"])
def test_a_lost_store_is_named_not_blamed_on_the_key(tmp_path, how):
    nd = NodeDir.init(tmp_path / "node", "clinic")
    db = nd.path / "store.sqlite"
    db.write_bytes(b"") if how == "emptied" else db.unlink()
    with pytest.raises(NodeDirError, match="store.sqlite: the node store is (empty|missing)"):
        nd.open_store()
    assert not db.exists() or db.stat().st_size == 0  # nothing was created in its place
