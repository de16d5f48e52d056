"""Issue 15 item 8: a long import commits in bounded batches behind one logical, crash-safe import
(all-or-nothing to readers), other writers and readers get in between batches, and a busy store is a
plain error, never `database is locked`."""

import json
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from cairn.cli import cli
from node import import_batches, store_db
from node.consent import eligible_contributors, record_consent
from node.ingest import ImportFailed, import_file
from node.node_dir import NodeDir
from node.status import node_status
from node.store_db import StoreBusy

N = 60


def chats(path: Path, n: int = N, start: int = 0, bad_at: int | None = None) -> Path:
    lines = []
    for i in range(start, start + n):
        row = {"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}],
               "model": "m", "user": f"u{i % 7}", "thumbs": "up"}
        lines.append("{not json" if i == bad_at else json.dumps(row))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def nd(tmp_path):
    nd = NodeDir.init(tmp_path / "node", "clinic")
    with nd.open_store() as store:  # u0..u6 already known, with consent, so the import's consent is deferred
        import_file(store, chats(tmp_path / "seed.jsonl", 7, start=1000))
        record_consent(store, None, "CC-BY-4.0", "2020-01-01T00:00:00+00:00", "seed", by="test")
    return nd


def counts(nd):
    with nd.open_store() as store:
        return (len(list(store.records())), len(list(store.contributor_ids())), node_status(nd, store)["conversations"])


def test_batches_are_invisible_until_the_import_is_done(nd, tmp_path, monkeypatch):
    monkeypatch.setattr(import_batches, "BATCH_ROWS", 10)
    seen, waits = [], []
    batch = import_batches.Batches.batch

    @contextmanager
    def watching(self):
        with batch(self):
            yield
        # a batch was just committed: another process looks, and writes
        seen.append(counts(nd))
        with nd.open_store() as other:
            t0 = time.monotonic()
            with other.transaction():  # a writer (a ledger entry, a contribution) gets the lock now
                other.meta_set("probe", str(len(seen)))
            waits.append(time.monotonic() - t0)
            assert eligible_contributors(other, nd.policy()) == {f"u{i}" for i in range(7)}

    monkeypatch.setattr(import_batches.Batches, "batch", watching)
    with nd.open_store() as store:
        report = import_file(store, chats(tmp_path / "big.jsonl"), consent="CC0-1.0")
    assert report.records == N and len(seen) >= 5
    assert set(seen) == {(7, 7, 7)}  # readers saw none of the import until its final commit
    assert max(waits) < 1.0
    assert counts(nd) == (7 + N, 7, 7 + N)
    with nd.open_store() as store:  # the deferred consent landed with the final commit
        lic = {r[0] for r in store.conn.execute("SELECT consent_licence FROM contributors")}
    assert lic == {"CC0-1.0"}


def test_a_failure_after_committed_batches_leaves_nothing(nd, tmp_path, monkeypatch):
    monkeypatch.setattr(import_batches, "BATCH_ROWS", 10)
    before = counts(nd)
    with nd.open_store() as store:
        with pytest.raises(ImportFailed, match=r"bad.jsonl:46: malformed JSON"):
            import_file(store, chats(tmp_path / "bad.jsonl", start=100, bad_at=145))
        assert store.conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] == 7
        assert store.conn.execute("SELECT COUNT(*) FROM imports").fetchone()[0] == 1
        assert store.conn.execute("SELECT consent_licence FROM contributors LIMIT 1").fetchone()[0] == "CC-BY-4.0"
    assert counts(nd) == before
    with nd.open_store() as store:  # the same file, fixed, imports in full: nothing half-there blocks it
        assert import_file(store, chats(tmp_path / "ok.jsonl", start=100)).records == N


CRASH = """
import os, sys
from node import import_batches
from node.ingest import import_file
from node.node_dir import NodeDir
import_batches.BATCH_ROWS = 10
due, n = import_batches.Batches.due, [0]
def dying(self, prepared):
    n[0] += 1
    if n[0] == 35:
        os._exit(9)  # killed between batches: three batches committed, the import never finished
    return due(self, prepared)
import_batches.Batches.due = dying
with NodeDir(sys.argv[1]).open_store() as store:
    import_file(store, sys.argv[2], consent="CC0-1.0")
"""


def test_a_killed_import_is_rolled_back_when_the_store_opens(nd, tmp_path):
    before = counts(nd)
    src = chats(tmp_path / "big.jsonl", start=200)
    proc = subprocess.run([sys.executable, "-c", CRASH, str(nd.path), str(src)], capture_output=True, timeout=120)
    assert proc.returncode == 9, proc.stderr.decode()[-2000:]
    assert counts(nd) == before  # readers never saw it, and opening rolled it back
    with nd.open_store() as store:
        assert store.conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] == 7
        assert store.conn.execute("SELECT COUNT(*) FROM imports WHERE state='pending'").fetchone()[0] == 0
        assert import_file(store, src).records == N


