"""Errors that name the real cause (issue 14): each misleading case of the issue gets the error
that says what is wrong, with exit code 1, as text and with --json; and `import --dry-run`."""

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cairn.cli import cli
from node.importers import FormatError, RecordError, detect_format, read_records

FIX = Path(__file__).resolve().parents[2] / "fixtures"
GOOD = FIX / "formats" / "openai_messages.jsonl"


def run(*args, ok=True):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def conversations(d):
    return json.loads(run("node", "status", d, "--json").output)["conversations"]


@pytest.fixture
def nd(tmp_path):
    d = tmp_path / "node"
    run("node", "init", d, "--name", "clinic")
    return d


def openai_row(i=0, **kw):
    row = {"id": f"c{i}", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
           "model": "m", "user": "u1", "thumbs": "up"}
    row.update(kw)
    return row


def cases(tmp_path: Path) -> dict:
    """file -> (what the error must say): the misleading cases of issue 14."""
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(json.dumps(openai_row()).encode() + b"\n" + b'{"id": "c1", "note": "caf\xe9"}\n')
    latin1_only = tmp_path / "latin1_only.jsonl"
    latin1_only.write_bytes(b'{"note": "d\xe9j\xe0 vu"}\n')
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_bytes((json.dumps(openai_row()) + "\n").encode("utf-16"))
    utf16_nobom = tmp_path / "utf16be.jsonl"
    utf16_nobom.write_bytes((json.dumps(openai_row()) + "\n").encode("utf-16-be"))
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps(openai_row(messages=[{"role": "user", "content": "x" * 2_000_000},
                                                   {"role": "assistant", "content": "y"}])) + "\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n\n  \n")
    near = tmp_path / "near.jsonl"  # HelpSteer2-like, with a misspelt attribute and a string rating
    near.write_text(json.dumps({"prompt": "p", "response": "r", "helpfulnes": 3, "correctness": "high"}) + "\n")
    return {
        latin1_only: ["byte 0xe9 at byte offset 11", "Latin-1"],
        utf16: ["UTF-16-LE", "byte order mark FF FE at byte offset 0"],
        utf16_nobom: ["UTF-16-BE", "without a byte order mark"],
        big: ["record too large", "--max-record-bytes"],
        tmp_path: ["a directory, not a file"],
        empty: ["empty"],
        blank: ["holds no records"],
        near: ["nearest: helpsteer2 (field 'correctness': expected", "got str"],
    }


def test_misleading_cases_name_the_real_cause(nd, tmp_path):
    for path, says in cases(tmp_path).items():
        res = run("node", "import", nd, path, ok=False)
        assert res.exit_code == 1, (path, res.output)
        assert "no readable JSON records" not in res.output
        for s in says:
            assert s in res.output, (path, s, res.output)
        out = run("node", "import", nd, path, "--json", ok=False)
        assert out.exit_code == 1
        err = json.loads(out.output)  # --json prints the error as JSON, nothing else
        assert all(s in err["error"] for s in says), (path, err)
    assert conversations(nd) == 0


def test_latin1_line_names_line_and_byte_offset(tmp_path):
    path = tmp_path / "l.jsonl"
    first = json.dumps(openai_row()).encode()
    path.write_bytes(first + b"\n" + b'{"a": "caf\xe9"}\n')
    (e,) = [x for x in read_records(path, fmt="openai") if isinstance(x, RecordError)]
    assert e.line == 2 and f"byte offset {len(first) + 1 + 10}" in str(e) and "Latin-1" in str(e)


