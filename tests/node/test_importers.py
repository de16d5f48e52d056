"""Importers: shared datasets parse with the counts their READMEs state, fixtures of the other
formats parse, detection picks the right format, and bad input gives errors naming file, line and
field. Expected numbers come from /work/shared/data/*/README.md, not from the importers."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest

from node.importers import FORMATS, FormatError, RecordError, detect_format, read_records
from node.schema import Record
from tests.conftest import FIXTURES

FMT_DIR = FIXTURES / "formats"
BAD_DIR = FIXTURES / "bad"

PANDALM = "pandalm-human-testset/testset-v1.shared.jsonl.gz"
TULU = "tulu1-human-eval/eval_annotations_tulu_1.shared.jsonl.gz"
FINEGRAINED = "finegrained-rlhf-qa-feedback/dev_feedback.shared.jsonl.gz"
OASST = "oasst-en-100-trees/en_100_tree.shared.jsonl.gz"


def parse_ok(path, **kw) -> list[Record]:
    out = []
    for item in read_records(path, **kw):
        assert not isinstance(item, RecordError), str(item)
        line, rec = item
        assert isinstance(line, int)
        out.append(rec)
    return out


def feedback(records, kind=None):
    return [f for r in records for f in r.feedback if kind is None or f.kind == kind]


def assert_unique_keys(records):
    keys = [(r.source, r.key) for r in records]
    assert len(keys) == len(set(keys))


# ---------------------------------------------------------------- shared datasets


def test_pandalm(shared_data):
    path = shared_data / PANDALM
    assert detect_format(path) == "pandalm"
    recs = parse_ok(path)
    assert len(recs) == 562
    assert_unique_keys(recs)
    pw = feedback(recs, "pairwise")
    assert len(pw) == 1686 and len(feedback(recs)) == 1686
    assert {f.contributor for f in pw} == {"annotator1", "annotator2", "annotator3"}
    assert len({r.prompt_text() for r in recs}) == 91
    pairs = Counter(frozenset(x.model for x in r.responses) for r in recs)
    assert len(pairs) == 10 and all(48 <= n <= 63 for n in pairs.values())
    assert {m for p in pairs for m in p} == {"bloom-7b", "cerebras-gpt-6.7B", "llama-7b", "opt-7b", "pythia-6.9b"}
    agree = sum(1 for r in recs if len({f.data["outcome"] for f in r.feedback}) == 1)
    assert agree == 487
    assert all(r.owner is None and len(r.responses) == 2 for r in recs)


def test_tulu(shared_data):
    path = shared_data / TULU
    assert detect_format(path) == "tulu"
    recs = parse_ok(path)
    assert len(recs) == 582
    assert_unique_keys(recs)
    assert len({f.contributor for f in feedback(recs)}) == 16
    assert not any(":" in f.contributor for f in feedback(recs))  # the annotator id itself, not "tulu:..."
    assert len({r.meta["instance_id"] for r in recs}) == 166
    assert len({r.meta["instance_index"] for r in recs}) == 498
    per_instance = Counter(r.meta["instance_index"] for r in recs)
    assert sum(1 for n in per_instance.values() if n >= 2) == 68
    pairs = Counter(frozenset(x.model for x in r.responses) for r in recs)
    assert pairs == {frozenset({"tulu_65B", "tulu_7B"}): 207, frozenset({"chatgpt", "tulu_65B"}): 206,
                     frozenset({"tulu_65B", "tulu_human_only_65B"}): 169}
    pw = feedback(recs, "pairwise")
    prefs = Counter((f.data["outcome"], f.data["strength"]) for f in pw)
    assert prefs == {("tie", 1.0): 199, ("a", 0.5): 116, ("b", 0.5): 98, ("a", 1.0): 91, ("b", 1.0): 78}
    acc = feedback(recs, "label")
    assert len(acc) == 2 * 582 and {f.data["name"] for f in acc} == {"acceptable"}
    assert {f.data["value"] for f in acc} == {True, False}
    stamps = sorted(f.timestamp for f in pw)
    assert stamps[0] >= "2023-05-18" and stamps[-1] < "2023-06-05"


def test_finegrained(shared_data):
    path = shared_data / FINEGRAINED
    assert detect_format(path) == "finegrained"
    with pytest.raises(FormatError, match="--contributor"):
        read_records(path)
    recs = parse_ok(path, contributor="asqa-worker")
    assert len(recs) == 235
    assert_unique_keys(recs)
    assert all(len(r.responses) == 4 for r in recs)
    pw = feedback(recs, "pairwise")
    assert len(pw) == 1410
    assert Counter(f.data["outcome"] for f in pw) == {"a": 739, "b": 492, "tie": 179}
    spans = [f for f in feedback(recs, "label") if f.data["name"] == "error_span"]
    assert Counter(f.data["value"] for f in spans) == {"Irrelevant": 442, "Unverifiable": 87, "Wrong-Grounding": 79,
                                                       "Redundant": 59, "Incoherent": 9}
    assert all(f.data["response"] == 0 and f.data["start"] <= f.data["end"] for f in spans)
    missing = [f for f in feedback(recs, "label") if f.data["name"] == "missing_info"]
    assert Counter(f.data["value"] for f in missing) == {"Missing-Minor-Auxiliary": 160,
                                                         "Missing-Major-Auxiliary": 143, "Missing-Answer": 125}
    crit = feedback(recs, "critique")
    assert 0 < len(crit) <= 235 and all(f.data["response"] == 0 and f.text for f in crit)
    assert {f.contributor for f in feedback(recs)} == {"asqa-worker"}


def test_oasst(shared_data):
    path = shared_data / OASST
    assert detect_format(path) == "oasst"
    with pytest.raises(FormatError, match="--contributor"):
        read_records(path)
    recs = parse_ok(path, contributor="oasst-volunteers")
    assert_unique_keys(recs)
    assert len({r.meta["tree_id"] for r in recs}) == 42
    # every assistant message is a reply to a prompter message: each is a response exactly once
    assert sum(len(r.responses) for r in recs) == 288
    rankings = feedback(recs, "ranking")
    assert len(rankings) == 90
    assert 180 <= sum(len(f.data["order"]) for f in rankings) <= 267
    synthetic = [r for r in recs if r.meta.get("synthetic")]
    assert len({r.meta["tree_id"] for r in synthetic}) == 1
    assert sum(len(r.responses) for r in synthetic) == 3  # 4 messages: 1 prompt, 3 replies
    assert all(x.model == "chip20b" for r in synthetic for x in r.responses)
    assert all(r.owner is None for r in synthetic)
    assert all(r.owner == "oasst-volunteers" for r in recs if not r.meta.get("synthetic"))
    assert {r.language for r in recs} == {"en"}
    for r in recs:  # prompts alternate user/assistant and end with the user's turn
        assert r.prompt[0].role == "user" and r.prompt[-1].role == "user"
        assert all(a.role != b.role for a, b in zip(r.prompt, r.prompt[1:]))


# ---------------------------------------------------------------- fixtures of the other formats

FIXTURE_FORMATS = {
    "hh_rlhf.jsonl": "hh-rlhf",
    "arena.json": "arena",
    "sharelm.jsonl": "sharelm",
    "helpsteer2.jsonl": "helpsteer2",
    "openai_messages.jsonl": "openai",
    "oasst_tree.jsonl": "oasst",
}
# the tools' and datasets' own formats of issue 14 (their counts: tests/node/test_import_formats.py)
FIXTURE_FORMATS.update({
    "chatgpt_export/conversations.json": "chatgpt",
    "openwebui_feedback.json": "openwebui",
    "arena_clean_battle.json": "arena-battles",
    "oasst_messages.jsonl": "oasst-messages",
    "argilla_v2.jsonl": "argilla",
    "argilla_v2_hub.jsonl": "argilla",
    "argilla_v1.jsonl": "argilla",
    "argilla_v1_records.jsonl": "argilla",
    "wildchat.jsonl": "wildchat",
    "lmsys_chat.jsonl": "lmsys-chat",
    "prism_conversations.jsonl": "prism",
    "prism_survey.jsonl": "prism",
    "helpsteer2_preference.jsonl": "helpsteer2-preference",
    "ultrafeedback.jsonl": "ultrafeedback",
    "trl_preference.jsonl": "trl",
    "trl_conversational.jsonl": "trl",
    "trl_implicit.jsonl": "trl",
})


@pytest.mark.parametrize("name,fmt", sorted(FIXTURE_FORMATS.items()))
def test_detection(name, fmt):
    assert detect_format(FMT_DIR / name) == fmt


def test_every_format_has_a_fixture_or_dataset():
    assert set(FIXTURE_FORMATS.values()) | {"pandalm", "tulu", "finegrained"} == set(FORMATS)


def test_hh_rlhf_fixture():
    recs = parse_ok(FMT_DIR / "hh_rlhf.jsonl", contributor="crowd-1")
    assert len(recs) == 4
    plain, multi, diverged, same = recs
    assert [m.role for m in plain.prompt] == ["user"] and len(plain.responses) == 2
    assert plain.responses[1].text == "Put it in the fridge."
    assert [m.role for m in multi.prompt] == ["user", "assistant", "user"]
    assert multi.responses[0].text.startswith("Dear Mr. Okafor")
    assert diverged.meta == {"diverged": True, "diverged_at_turn": 1} and len(diverged.prompt) == 1
    assert diverged.responses[0].text.startswith("Assistant: Eight.")
    assert same.meta.get("identical") and same.feedback[0].data["outcome"] == "tie"
    assert [f.data["outcome"] for r in recs[:3] for f in r.feedback] == ["a", "a", "a"]
    assert all(r.owner == "crowd-1" for r in recs)
    with pytest.raises(FormatError, match="--contributor"):
        read_records(FMT_DIR / "hh_rlhf.jsonl")


def test_arena_fixture():
    recs = parse_ok(FMT_DIR / "arena.json")
    assert [f.data["outcome"] for f in feedback(recs)] == ["a", "tie", "both_bad", "b"]
    assert {f.contributor for f in feedback(recs)} == {"arena_user_1042", "arena_user_77"}
    assert recs[0].responses[0].model == "vicuna-13b" and recs[0].responses[1].model == "koala-13b"
    assert recs[0].language == "en" and recs[2].language == "de"
    assert recs[0].timestamp.startswith("2023-04-24T")
    multi = recs[3]
    assert [m.role for m in multi.prompt] == ["user", "user"] and multi.meta["turns"] == 2
    assert multi.responses[0].text == "Ninety-seven."
    assert recs[0].key == "a1f3c2d4e5b64a7f8c9d0e1f2a3b4c5d"


def test_sharelm_fixture():
    recs = parse_ok(FMT_DIR / "sharelm.jsonl")
    assert len(recs) == 4
    kinds = [[(f.kind, f.data.get("value")) for f in r.feedback] for r in recs]
    assert kinds == [[("thumbs", 1)], [("thumbs", -1)], [("rating", 4.0)], []]
    assert {r.owner for r in recs} == {"u-7f3a", "u-19c2"}
    assert recs[1].meta["dropped_turns"] == 1 and recs[1].responses[0].model == "claude-3-haiku"
    assert recs[2].language == "fr" and all(r.timestamp for r in recs)


def test_helpsteer2_fixture():
    recs = parse_ok(FMT_DIR / "helpsteer2.jsonl", contributor="hs2")
    assert len(recs) == 3 and len(feedback(recs, "rating")) == 15
    assert {f.data["dimension"] for f in feedback(recs)} == {"helpfulness", "correctness", "coherence",
                                                              "complexity", "verbosity"}
    assert all(f.data["scale"] == [0, 4] for f in feedback(recs))
    assert [m.role for m in recs[2].prompt] == ["user", "assistant", "user"]
    assert recs[2].prompt[2].text == "Can you give an example with dolls?"


def test_openai_fixture():
    recs = parse_ok(FMT_DIR / "openai_messages.jsonl")
    assert [r.key for r in recs] == ["conv-0001", "conv-0002", "conv-0003"]
    assert Counter(f.kind for f in feedback(recs)) == {"thumbs": 2, "rating": 2, "label": 1, "critique": 2}
    assert recs[0].prompt[0].role == "system" and recs[0].responses[0].model == "gpt-4o-mini"
    assert recs[1].prompt[0].text == "What does this rash look like to you?"  # image part dropped
    assert {f.contributor for f in feedback(recs)} == {"member-17", "member-23"}


def test_oasst_fixture():
    recs = parse_ok(FMT_DIR / "oasst_tree.jsonl", contributor="op")
    assert len(recs) == 2
    top, follow = recs
    assert len(top.responses) == 3  # the deleted reply is left out
    assert [f.data["order"] for f in feedback([top], "ranking")] == [[0, 2, 1]]
    labels = {(f.data["response"], f.data["name"]): f.data["value"] for f in feedback([top], "label")}
    assert labels[(1, "thumbs_down_count")] == 5 and labels[(1, "red_flag_count")] == 1
    assert labels[(None, "thumbs_up_count")] == 4 and labels[(2, "quality")] == 0.75
    assert [m.role for m in follow.prompt] == ["user", "assistant", "user"]
    assert follow.feedback == []


def test_contributor_override_wins():
    recs = parse_ok(FMT_DIR / "arena.json", contributor="member-9")
    assert {f.contributor for f in feedback(recs)} == {"member-9"} and {r.owner for r in recs} == {"member-9"}


def test_keys_stable_across_reads_and_containers(tmp_path):
    first = [r.key for r in parse_ok(FMT_DIR / "hh_rlhf.jsonl", contributor="c")]
    assert first == [r.key for r in parse_ok(FMT_DIR / "hh_rlhf.jsonl", contributor="c")]
    lines = (FMT_DIR / "hh_rlhf.jsonl").read_text().splitlines()
    arr = tmp_path / "hh.json"
    arr.write_text(json.dumps([json.loads(x) for x in lines], indent=1))
    gz = tmp_path / "hh.jsonl.gz"
    gz.write_bytes(gzip.compress((FMT_DIR / "hh_rlhf.jsonl").read_bytes()))
    assert [r.key for r in parse_ok(arr, contributor="c")] == first
    assert [r.key for r in parse_ok(gz, contributor="c")] == first


# ---------------------------------------------------------------- bad input


def errors(path, **kw) -> list[RecordError]:
    return [x for x in read_records(path, **kw) if isinstance(x, RecordError)]


def test_malformed_json_names_the_line():
    (e,) = errors(BAD_DIR / "malformed_json.jsonl")
    assert e.line == 2 and "malformed JSON" in str(e)
    assert str(e).startswith(f"{BAD_DIR / 'malformed_json.jsonl'}:2:")


def test_missing_and_invalid_fields_name_line_and_field():
    path = BAD_DIR / "missing_field.jsonl"
    items = list(read_records(path))
    assert isinstance(items[0], tuple) and items[0][0] == 1  # the valid first line; line 2 is blank
    errs = [x for x in items if isinstance(x, RecordError)]
    assert [(e.line, e.field) for e in errs] == [(3, "preference"), (4, "completion_a")]
    assert str(errs[0]).startswith(f"{path}:3: field 'preference': expected one of ")
    assert str(errs[1]) == f"{path}:4: field 'completion_a': missing"


def test_bad_utf8_names_the_line():
    path = BAD_DIR / "bad_utf8.jsonl"
    items = list(read_records(path))
    assert isinstance(items[0], tuple)
    (e,) = [x for x in items if isinstance(x, RecordError)]
    assert e.line == 2 and "UTF-8" in str(e) and str(path) in str(e)


def test_oversized_line_is_an_error_and_reading_goes_on():
    path = BAD_DIR / "oversized.jsonl.gz"  # line 2 is 1.2 MB once decompressed
    items = list(read_records(path))
    assert [x[0] if isinstance(x, tuple) else ("err", x.line) for x in items] == [1, ("err", 2), 3]
    assert "too large" in str(items[1]) and f"{path}:2:" in str(items[1])
    assert not errors(path, max_record_bytes=2_000_000)


def test_undetectable_format_names_the_file():
    with pytest.raises(FormatError, match="undetectable.jsonl.*--format"):
        detect_format(BAD_DIR / "undetectable.jsonl")
    with pytest.raises(FormatError, match="undetectable.jsonl"):
        read_records(BAD_DIR / "undetectable.jsonl")


def test_truncated_gzip_is_a_fatal_error():
    items = list(read_records(BAD_DIR / "truncated.jsonl.gz", contributor="c"))
    assert all(isinstance(x, tuple) for x in items[:-1]) and len(items) >= 2
    e = items[-1]
    assert isinstance(e, RecordError) and e.fatal and "truncated" in str(e)
    assert str(e).startswith(f"{BAD_DIR / 'truncated.jsonl.gz'}:{e.line}:")


def test_unknown_format_and_wrong_format(tmp_path):
    with pytest.raises(FormatError, match="unknown format"):
        read_records(FMT_DIR / "sharelm.jsonl", fmt="nope")
    errs = errors(FMT_DIR / "sharelm.jsonl", fmt="tulu")  # forced wrong format: every line fails
    assert len(errs) == 4 and all(e.field for e in errs)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(FormatError, match="empty.jsonl"):
        detect_format(empty)


def test_missing_contributor_id_in_record(tmp_path):
    path = tmp_path / "t.jsonl"
    row = json.loads((BAD_DIR / "missing_field.jsonl").read_text().splitlines()[0])
    del row["evaluator"]
    path.write_text(json.dumps(row) + "\n")
    (e,) = errors(path)
    assert e.line == 1 and e.field == "evaluator" and "--contributor" in str(e)
    assert parse_ok(path, contributor="member-3")[0].feedback[0].contributor == "member-3"


def test_json_array_errors_name_the_record(tmp_path):
    path = tmp_path / "arena.json"
    battles = json.loads((FMT_DIR / "arena.json").read_text())
    battles[2]["winner"] = "model_c"
    path.write_text(json.dumps(battles))
    items = list(read_records(path))
    (e,) = [x for x in items if isinstance(x, RecordError)]
    assert e.line == 3 and e.field == "winner" and str(e).startswith(f"{path}: record 3: field 'winner'")  # 1-based
    broken = tmp_path / "broken.json"
    broken.write_text('[\n{"a": 1},\n{"a": \n')
    (e,) = errors(broken, fmt="arena")
    assert e.fatal and e.line == 4


def test_single_pretty_printed_object_and_pickling(tmp_path):
    import pickle

    row = json.loads((FMT_DIR / "openai_messages.jsonl").read_text().splitlines()[0])
    path = tmp_path / "one.json"
    path.write_text(json.dumps(row, indent=2))
    (rec,) = parse_ok(path)
    assert rec.key == "conv-0001"
    (e,) = errors(BAD_DIR / "missing_field.jsonl")[:1]
    e2 = pickle.loads(pickle.dumps(e))
    assert str(e2) == str(e) and e2.field == e.field


def test_errors_do_not_quote_record_text(tmp_path):
    path = tmp_path / "o.jsonl"
    secret = "CANARY-7d1e secret diagnosis"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": secret}], "user": "m",
                                "thumbs": secret}) + "\n")
    (e,) = errors(path)
    assert "CANARY" not in str(e) and e.field in ("messages", "thumbs")