def test_a_second_import_fails_plainly_while_one_runs(nd, tmp_path, monkeypatch):
    monkeypatch.setattr(store_db, "BUSY_TIMEOUT_S", 0.3)
    src = chats(tmp_path / "second.jsonl", start=300)
    with store_db.import_lock(nd.path / "store.sqlite"):  # an import is running
        t0 = time.monotonic()
        res = CliRunner().invoke(cli, ["node", "import", str(nd.path), str(src)])
        assert time.monotonic() - t0 < 5
    assert res.exit_code == 1
    assert "the node store is busy: an import is running (process" in res.output and "try again" in res.output
    assert "Traceback" not in res.output and "database is locked" not in res.output
    res = CliRunner().invoke(cli, ["node", "import", str(nd.path), str(src)])  # once it is done, it goes through
    assert res.exit_code == 0, res.output


def test_a_held_write_lock_is_a_bounded_plain_error(nd, monkeypatch):
    monkeypatch.setattr(store_db, "BUSY_TIMEOUT_S", 0.3)
    with nd.open_store() as holder, nd.open_store() as other:
        holder.conn.execute("BEGIN IMMEDIATE")
        t0 = time.monotonic()
        with pytest.raises(StoreBusy, match="the node store is busy"):
            with other.transaction():
                pass
        assert time.monotonic() - t0 < 3
        assert len(list(other.records())) == 7  # reads go on while the write lock is held
        holder.conn.execute("ROLLBACK")


def test_training_reads_during_a_long_import(nd, tmp_path, monkeypatch):
    monkeypatch.setattr(import_batches, "BATCH_ROWS", 5)
    started, done, result = threading.Event(), threading.Event(), {}
    due = import_batches.Batches.due

    def slow(self, prepared):
        started.set()
        time.sleep(0.005)  # parsing and redacting a long file
        return due(self, prepared)

    def read():
        started.wait(10)
        t0 = time.monotonic()
        with nd.open_store() as store:
            result["n"] = len(list(store.records(contributors=eligible_contributors(store, nd.policy()))))
        result["s"] = time.monotonic() - t0
        done.set()

    monkeypatch.setattr(import_batches.Batches, "due", slow)
    reader = threading.Thread(target=read)
    reader.start()
    with nd.open_store() as store:
        import_file(store, chats(tmp_path / "long.jsonl", n=200, start=400))
    reader.join(10)
    assert done.is_set() and result["n"] == 7 and result["s"] < 2.0


IMPORT = """
import sys
import node.import_batches
from node.ingest import import_file
from node.node_dir import NodeDir
node.import_batches.BATCH_ROWS = 500  # several batches: writers get their turn between them
with NodeDir(sys.argv[1]).open_store() as store:
    print(import_file(store, sys.argv[2]).records, flush=True)
"""