def test_everything_invalid_with_skip_invalid_fails(nd, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(openai_row(i, thumbs="sideways")) + "\n" for i in range(3)))
    res = run("node", "import", nd, bad, "--format", "openai", "--skip-invalid", ok=False)
    assert res.exit_code == 1 and "every record was invalid (3 skipped)" in res.output and "bad.jsonl:1" in res.output
    out = run("node", "import", nd, bad, "--format", "openai", "--skip-invalid", "--json", ok=False)
    err = json.loads(out.output)
    assert out.exit_code == 1 and [(x["number"], x["field"]) for x in err["errors"]] == [(1, "thumbs"), (2, "thumbs"), (3, "thumbs")]
    assert conversations(nd) == 0
    # duplicates only is not a failure: the file's records are already stored
    run("node", "import", nd, GOOD)
    again = json.loads(run("node", "import", nd, GOOD, "--json").output)
    assert again["records"] == 0 and again["duplicates"] > 0


def test_json_errors_are_json_with_file_record_and_field(nd, tmp_path):
    f = tmp_path / "two.jsonl"
    f.write_text(json.dumps(openai_row(0)) + "\n" + json.dumps(openai_row(1, thumbs="sideways")) + "\n")
    out = run("node", "import", nd, f, "--json", ok=False)
    err = json.loads(out.output)
    assert out.exit_code == 1 and err["type"] == "ImportFailed"
    assert err["errors"] == [{"file": str(f), "unit": "line", "number": 2, "field": "thumbs",
                              "message": err["errors"][0]["message"]}]
    missing = run("node", "import", nd, tmp_path / "nope.jsonl", "--json", ok=False)
    assert missing.exit_code == 1 and "no such file" in json.loads(missing.output)["error"]


def test_record_numbers_are_one_based_for_arrays_and_lines(tmp_path):
    rows = [openai_row(0), openai_row(1, thumbs="sideways"), openai_row(2)]
    arr, lines, gz = tmp_path / "a.json", tmp_path / "l.jsonl", tmp_path / "g.jsonl.gz"
    arr.write_text(json.dumps(rows, indent=2))
    lines.write_text("".join(json.dumps(r) + "\n" for r in rows))
    gz.write_bytes(gzip.compress(lines.read_bytes()))
    for path, unit in ((arr, "record"), (lines, "line"), (gz, "line")):
        items = list(read_records(path, fmt="openai"))
        assert [x[0] if isinstance(x, tuple) else ("err", x.line) for x in items] == [1, ("err", 2), 3]
        assert items[1].unit == unit
    one = tmp_path / "one.json"
    one.write_text(json.dumps(openai_row(), indent=2))
    assert next(iter(read_records(one)))[0] == 1


def test_detection_errors_for_the_api(tmp_path):
    with pytest.raises(FormatError, match="a directory, not a file"):
        detect_format(tmp_path)
    with pytest.raises(FormatError, match="a directory, not a file"):
        read_records(tmp_path)
    keys = tmp_path / "k.jsonl"
    keys.write_text(json.dumps({"winner": "model_a", "conversation_a": [], "model_a": "m1", "model_b": "m2"}) + "\n")
    with pytest.raises(FormatError, match=r"nearest: .*arena \(field 'conversation_a': no assistant reply\)"):
        detect_format(keys)


def test_dry_run_validates_and_counts_without_storing(nd, tmp_path):
    out = json.loads(run("node", "import", nd, GOOD, "--dry-run", "--json").output)
    real_count = sum(1 for line in GOOD.read_text().splitlines() if line.strip())
    assert out["dry_run"] is True and out["records"] == real_count and out["feedback"]
    assert conversations(nd) == 0
    st = json.loads(run("node", "status", nd, "--json").output)
    assert st["contributors"]["total"] == 0 and not st["redactions"]
    text = run("node", "import", nd, GOOD, "--dry-run").output
    assert "dry run: nothing stored" in text
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(openai_row(0, thumbs="sideways")) + "\n")
    res = run("node", "import", nd, bad, "--format", "openai", "--dry-run", ok=False)
    assert res.exit_code == 1 and "bad.jsonl:1" in res.output
    run("node", "import", nd, GOOD)
    assert conversations(nd) == real_count  # the dry run left nothing that makes the real import a duplicate
