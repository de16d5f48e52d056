"""CSV, TSV and Parquet tables through one column mapping (`--map` / `--map-file`), as an operator runs them."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cairn.cli import cli
from node.importers import FormatError, RecordError, detect_format, read_records
from node.importers.table import parse_map

PAIRS = [  # question, ans1, ans2, winner, user
    ("What is 2+2?", "4", "5", "ans1", "u1"),
    ("Capital of France?", "Paris", "Lyon", "B", "u2"),
    ("Say hi", "Hello", "Yo", "tie", "u1"),
    ("Best sorting?", "Timsort", "Bogosort", "a", "u3"),
]
PAIR_MAP = "prompt=question,response_a=ans1,response_b=ans2,preference=winner,contributor=user"


def run(*args, ok=True):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def status(d):
    return json.loads(run("node", "status", d, "--json").output)


@pytest.fixture
def nd(tmp_path):
    d = tmp_path / "node"
    run("node", "init", d, "--name", "club")
    return d


def write_csv(path: Path, header, rows, sep=","):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=sep)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_csv_pairwise_with_map(nd, tmp_path):
    f = write_csv(tmp_path / "prefs.csv", ["question", "ans1", "ans2", "winner", "user"], PAIRS)
    assert detect_format(f) == "table"
    out = json.loads(run("node", "import", nd, f, "--map", PAIR_MAP, "--json").output)
    assert out["format"] == "table" and out["records"] == 4 and out["feedback"] == {"pairwise": 4}
    st = status(nd)
    assert st["conversations"] == 4 and st["contributors"]["total"] == 3
    recs = [x[1] for x in read_records(f, mapping=parse_map(PAIR_MAP))]
    assert [r.feedback[0].data["outcome"] for r in recs] == ["a", "b", "tie", "a"]  # column name "ans1" means a
    assert {r.feedback[0].contributor for r in recs} == {"u1", "u2", "u3"}
    assert recs[0].prompt[0].text == "What is 2+2?" and recs[0].responses[1].text == "5"
    again = json.loads(run("node", "import", nd, f, "--map", PAIR_MAP, "--json").output)
    assert again["records"] == 0 and again["duplicates"] == 4


def test_parquet_ratings_with_map_file(nd, tmp_path):
    f = tmp_path / "ratings.parquet"
    pq.write_table(pa.table({
        "q": ["a?", "b?", "c?"], "a": ["x", "y", "z"], "score": [7, 10, 3], "aspect": ["help", "help", "safety"],
        "who": ["m1", "m2", "m1"], "model": ["llama", "llama", "qwen"], "when": [1700000000, 1700000100, 1700000200],
        "lang": ["English", "fr", "de"], "good": ["yes", "no", "yes"],
    }), f)
    f.rename(tmp_path / "ratings.bin")  # detected by its magic bytes, not its name
    f = tmp_path / "ratings.bin"
    mapping = tmp_path / "map.toml"
    mapping.write_text('[columns]\nprompt = "q"\nresponse = "a"\nrating = "score"\ndimension = "aspect"\n'
                       'contributor = "who"\nmodel = "model"\ntimestamp = "when"\nlanguage = "lang"\nthumbs = "good"\n'
                       '[values.thumbs]\nyes = 1\nno = -1\n[options]\nscale = [1, 10]\n')
    assert detect_format(f) == "table"
    out = json.loads(run("node", "import", nd, f, "--map-file", mapping, "--json").output)
    assert out["records"] == 3 and out["feedback"] == {"rating": 3, "thumbs": 3}
    recs = [x[1] for x in read_records(f, mapping=parse_map(None, mapping))]
    r = recs[0].feedback
    assert r[0].data == {"response": 0, "dimension": "help", "value": 7.0, "scale": [1, 10]}
    assert [x.feedback[1].data["value"] for x in recs] == [1, -1, 1]
    assert recs[0].responses[0].model == "llama" and recs[0].language == "en" and recs[1].language == "fr"
    assert recs[0].timestamp.startswith("2023-11-14T")
    assert status(nd)["models"]


def test_tsv_and_contributor_override(nd, tmp_path):
    f = write_csv(tmp_path / "thumbs.tsv", ["prompt", "reply", "vote"], [("p1", "r1", "up"), ("p2", "r2", "down")], sep="\t")
    res = run("node", "import", nd, f, "--map", "prompt=prompt,response=reply,thumbs=vote", ok=False)
    assert res.exit_code == 1 and "--contributor" in res.output and "contributor=COLUMN" in res.output
    out = json.loads(run("node", "import", nd, f, "--map", "prompt=prompt,response=reply,thumbs=vote",
                         "--contributor", "member-4", "--json").output)
    assert out["records"] == 2 and out["feedback"] == {"thumbs": 2}


def test_missing_or_wrong_mapping_lists_the_columns(nd, tmp_path):
    f = write_csv(tmp_path / "prefs.csv", ["question", "ans1", "ans2", "winner", "user"], PAIRS)
    res = run("node", "import", nd, f, ok=False)
    assert res.exit_code == 1 and "prefs.csv" in res.output and "--map" in res.output
    assert all(repr(c) in res.output for c in ("question", "ans1", "ans2", "winner", "user"))
    res = run("node", "import", nd, f, "--map", PAIR_MAP.replace("ans2", "ans3"), ok=False)
    assert res.exit_code == 1 and "'ans3'" in res.output and "response_b" in res.output and "'ans2'" in res.output
    res = run("node", "import", nd, f, "--map", "prompt=question,answer=ans1", ok=False)
    assert res.exit_code == 1 and "unknown mapping target 'answer'" in res.output
    res = run("node", "import", nd, f, "--map", "prompt=question,response_a=ans1,preference=winner,contributor=user", ok=False)
    assert res.exit_code == 1 and "response_b" in res.output
    assert status(nd)["conversations"] == 0


def test_bad_cell_names_file_row_and_column(nd, tmp_path):
    rows = [*PAIRS[:2], ("Q", "x", "y", "maybe", "u9"), PAIRS[3]]
    f = write_csv(tmp_path / "prefs.csv", ["question", "ans1", "ans2", "winner", "user"], rows)
    res = run("node", "import", nd, f, "--map", PAIR_MAP, ok=False)
    assert res.exit_code == 1 and "prefs.csv: row 3: field 'winner'" in res.output
    assert status(nd)["conversations"] == 0  # atomic
    out = json.loads(run("node", "import", nd, f, "--map", PAIR_MAP, "--skip-invalid", "--json").output)
    assert out["records"] == 3 and out["skipped"] == 1
    errs = [x for x in read_records(f, mapping=parse_map(PAIR_MAP)) if isinstance(x, RecordError)]
    assert [(e.line, e.unit, e.field) for e in errs] == [(3, "row", "winner")]
    rating = write_csv(tmp_path / "r.csv", ["p", "r", "s", "u"], [("p", "r", "11", "u1")])
    (e,) = [x for x in read_records(rating, mapping=parse_map("prompt=p,response=r,rating=s,contributor=u"))]
    assert isinstance(e, RecordError) and e.field == "s" and "scale=LO..HI" in str(e)


def test_latin1_csv_names_the_byte_offset(nd, tmp_path):
    f = tmp_path / "l1.csv"
    f.write_bytes("question,answer,user\nCafé?,Oui,u1\n".encode("latin-1"))
    with pytest.raises(FormatError, match="byte 0xe9 at byte offset 24.*Latin-1"):
        list(read_records(f, mapping=parse_map("prompt=question,response=answer,contributor=user")))
    res = run("node", "import", nd, f, "--map", "prompt=question,response=answer,contributor=user", ok=False)
    assert res.exit_code == 1 and "byte offset 24" in res.output


def test_parquet_pairwise_typed_cells_and_gzip_csv(nd, tmp_path):
    import datetime as dt
    import gzip

    f = tmp_path / "battles.parquet"
    pq.write_table(pa.table({
        "prompt": ["p1", "p2", "p3"], "left": ["a1", "a2", "a3"], "right": ["b1", "b2", "b3"],
        "label": [0, 1, 0], "judge": [11, 12, 11], "model_left": ["m1", "m2", "m1"], "model_right": ["m2", "m1", "m3"],
        "at": pa.array([dt.datetime(2024, 5, 1, 12), dt.datetime(2024, 5, 2), None], pa.timestamp("s")),
        "lang": ["en", None, "de"],
    }), f)
    mapping = tmp_path / "m.toml"
    mapping.write_text('prompt = "prompt"\nresponse_a = "left"\nresponse_b = "right"\npreference = "label"\n'
                       'contributor = "judge"\nmodel_a = "model_left"\nmodel_b = "model_right"\ntimestamp = "at"\n'
                       'language = "lang"\n[values.preference]\n"0" = "a"\n"1" = "b"\n')
    out = json.loads(run("node", "import", nd, f, "--map-file", mapping, "--json").output)
    assert out["records"] == 3 and out["feedback"] == {"pairwise": 3}
    recs = [x[1] for x in read_records(f, mapping=parse_map(None, mapping))]
    assert [r.feedback[0].data["outcome"] for r in recs] == ["a", "b", "a"]
    assert {r.feedback[0].contributor for r in recs} == {"11", "12"}
    assert recs[0].timestamp.startswith("2024-05-01T12:00") and recs[2].timestamp is None
    assert [r.language for r in recs] == ["en", None, "de"] and recs[1].responses[0].model == "m2"
    gz = tmp_path / "prefs.csv.gz"
    gz.write_bytes(gzip.compress(write_csv(tmp_path / "p.csv", ["question", "ans1", "ans2", "winner", "user"],
                                           PAIRS).read_bytes()))
    out = json.loads(run("node", "import", nd, gz, "--map", PAIR_MAP, "--json").output)
    assert out["records"] == 4


def test_trl_parquet_chosen_rejected_message_lists(nd, tmp_path):
    f = tmp_path / "trl.parquet"
    conv = lambda q, a: [{"role": "user", "content": q}, {"role": "assistant", "content": a}]  # noqa: E731
    pq.write_table(pa.table({"chosen": [conv("q1", "good1"), conv("q2", "good2")],
                             "rejected": [conv("q1", "bad1"), conv("q2", "bad2")]}), f)
    out = json.loads(run("node", "import", nd, f, "--map", "chosen=chosen,rejected=rejected", "--contributor", "team",
                         "--format", "table", "--json").output)
    assert out["records"] == 2 and out["feedback"] == {"pairwise": 2}
    recs = [x[1] for x in read_records(f, fmt="table", contributor="team", mapping=parse_map("chosen=chosen,rejected=rejected"))]
    assert [(m.role, m.text) for m in recs[0].prompt] == [("user", "q1")]
    assert [r.text for r in recs[0].responses] == ["good1", "bad1"] and recs[0].feedback[0].data["outcome"] == "a"
    res = run("node", "import", nd, f, "--map", "chosen=chosen,response_b=rejected", "--contributor", "t", "--format", "table",
              ok=False)
    assert res.exit_code == 1 and "chosen and rejected together" in res.output


def test_jsonl_rows_with_a_mapping(nd, tmp_path):
    f = tmp_path / "votes.jsonl"
    f.write_text("".join(json.dumps({"q": q, "ans1": a, "ans2": b, "w": w, "u": u}) + "\n" for q, a, b, w, u in PAIRS))
    m = "prompt=q,response_a=ans1,response_b=ans2,preference=w,contributor=u"
    out = json.loads(run("node", "import", nd, f, "--map", m, "--json").output)
    assert out["format"] == "table" and out["records"] == 4 and out["feedback"] == {"pairwise": 4}
    res = run("node", "import", nd, f, "--map", m.replace("q,", "question,"), ok=False)
    assert res.exit_code == 1 and "'question'" in res.output and "columns found: 'q', 'ans1'" in res.output
    res = run("node", "import", nd, f, "--map", m, "--format", "openai", ok=False)
    assert res.exit_code == 1 and "--format table" in res.output
