"""The tools' and datasets' own formats (issue 14 deliverable 1): each fixture, written by the
project from the format's published schema, is detected, parses with the counts its content implies
(records, feedback by kind, contributors), keeps the contributor ids the format carries, and
imports end to end. Expected numbers are counted by hand from the fixture files."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
from click.testing import CliRunner

from cairn.cli import cli
from node.importers import FormatError, RecordError, detect_format, read_records
from node.schema import Record
from tests.conftest import FIXTURES

FMT = FIXTURES / "formats"


def parse(path, **kw) -> list[Record]:
    out = []
    for item in read_records(path, **kw):
        assert not isinstance(item, RecordError), str(item)
        out.append(item[1])
    return out


def kinds(recs) -> dict:
    return dict(Counter(f.kind for r in recs for f in r.feedback))


def people(recs) -> set[str]:
    """Contributor ids as the file wrote them (whatever namespace the importer adds in front)."""
    return {c.split(":")[-1] for r in recs for c in r.contributors()}


# file -> (format, contributor override, records, feedback by kind, contributor ids from the file)
CASES = {
    "chatgpt_export/conversations.json": ("chatgpt", None, 3, {"thumbs": 2, "label": 2, "critique": 1}, {"user-Qx7kLm2"}),
    "openwebui_feedback.json": ("openwebui", None, 5, {"thumbs": 3, "rating": 2, "label": 4, "critique": 1, "pairwise": 2},
                                {"8a1e7c3d-aaaa-4bbb-8ccc-000000000001", "8a1e7c3d-aaaa-4bbb-8ccc-000000000002"}),
    "arena_clean_battle.json": ("arena-battles", None, 5, {"pairwise": 5},
                                {"arena_user_8c2e", "arena_user_41aa", "arena_user_0f31"}),
    "oasst_messages.jsonl": ("oasst-messages", None, 3, {"ranking": 2, "label": 7}, {"u-ada", "u-eve"}),
    "argilla_v2.jsonl": ("argilla", None, 2, {"ranking": 2, "rating": 1, "label": 1, "critique": 1},
                         {"5b7e1c2a-0000-4000-8000-0000000000a1", "5b7e1c2a-0000-4000-8000-0000000000a2"}),
    "argilla_v2_hub.jsonl": ("argilla", None, 2, {"label": 3}, {"7e1d-u1", "7e1d-u2"}),
    "argilla_v1.jsonl": ("argilla", None, 2, {"rating": 2}, {"0f3a9c1e-v1-0001", "0f3a9c1e-v1-0002"}),
    "argilla_v1_records.jsonl": ("argilla", None, 1, {"ranking": 1, "label": 1}, {"0f3a9c1e-v1-0001"}),
    "wildchat.jsonl": ("wildchat", None, 3, {}, {"2f9d3c0e5b1a4f6e8d7c9b0a1e2f3d4c5b6a7980f1e2d3c4b5a69788f7e6d5c4",
                                                "9a8b7c6d5e4f30211203f4e5d6c7b8a9f0e1d2c3b4a5968778695a4b3c2d1e0f"}),
    "lmsys_chat.jsonl": ("lmsys-chat", "op", 2, {}, {"op"}),
    "prism_conversations.jsonl": ("prism", None, 3, {"rating": 20, "critique": 1}, {"user1001", "user1002"}),
    "prism_survey.jsonl": ("prism", None, 2, {"rating": 14, "critique": 3}, {"user1001", "user1002"}),
    "helpsteer2_preference.jsonl": ("helpsteer2-preference", "op", 4, {"pairwise": 4, "critique": 3}, {"op"}),
    "ultrafeedback.jsonl": ("ultrafeedback", "op", 2, {"rating": 26, "critique": 5}, {"op"}),
    "trl_preference.jsonl": ("trl", "op", 2, {"pairwise": 2}, {"op"}),
    "trl_conversational.jsonl": ("trl", "op", 2, {"pairwise": 2}, {"op"}),
    "trl_implicit.jsonl": ("trl", "op", 2, {"pairwise": 2}, {"op"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_detected_and_counted(name):
    fmt, who, n, fb, ids = CASES[name]
    assert detect_format(FMT / name) == fmt
    recs = parse(FMT / name, contributor=who)
    assert len(recs) == n and len({r.key for r in recs}) == n
    assert kinds(recs) == fb
    assert people(recs) == ids


def test_every_new_format_has_a_fixture():
    from node.importers import FORMATS
    covered = {c[0] for c in CASES.values()}
    new = {"chatgpt", "openwebui", "arena-battles", "oasst-messages", "argilla", "wildchat", "lmsys-chat", "prism",
           "helpsteer2-preference", "ultrafeedback", "trl"}
    assert new <= covered and new <= set(FORMATS)


@pytest.mark.parametrize("name", ["arena_clean_battle.json", "openwebui_feedback.json", "chatgpt_export/conversations.json"])
def test_json_array_and_jsonl_forms_give_the_same_records(tmp_path, name):
    src = FMT / name
    dst = tmp_path / name.replace("/", "_").replace(".json", ".jsonl")
    if name.startswith("chatgpt"):  # keep the companion files beside it
        dst = tmp_path / "conversations.jsonl"
        for f in ("message_feedback.json", "user.json"):
            shutil.copy(src.parent / f, tmp_path / f)
    dst.write_text("".join(json.dumps(o) + "\n" for o in json.loads(src.read_text())))
    a, b = parse(src), parse(dst)
    assert [(r.key, kinds([r])) for r in a] == [(r.key, kinds([r])) for r in b]


# ---------------------------------------------------------------- format specifics


def test_chatgpt_follows_current_node_and_merges_message_feedback(tmp_path):
    recs = parse(FMT / "chatgpt_export/conversations.json")
    final = next(r for r in recs if r.key == "6650a1b2-0000-4000-8000-00000000000a")
    # the branch not on the current path ("Use 50 g") is left out; tool call and tool output too
    assert [m.role for m in final.prompt] == ["user", "assistant", "user"]
    assert final.responses[0].text.startswith("Feed it 1:1:1") and final.responses[0].text.endswith("first.")
    assert final.responses[0].model == "gpt-4o"
    assert [(f.kind, f.data.get("value")) for f in final.feedback][:3] == [("thumbs", -1), ("label", "not-helpful"),
                                                                           ("label", "incomplete")]
    early = next(r for r in recs if r.key.endswith("/a-1"))
    assert [(f.kind, f.data["value"]) for f in early.feedback] == [("thumbs", 1)]
    image = next(r for r in recs if r.key.endswith("b"))
    assert image.prompt[0].text == "What plant is this?" and image.meta == {"dropped_turns": 1}
    assert len({r.owner for r in recs}) == 1 and all(r.owner for r in recs)
    # without user.json, message feedback or --contributor, nobody is named: --contributor is asked for
    lone = tmp_path / "conversations.json"
    shutil.copy(FMT / "chatgpt_export/conversations.json", lone)
    with pytest.raises(FormatError, match="--contributor"):
        read_records(lone)
    assert {r.owner for r in parse(lone, contributor="member-4")} == {"member-4"}
    shutil.copy(FMT / "chatgpt_export/message_feedback.json", tmp_path)  # its user_id names the person
    assert {r.owner.split(":")[-1] for r in parse(lone)} == {"user-Qx7kLm2"}


def test_openwebui_thread_arena_and_missing_snapshot():
    recs = parse(FMT / "openwebui_feedback.json")
    first = recs[0]
    assert [m.text for m in first.prompt][-1] == "And at 4000 m?" and first.responses[0].text == "About 87 °C."
    assert first.owner and all(f.contributor == first.owner for f in first.feedback)
    vs = [r for r in recs if "/vs/" in r.key]
    assert [(r.responses[0].model, r.responses[1].model, r.feedback[0].data["outcome"]) for r in vs] == [
        ("qwen2.5:7b", "llama3.1:8b", "b"), ("qwen2.5:7b", "mistral:7b", "b")]
    assert all(r.meta["no_text"] and r.owner is None for r in vs)
    bare = recs[-1]
    assert bare.meta == {"no_text": True} and bare.responses[0].model == "mistral:7b"


def test_clean_battle_holds_outcomes_between_model_names_without_text():
    recs = parse(FMT / "arena_clean_battle.json")
    assert [f.data["outcome"] for r in recs for f in r.feedback] == ["a", "b", "tie", "both_bad", "a"]
    assert all(r.prompt == [] and [x.text for x in r.responses] == ["", ""] and r.owner is None for r in recs)
    assert recs[0].responses[0].model == "gpt-4-0613" and recs[0].language == "en" and recs[2].language == "de"
    from node.pairs import PairStats, pairs_from_records
    stats = PairStats()
    assert pairs_from_records(recs, stats=stats) == []  # nothing to train on: identical (empty) texts
    assert stats.degenerate > 0
    from node.queries import battle_rows  # ... but leaderboards count every outcome between the two names
    rows = battle_rows(recs)
    assert len(rows) == 5 and ("claude-2.1", "gpt-4-0613", "b") in [r[1] for r in rows]


def test_arena_tulu_and_battles_stay_distinct():
    assert detect_format(FMT / "arena.json") == "arena"


def test_oasst_rows_rebuilt_into_trees_in_any_order(tmp_path):
    rows = (FMT / "oasst_messages.jsonl").read_text().splitlines()
    shuffled = tmp_path / "m.jsonl"
    shuffled.write_text("\n".join(rows[::-1]) + "\n")
    a = sorted((r.key, len(r.responses), kinds([r])) for r in parse(FMT / "oasst_messages.jsonl"))
    assert a == sorted((r.key, len(r.responses), kinds([r])) for r in parse(shuffled))
    recs = parse(FMT / "oasst_messages.jsonl")
    top = next(r for r in recs if len(r.responses) == 3)  # the deleted fourth reply is left out
    assert next(f for f in top.feedback if f.kind == "ranking").data["order"] == [0, 2, 1]
    labels = {(f.data["response"], f.data["name"]): f.data["value"] for f in top.feedback if f.kind == "label"}
    assert labels[(0, "thumbs_up_count")] == 5 and labels[(1, "red_flag_count")] == 1
    assert labels[(None, "quality")] == 0.8 and labels[(None, "thumbs_up_count")] == 3
    # consensus feedback counts in the prompt author's unit: the prompter owns the record and its feedback
    assert {f.contributor.split(":")[-1] for f in top.feedback} == {"u-ada"} and top.owner.split(":")[-1] == "u-ada"
    follow = next(r for r in recs if len(r.prompt) == 3)
    assert follow.feedback == [] and follow.owner.split(":")[-1] == "u-ada"
    with_op = parse(FMT / "oasst_messages.jsonl", contributor="op")
    assert {c for r in with_op for c in r.contributors()} == {"op"}
    # a sample without A1: its follow-up F1 starts a partial tree, the root keeps its other replies
    sample = tmp_path / "o.jsonl"
    sample.write_text("\n".join(rows[:1] + rows[2:]) + "\n")
    part = parse(sample)
    assert sorted(len(r.responses) for r in part) == [1, 2, 2]
    (p,) = [r for r in part if r.meta.get("partial")]
    assert [m.text for m in p.prompt] == ["Is it ever a sign of stress?"] and p.owner.split(":")[-1] == "u-ada"
    # a malformed row is an error at its own line
    broken = tmp_path / "b.jsonl"
    bad = json.loads(rows[2])
    bad["role"] = "moderator"
    broken.write_text("\n".join(rows[:2] + [json.dumps(bad)] + rows[3:]) + "\n")
    errs = [x for x in read_records(broken) if isinstance(x, RecordError)]
    assert [(e.line, e.field) for e in errs] == [(3, "role")]


def test_oasst_tree_export_with_user_ids_needs_no_contributor(tmp_path):
    tree = json.loads((FMT / "oasst_tree.jsonl").read_text().splitlines()[0])
    with pytest.raises(FormatError, match="--contributor"):
        read_records(FMT / "oasst_tree.jsonl")

    def stamp(msg, n=[0]):
        n[0] += 1
        msg["user_id"] = f"vol-{n[0] % 3}"
        for r in msg.get("replies", []):
            stamp(r)
    stamp(tree["prompt"])
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps(tree) + "\n")
    recs = parse(p)
    assert recs and all(r.owner and r.owner.startswith("vol-") for r in recs)
    assert all(f.contributor == r.owner for r in recs for f in r.feedback)


def test_forgetting_an_oasst_prompter_deletes_their_trees(node_dir, tmp_path):
    def row(mid, parent, user, role, tree, rank=None):
        return {"message_id": mid, "parent_id": parent, "user_id": user, "text": f"text {mid}", "role": role,
                "lang": "en", "deleted": False, "rank": rank, "synthetic": False, "message_tree_id": tree,
                "emojis": {"name": ["+1"], "count": [2]}, "labels": {"name": ["quality"], "value": [0.8], "count": [3]}}
    rows = [row("p1", None, "u-prompter", "prompter", "t-1"), row("a1", "p1", "u-asst1", "assistant", "t-1", 0),
            row("a2", "p1", "u-asst2", "assistant", "t-1", 1), row("p2", None, "u-other", "prompter", "t-2"),
            row("b1", "p2", "u-asst1", "assistant", "t-2")]
    f = tmp_path / "oasst.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = _run("node", "import", node_dir, f, "--json")
    assert out["format"] == "oasst-messages" and out["records"] == 2
    st = _run("node", "status", node_dir, "--json")
    assert st["contributors"]["total"] == 2 and st["feedback"]["ranking"] == 1  # the two prompters, no pseudo-person
    res = CliRunner().invoke(cli, ["node", "forget", str(node_dir), "--contributor", "u-prompter"])
    assert res.exit_code == 0, res.output
    assert _run("node", "status", node_dir, "--json")["conversations"] == 1  # t-1 is gone, t-2 stays
    assert _run("node", "contributor", node_dir, "--id", "u-other", "--json")["conversations_owned"] == 1


def test_trl_message_lists_no_longer_fail():
    recs = parse(FMT / "trl_conversational.jsonl", contributor="op")
    assert [x.text for x in recs[1].responses] == ["Octopuses have three hearts.", "Fish can fly to the moon."]
    assert [m.text for m in recs[1].prompt] == ["Tell me a fact."]  # the repeated prompt is dropped
    imp = parse(FMT / "trl_implicit.jsonl", contributor="op")
    assert [m.role for m in imp[1].prompt] == ["system", "user", "assistant", "user"]
    assert [x.text for x in imp[1].responses] == ["Lima.", "Cusco."]
    assert detect_format(FMT / "hh_rlhf.jsonl") == "hh-rlhf"  # strings without a prompt stay HH-RLHF
    with pytest.raises(FormatError, match="--contributor"):
        read_records(FMT / "trl_implicit.jsonl")


def test_helpsteer2_preference_sign_and_strength():
    recs = parse(FMT / "helpsteer2_preference.jsonl", contributor="op")
    pw = [next(f for f in r.feedback if f.kind == "pairwise").data for r in recs]
    assert [(d["outcome"], round(d["strength"], 3)) for d in pw] == [("a", 1.0), ("b", 0.333), ("tie", 1.0), ("b", 0.667)]
    assert [m.role for m in recs[1].prompt] == ["user", "assistant", "user"]


def test_ultrafeedback_aspects_and_models():
    recs = parse(FMT / "ultrafeedback.jsonl", contributor="op")
    assert [x.model for x in recs[0].responses][:2] == ["gpt-4", "llama-2-7b-chat"]
    dims = Counter(f.data["dimension"] for r in recs for f in r.feedback if f.kind == "rating")
    assert dims == {"helpfulness": 5, "honesty": 4, "instruction_following": 5, "truthfulness": 5, "overall": 6,
                    "fine_grained": 1}


def test_wildchat_owner_is_hashed_ip_and_first_release_needs_contributor(tmp_path):
    recs = parse(FMT / "wildchat.jsonl")
    assert Counter(r.owner.split(":")[-1][:8] for r in recs) == {"2f9d3c0e": 2, "9a8b7c6d": 1}
    assert recs[1].meta["dropped_turns"] == 1 and recs[2].meta["flagged"] is True and recs[2].language == "fr"
    assert all(r.feedback == [] for r in recs)
    old = tmp_path / "w.jsonl"
    rows = [json.loads(x) for x in (FMT / "wildchat.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("hashed_ip")
        r["conversation_id"] = r.pop("conversation_hash")
        for m in r["conversation"]:
            m.pop("hashed_ip")
    old.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert detect_format(old) == "wildchat"
    with pytest.raises(FormatError, match="--contributor"):
        read_records(old)


def test_prism_turns_and_survey_share_contributors():
    conv = parse(FMT / "prism_conversations.jsonl")
    first, second = conv[0], conv[1]
    assert len(first.responses) == 4 and len(second.responses) == 2
    assert [m.role for m in second.prompt] == ["user", "assistant", "user"]
    assert second.prompt[1].text.startswith("That is a hard situation")  # the chosen reply carries on
    survey = parse(FMT / "prism_survey.jsonl")
    assert people(conv) == people(survey)
    assert all(r.meta.get("no_text") for r in survey)
    blob = json.dumps([r.meta for r in survey] + [f.data for r in survey for f in r.feedback])
    assert "Female" not in blob and "Christian" not in blob  # demographics are not imported


# ---------------------------------------------------------------- end to end


@pytest.fixture
def node_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CAIRN_PASSPHRASE", "correct horse battery staple")
    d = tmp_path / "node"
    res = CliRunner().invoke(cli, ["node", "init", str(d), "--name", "formats"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return d


def _run(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


@pytest.mark.parametrize("name", ["chatgpt_export/conversations.json", "openwebui_feedback.json", "oasst_messages.jsonl",
                                  "arena_clean_battle.json", "argilla_v2.jsonl", "wildchat.jsonl"])
def test_imports_into_a_node(node_dir, name):
    fmt, who, n, fb, ids = CASES[name]
    out = _run("node", "import", node_dir, FMT / name, "--json", *(["--contributor", who] if who else []))
    assert out["format"] == fmt and out["records"] == n
    st = _run("node", "status", node_dir, "--json")
    assert st["conversations"] == n and st["feedback"] == fb
    assert st["contributors"]["total"] == len(ids)


def test_prism_conversations_and_survey_are_the_same_people(node_dir):
    _run("node", "import", node_dir, FMT / "prism_conversations.jsonl", "--json")
    _run("node", "import", node_dir, FMT / "prism_survey.jsonl", "--json")
    st = _run("node", "status", node_dir, "--json")
    assert st["conversations"] == 5 and st["contributors"]["total"] == 2


def test_argilla_struct_of_lists_columns(tmp_path):
    """Hugging Face writes a list of structs as a struct of lists; both read alike."""
    rows = [json.loads(x) for x in (FMT / "argilla_v1.jsonl").read_text().splitlines()]
    for r in rows:
        votes = r["rating"]
        r["rating"] = {k: [v[k] for v in votes] for k in ("user_id", "value", "status")}
    p = tmp_path / "a.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert detect_format(p) == "argilla"
    a, b = parse(FMT / "argilla_v1.jsonl"), parse(p)
    assert [(f.contributor, f.data) for r in a for f in r.feedback] == [(f.contributor, f.data) for r in b for f in r.feedback]
    assert [f.data["value"] for r in b for f in r.feedback] == [5, 4]  # the discarded response is skipped


def test_chatgpt_root_with_placeholder_parent_and_no_message_key(tmp_path):
    convs = json.loads((FMT / "chatgpt_export/conversations.json").read_text())
    conv = convs[1]
    root = conv["mapping"]["bbb-root"]
    root["parent"] = "00000000-dead-beef-0000-000000000000"  # a dummy id, as some exports have
    del root["message"]
    p = tmp_path / "conversations.json"
    p.write_text(json.dumps([conv]))
    (rec,) = parse(p, contributor="m")
    assert rec.responses[0].text.startswith("It looks like a snake plant")


def test_chatgpt_conversation_without_reply_is_kept(tmp_path):
    convs = json.loads((FMT / "chatgpt_export/conversations.json").read_text())
    conv = convs[1]
    conv["mapping"] = {k: v for k, v in conv["mapping"].items() if k in ("bbb-root", "b-u1")}
    conv["mapping"]["b-u1"]["children"] = []
    conv["current_node"] = "b-u1"
    p = tmp_path / "conversations.json"
    p.write_text(json.dumps([conv]))
    (rec,) = parse(p, contributor="m")
    assert rec.responses == [] and rec.prompt[0].text == "What plant is this?" and rec.owner == "m"


def test_argilla_ranking_options_named_apart_from_fields(tmp_path):
    """A v2 ranking whose options are not the field names ranks the responses by their number."""
    row = {"id": "r1", "fields": {"prompt": "Pick one.", "response1": "First.", "response2": "Second."},
           "responses": {"rank": [{"value": ["reply-2", "reply-1"], "user_id": "ann-1"}],
                         "tags": [{"value": ["polite", "short"], "user_id": "ann-1"}]}}
    p = tmp_path / "a.json"
    p.write_text(json.dumps([row]))
    (rec,) = parse(p)
    assert [(f.kind, f.data.get("order") or f.data.get("value")) for f in rec.feedback] == [
        ("ranking", [1, 0]), ("label", "polite"), ("label", "short")]
    assert rec.owner is None and [m.text for m in rec.prompt] == ["Pick one."]


def test_parquet_rows_of_a_known_format_import_like_their_jsonl(tmp_path):
    """Hugging Face distributes oasst, WildChat, LMSYS-Chat-1M, UltraFeedback... as Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name in ("oasst_messages.jsonl", "wildchat.jsonl", "prism_conversations.jsonl", "lmsys_chat.jsonl"):
        fmt, who, n, fb, ids = CASES[name]
        rows = [json.loads(x) for x in (FMT / name).read_text().splitlines()]
        p = tmp_path / name.replace(".jsonl", ".parquet")
        pq.write_table(pa.Table.from_pylist(rows), p)
        assert detect_format(p) == fmt
        recs = parse(p, contributor=who)
        assert len(recs) == n and kinds(recs) == fb and people(recs) == ids
    # WildChat's timestamps as Parquet timestamps (what the Hub holds) read as ISO times
    rows = [json.loads(x) for x in (FMT / "wildchat.jsonl").read_text().splitlines()]
    import datetime
    for r in rows:
        r["timestamp"] = datetime.datetime.fromisoformat(r["timestamp"])
    p = tmp_path / "w.parquet"
    pq.write_table(pa.Table.from_pylist(rows), p)
    assert parse(p)[0].timestamp.startswith("2023-09-01T10:00:00")


@pytest.mark.parametrize("name,forced,who", [("trl_conversational.jsonl", "hh-rlhf", "op"),
                                             ("helpsteer2_preference.jsonl", "helpsteer2", "op"),
                                             ("arena_clean_battle.json", "arena", None)])
def test_forcing_the_sibling_format_still_reads_the_file(name, forced, who):
    """The commands that failed before (`--format hh-rlhf` on message lists, ...) now import."""
    fmt, _, n, fb, _ = CASES[name]
    recs = parse(FMT / name, fmt=forced, contributor=who)
    assert len(recs) == n and kinds(recs) == fb and {r.source for r in recs} == {fmt}


def test_flat_oasst_rows_forced_as_trees_say_which_format_to_use():
    first = next(iter(read_records(FMT / "oasst_messages.jsonl", fmt="oasst", contributor="x")))
    assert isinstance(first, RecordError) and "oasst-messages" in str(first) and first.line == 1