def test_a_real_import_in_another_process_leaves_writers_short_waits(nd, tmp_path):
    n = 6000  # import runs at ~10,000 rows/s: long enough for a few writers' turns on a busy machine too
    src = chats(tmp_path / "long.jsonl", n=n, start=5000)
    proc = subprocess.Popen([sys.executable, "-c", IMPORT, str(nd.path), str(src)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    lock = store_db.lock_path(nd.path / "store.sqlite")
    deadline = time.monotonic() + 60
    while store_db.lock_holder(nd.path / "store.sqlite") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lock.exists()
    waits = []
    with nd.open_store() as store:
        while proc.poll() is None and len(waits) < 40:  # a round's ledger entries, a member's contribution
            t0 = time.monotonic()
            with store.transaction():
                store.meta_set("heartbeat", str(len(waits)))
            waits.append(time.monotonic() - t0)
            assert len(list(store.records())) in (7, 7 + n)  # readers see all of the import or none of it
            time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert out.decode().strip() == str(n) and len(waits) >= 3, waits
    assert max(waits) < 3.0, waits
    assert counts(nd)[0] == 7 + n


def test_a_raw_locked_error_reaching_the_cli_is_one_plain_line():
    import click

    from cairn.errors import friendly

    @friendly
    def command():
        raise store_db.OperationalError("database is locked")

    with pytest.raises(click.ClickException, match="the node store is busy") as e:
        command()
    assert "database is locked" not in e.value.message


def _after_first_batch(monkeypatch, action):
    monkeypatch.setattr(import_batches, "BATCH_ROWS", 10)
    batch, done = import_batches.Batches.batch, []

    @contextmanager
    def hook(self):
        with batch(self):
            yield
        if not done:
            done.append(action())

    monkeypatch.setattr(import_batches.Batches, "batch", hook)
    return done


def test_a_contributors_counts_leave_out_a_pending_import(nd, tmp_path, monkeypatch):
    from node.contributors import describe

    def look():
        with nd.open_store() as other:
            return describe(other, nd.policy(), "u1")

    with nd.open_store() as store:
        before = describe(store, nd.policy(), "u1")
    seen = _after_first_batch(monkeypatch, look)
    with nd.open_store() as store:
        import_file(store, chats(tmp_path / "big.jsonl"), consent="CC0-1.0")
        after = describe(store, nd.policy(), "u1")
    strip = ("status", "consent")
    assert {k: v for k, v in seen[0].items() if k not in strip} == {k: v for k, v in before.items() if k not in strip}
    assert after["conversations_owned"] > before["conversations_owned"]


def test_forget_during_a_pending_import_keeps_the_member_forgotten(nd, tmp_path, monkeypatch):
    def forget():
        with nd.open_store() as other:
            return other.forget("u1")

    seen = _after_first_batch(monkeypatch, forget)
    with nd.open_store() as store:
        report = import_file(store, chats(tmp_path / "big.jsonl"), consent="CC0-1.0")
        assert seen and report.withdrawn == 7  # u1's rows after the withdrawal were dropped, not stored
        assert all(r.owner != "u1" and all(f.contributor != "u1" for f in r.feedback) for r in store.records())
        assert "u1" not in set(store.contributor_ids()) and store.is_withdrawn("u1")
        assert len(list(store.records())) == 7 + N - 1 - 9


def test_consent_recorded_during_an_import_is_not_overwritten_by_its_final_commit(nd, tmp_path, monkeypatch):
    def reconsent():
        with nd.open_store() as other:  # the operator records u1's newer consent while the import runs
            return record_consent(other, ["u1"], "CC-BY-SA-4.0", None, "operator", by="test")

    seen = _after_first_batch(monkeypatch, reconsent)
    with nd.open_store() as store:
        import_file(store, chats(tmp_path / "big.jsonl"), consent="CC0-1.0")
        lic = dict(store.conn.execute("SELECT id, consent_licence FROM contributors").fetchall())
    assert seen and lic.pop("u1") == "CC-BY-SA-4.0" and set(lic.values()) == {"CC0-1.0"}


def test_a_contributor_of_a_pending_import_cannot_be_given_consent_yet(nd, tmp_path, monkeypatch):
    from node.consent import ConsentError

    src = chats(tmp_path / "fresh.jsonl")
    src.write_text(src.read_text().replace('"user": "u', '"user": "fresh'))

    def consent_fresh():
        with nd.open_store() as other, pytest.raises(ConsentError, match="no contributor 'fresh1'"):
            record_consent(other, ["fresh1"], "CC-BY-4.0", None, "operator", by="test")
        return True

    seen = _after_first_batch(monkeypatch, consent_fresh)
    with nd.open_store() as store:
        import_file(store, src)
        assert seen and "fresh1" in set(store.contributor_ids())


KILL_AT = """
import os, sys
from node import import_batches
from node.ingest import import_file
from node.node_dir import NodeDir
import_batches.BATCH_ROWS = 10
where = sys.argv[3]
batch, finish, n = import_batches.Batches.batch, import_batches._finish, [0]
def dying_batch(self):
    if where == "before-first-batch" or (where == "after-last-batch" and n[0] == 5):
        os._exit(9)
    n[0] += 1
    return batch(self)
def dying_finish(store, import_id):
    finish(store, import_id)
    os._exit(9)  # the final commit's writes made, not committed
import_batches.Batches.batch = dying_batch
import_batches._finish = dying_finish if where == "inside-final" else finish
with NodeDir(sys.argv[1]).open_store() as store:
    import_file(store, sys.argv[2], consent="CC0-1.0")
"""


@pytest.mark.parametrize("where", ["before-first-batch", "after-last-batch", "inside-final"])
def test_a_kill_at_each_boundary_leaves_the_store_as_it_was(nd, tmp_path, where):
    before = counts(nd)
    with nd.open_store() as store:
        lic = store.conn.execute("SELECT id, consent_licence FROM contributors ORDER BY id").fetchall()
    src = chats(tmp_path / "big.jsonl", start=200)
    proc = subprocess.run([sys.executable, "-c", KILL_AT, str(nd.path), str(src), where], capture_output=True, timeout=120)
    assert proc.returncode == 9, proc.stderr.decode()[-2000:]
    assert counts(nd) == before
    with nd.open_store() as store:
        assert store.conn.execute("SELECT id, consent_licence FROM contributors ORDER BY id").fetchall() == lic
        assert store.conn.execute("SELECT COUNT(*) FROM imports").fetchone()[0] == 1  # only the seed's
        assert import_file(store, src).records == N  # and the file imports again, whole
