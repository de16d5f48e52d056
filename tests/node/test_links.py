"""One person, one unit (issue 10, finding 6): ids shared across formats, --id-prefix, `cairn node link`,
and the v2 migration of stores whose ids carried their format ("sharelm:member-010")."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import node.store as store_mod
from cairn.cli import cli
from node.consent import eligible_contributors
from node.links import LinkError, link
from node.pairs import group_by_contributor, pairs_from_records
from node.schema import Feedback, Message, Record, Response

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "formats"


def run(*args, ok=True):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def first_line(name: str, **changes) -> str:
    obj = json.loads((FIX / name).read_text().splitlines()[0])
    obj.update(changes)
    return json.dumps(obj) + "\n"


@pytest.fixture
def two_sources(tmp_path):
    """The same member, member-010, in a ShareLM export and in an OpenAI-messages export."""
    a, b = tmp_path / "share.jsonl", tmp_path / "chat.jsonl"
    a.write_text(first_line("sharelm.jsonl", user_id="member-010"))
    b.write_text(first_line("openai_messages.jsonl", user="member-010"))
    nd = tmp_path / "node"
    run("node", "init", nd, "--name", "forum")
    return nd, a, b


def test_one_member_across_formats_is_one_person_and_forget_finds_them(two_sources):
    nd, a, b = two_sources
    run("node", "import", nd, a, "--format", "sharelm")
    out = json.loads(run("node", "import", nd, b, "--format", "openai", "--json").output)
    assert out["known_ids"] == 1  # the operator is told the id was already there (same person)
    who = json.loads(run("node", "contributor", nd, "--id", "member-010", "--json").output)
    assert who["conversations_owned"] == 2 and set(who["sources"]) <= {"sharelm", "openai"}
    st = json.loads(run("node", "status", nd, "--json").output)
    assert st["contributors"]["total"] == 1
    run("node", "forget", nd, "--contributor", "member-010")
    assert json.loads(run("node", "status", nd, "--json").output)["conversations"] == 0
    for f, fmt in ((a, "sharelm"), (b, "openai")):  # re-imports from either format stay out
        run("node", "import", nd, f, "--format", fmt)
    assert json.loads(run("node", "status", nd, "--json").output)["conversations"] == 0


def test_id_prefix_keeps_colliding_sources_apart(two_sources):
    nd, a, b = two_sources
    run("node", "import", nd, a, "--format", "sharelm")
    out = json.loads(run("node", "import", nd, b, "--format", "openai", "--id-prefix", "clinic-b", "--json").output)
    assert out["known_ids"] == 0
    assert json.loads(run("node", "status", nd, "--json").output)["contributors"]["total"] == 2
    who = json.loads(run("node", "contributor", nd, "--id", "clinic-b:member-010", "--json").output)
    assert who["conversations_owned"] == 1
    bad = run("node", "import", nd, b, "--format", "openai", "--id-prefix", "a:b", ok=False)
    assert bad.exit_code != 0 and "--id-prefix" in bad.output


def test_cli_link_then_forget_by_either_id(two_sources):
    nd, a, b = two_sources
    run("node", "import", nd, a, "--format", "sharelm")
    run("node", "import", nd, b, "--format", "openai", "--id-prefix", "chat")
    out = run("node", "link", nd, "member-010", "chat:member-010").output
    assert "linked" in out and "member-010" in out
    assert json.loads(run("node", "status", nd, "--json").output)["contributors"]["total"] == 1
    who = json.loads(run("node", "contributor", nd, "--id", "chat:member-010", "--json").output)
    assert who["id"] == "member-010" and who["linked_ids"] == ["chat:member-010"] and who["conversations_owned"] == 2
    run("node", "forget", nd, "--contributor", "chat:member-010")
    assert json.loads(run("node", "status", nd, "--json").output)["conversations"] == 0
    run("node", "import", nd, b, "--format", "openai", "--id-prefix", "chat")
    assert json.loads(run("node", "status", nd, "--json").output)["conversations"] == 0
    res = run("node", "link", nd, "member-010", "someone", ok=False)
    assert res.exit_code == 1 and "withdrawn" in res.output


def _battle(key: str, who: str, outcome: str = "a") -> Record:
    return Record("pandalm", key, [Message("user", f"prompt {key}")], [Response("x", "m1"), Response("y", "m2")],
                  [Feedback("pairwise", who, {"a": 0, "b": 1, "outcome": outcome, "strength": 1.0})])


def test_link_makes_bounding_sampling_and_withdrawal_see_one_person(node_dir):
    consent = ("CC-BY-4.0", "2020-01-01T00:00:00+00:00", "test")
    with node_dir.open_store() as store:
        with store.transaction():
            for i in range(3):
                store.add_record(_battle(f"e{i}", "alice@example.org"), None, consent)
            for i in range(2):
                store.add_record(_battle(f"h{i}", "alice_h"), None, None)  # no consent under this id
            store.add_record(_battle("b0", "bob"), None, consent)
        groups = group_by_contributor(pairs_from_records(store.records()))
        assert len(groups) == 3  # before: two units for Alice
        out = link(store, "alice@example.org", "alice_h")
        assert out == {"canonical": "alice@example.org", "aliases": ["alice_h"], "changed": True}
        groups = group_by_contributor(pairs_from_records(store.records()))
        assert set(groups) == {"alice@example.org", "bob"} and len(groups["alice@example.org"]) == 5
        # consent merges conservatively: one of Alice's ids had none, so Alice is not eligible
        assert eligible_contributors(store, node_dir.policy()) == {"bob"}
        with store.transaction():  # a later import under the alias lands on the same person
            assert store.add_record(_battle("h9", "alice_h"), None, None)
        assert len(group_by_contributor(pairs_from_records(store.records()))["alice@example.org"]) == 6
        assert link(store, "alice_h", "alice@example.org")["changed"] is False
        store.forget("alice_h")  # withdrawal by the id the member gives
        assert set(group_by_contributor(pairs_from_records(store.records()))) == {"bob"}
        with store.transaction():
            assert not store.add_record(_battle("e7", "alice@example.org"), None, None)
            assert not store.add_record(_battle("h7", "alice_h"), None, None)
        with pytest.raises(LinkError, match="neither"):
            link(store, "nobody", "nobody-else")


def test_migration_v2_moves_format_prefixed_ids_to_the_member_id(node_dir, tmp_path, monkeypatch):
    path = tmp_path / "v1.sqlite"  # a store at schema v1, as an earlier Cairn wrote it
    cipher = node_dir.cipher(None)
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:1])
    monkeypatch.setattr(store_mod.links, "canonical_record", lambda store, rec: rec)  # v1 had no links
    consent = ("CC-BY-4.0", "2020-01-01T00:00:00+00:00", "test")
    with store_mod.Store(path, cipher) as store:
        assert store.schema_version() == 1
        with store.transaction():
            for src, i in (("sharelm", 0), ("openai", 1)):
                rec = _battle(f"k{i}", f"{src}:member-010")
                rec.source, rec.owner = src, f"{src}:member-010"
                store.add_record(rec, None, consent)
            rec = _battle("g", "sharelm:gone-1")
            rec.source, rec.owner = "sharelm", "sharelm:gone-1"
            store.add_record(rec, None, consent)
        with store.transaction():  # v1's forget: rows deleted, the old id tombstoned
            store.conn.execute("DELETE FROM conversations WHERE owner='sharelm:gone-1'")
            store.conn.execute("DELETE FROM feedback WHERE contributor='sharelm:gone-1'")
            store.conn.execute("DELETE FROM contributors WHERE id='sharelm:gone-1'")
            store.conn.execute("INSERT INTO withdrawn VALUES(?, '2024-01-01')", (cipher.ident("contributor", "sharelm:gone-1"),))
    monkeypatch.undo()
    with store_mod.Store(path, cipher) as store:
        assert store.schema_version() == len(store_mod.MIGRATIONS) >= 2
        ids = [r[0] for r in store.conn.execute("SELECT id FROM contributors")]
        assert ids == ["member-010"]
        assert store.resolve("openai:member-010") == "member-010"  # old ids stay as aliases
        assert len(group_by_contributor(pairs_from_records(store.records()))["member-010"]) == 2
        with store.transaction():  # withdrawn under the old id: a re-import under the new id stays out
            rec = _battle("g2", "gone-1")
            rec.source, rec.owner = "sharelm", "gone-1"
            assert not store.add_record(rec, None, None)
        store.forget("member-010")
        assert store.conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] == 0
