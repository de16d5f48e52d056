"""`cairn node init/import/status/forget/contributor` end to end, as an operator runs them."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cairn.cli import cli
from node.node_dir import NodeDir

FIX = Path(__file__).resolve().parents[2] / "fixtures"
CANARY = "CANARY-91c2-albatross-ledger"


def run(*args, ok=True):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def status(d):
    return json.loads(run("node", "status", d, "--json").output)


def snapshot(d):
    with NodeDir(d).open_store() as store:  # encrypted (SQLCipher); opening rolls back a killed import's batches
        return {t: store.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("conversations", "feedback", "contributors")}


@pytest.fixture
def nd(tmp_path):
    d = tmp_path / "node"
    run("node", "init", d, "--name", "clinic")
    return d


EXPECTED = {  # dataset file -> (format, records, feedback by kind, contributors); counts from ../shared/data READMEs
    "pandalm-human-testset/testset-v1.shared.jsonl.gz": ("pandalm", 562, {"pairwise": 1686}, 3),
    "tulu1-human-eval/eval_annotations_tulu_1.shared.jsonl.gz": ("tulu", 582, {"pairwise": 582, "label": 1164}, 16),
}


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_shared_datasets_import_with_right_counts(nd, shared_data, rel):
    fmt, n, kinds, contributors = EXPECTED[rel]
    out = json.loads(run("node", "import", nd, shared_data / rel, "--json").output)
    assert out["format"] == fmt and out["records"] == n
    st = status(nd)
    assert st["conversations"] == n
    assert st["feedback"] == kinds
    assert st["contributors"]["total"] == contributors
    assert st["contributors"]["no_consent"] == contributors  # nobody consented yet
    again = json.loads(run("node", "import", nd, shared_data / rel, "--json").output)
    assert again["records"] == 0 and again["duplicates"] == n
    assert status(nd)["feedback"] == kinds  # importing twice adds nothing


def test_finegrained_needs_contributor(nd, shared_data):
    f = shared_data / "finegrained-rlhf-qa-feedback" / "dev_feedback.shared.jsonl.gz"
    res = run("node", "import", nd, f, ok=False)
    assert res.exit_code != 0 and "--contributor" in res.output
    out = json.loads(run("node", "import", nd, f, "--contributor", "crowd-1", "--json").output)
    assert out["records"] == 235
    st = status(nd)
    assert st["feedback"]["pairwise"] == 1410
    assert 0 < st["feedback"]["critique"] <= 235  # corrected answers that differ from the prediction


def test_oasst_imports(nd, shared_data):
    f = shared_data / "oasst-en-100-trees" / "en_100_tree.shared.jsonl.gz"
    run("node", "import", nd, f, "--contributor", "oasst-volunteers")
    st = status(nd)
    assert st["feedback"]["ranking"] == 90  # reply groups with >= 2 ranked siblings
    assert st["languages"] == {"en": st["conversations"]}


def test_bad_input_is_atomic_and_named(nd):
    good = FIX / "formats" / "openai_messages.jsonl"
    run("node", "import", nd, good)
    before = snapshot(nd)
    for bad in sorted((FIX / "bad").iterdir()):
        limit = ["--max-record-bytes", "4096"] if bad.name.startswith("oversized") else []
        res = run("node", "import", nd, bad, *limit, ok=False)
        assert res.exit_code != 0, bad
        assert bad.name in res.output, res.output  # the error names the file
        assert snapshot(nd) == before, f"{bad.name} changed the store"


def test_skip_invalid_imports_the_rest(nd):
    bad = FIX / "bad" / "malformed_json.jsonl"
    res = run("node", "import", nd, bad, "--skip-invalid", "--json")
    out = json.loads(res.output)
    assert out["skipped"] >= 1 and out["records"] >= 1
    assert all(bad.name in e and ":" in e for e in out["skipped_errors"])


def test_error_names_file_line_and_field(nd, tmp_path):
    f = tmp_path / "battles.jsonl"
    ok = json.loads((FIX / "formats" / "arena.json").read_text())[0]
    broken = dict(ok, winner="maybe")
    f.write_text(json.dumps(ok) + "\n" + json.dumps(broken) + "\n")
    res = run("node", "import", nd, f, "--format", "arena", ok=False)
    assert "battles.jsonl:2" in res.output and "winner" in res.output
    assert snapshot(nd)["conversations"] == 0  # atomic: the good first line did not land either


def test_canary_never_in_node_dir_and_gone_after_forget(nd, tmp_path):
    f = tmp_path / "chats.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"my diagnosis is {CANARY}"},
                      {"role": "assistant", "content": "I am sorry to hear that."}],
         "model": "m1", "user": "patient-7", "thumbs": "up"},
        {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}],
         "model": "m1", "user": "patient-8", "thumbs": "down"},
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    run("node", "import", nd, f, "--format", "openai")

    def node_bytes():
        return b"".join(p.read_bytes() for p in Path(nd).rglob("*") if p.is_file())

    assert CANARY.encode() not in node_bytes()
    who = json.loads(run("node", "contributor", nd, "--id", "patient-7", "--json").output)
    assert who["conversations_owned"] == 1 and who["feedback"] == {"thumbs": 1}
    run("node", "forget", nd, "--contributor", "patient-7")
    assert CANARY.encode() not in node_bytes()
    st = status(nd)
    assert st["contributors"]["withdrawn"] == 1 and st["conversations"] == 1
    run("node", "import", nd, f, "--format", "openai")  # re-import does not bring the withdrawn back
    assert status(nd)["conversations"] == 1
    gone = json.loads(run("node", "contributor", nd, "--id", "patient-7", "--json").output)
    assert gone["status"] == "withdrawn"


def test_consent_and_waiting_period_in_status(nd):
    run("node", "import", nd, FIX / "formats" / "openai_messages.jsonl", "--consent", "CC-BY-4.0")
    st = status(nd)
    assert st["contributors"]["waiting"] == st["contributors"]["total"] > 0  # 24 h waiting period
    run("node", "consent", nd, "--all", "--licence", "CC-BY-4.0", "--at", "2020-01-01T00:00:00Z", "--by", "registrar")
    st = status(nd)
    assert st["contributors"]["eligible"] == st["contributors"]["total"]


def test_killed_import_leaves_store_as_it_was(nd, tmp_path):
    run("node", "import", nd, FIX / "formats" / "openai_messages.jsonl")
    before = snapshot(nd)
    big = tmp_path / "big.jsonl"
    with open(big, "w") as fh:
        for i in range(60_000):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"question {i} " + "x" * 200},
                                              {"role": "assistant", "content": f"answer {i}"}],
                                 "model": "m", "user": f"u{i % 500}", "thumbs": "up"}) + "\n")
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "cairn.cli", "node", "import", str(nd), str(big), "--json"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wal = Path(nd) / "store.sqlite-wal"
    deadline = time.time() + 60
    while time.time() < deadline and not (wal.exists() and wal.stat().st_size > 2_000_000):
        time.sleep(0.05)
    assert proc.poll() is None, "the import finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert snapshot(nd) == before  # opening the store rolled the killed import back
    with NodeDir(nd).open_store() as store:
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert status(nd)["conversations"] == before["conversations"]


def test_init_refuses_existing_dir(nd):
    res = run("node", "init", nd, "--name", "again", ok=False)
    assert res.exit_code != 0 and "already" in res.output
