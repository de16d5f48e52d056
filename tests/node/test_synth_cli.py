"""`cairn node synth`: planted-rule communities a node can train on, with held-out pairs."""

import json
from pathlib import Path

from click.testing import CliRunner

from cairn.cli import cli
from node.importers import read_records
from node.node_dir import NodeDir
from node.synth import load_text_pool


def run(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_synth_fills_a_node_with_eligible_contributors_and_writes_test_pairs(tmp_path, shared_data):
    d = tmp_path / "c1"
    run("node", "init", d, "--name", "c1")
    run("node", "synth", d, "--contributors", 30, "--pairs-per-contributor", 3, "--rule-space", "hashed",
        "--test-out", tmp_path / "test.jsonl", "--test-pairs", 40)
    st = json.loads(run("node", "status", d, "--json"))
    assert st["contributors"]["total"] == st["contributors"]["eligible"] == 30
    assert st["feedback"] == {"pairwise": 90}
    held = [r for _, r in read_records(tmp_path / "test.jsonl", fmt="arena")]
    assert len(held) > 20 and all(r.feedback[0].data["outcome"] in ("a", "b") for r in held)
    # held-out prompts are prompts no contributor saw
    with NodeDir(d).open_store() as s:
        store_prompts = {r.prompt[0].text for r in s.records()}
    assert not store_prompts & {r.prompt[0].text for r in held}


def test_synth_arena_community_with_planted_truth(tmp_path, shared_data):
    d = tmp_path / "arena"
    run("node", "init", d, "--name", "arena")
    out = run("node", "synth", d, "--contributors", 200, "--arena-models", 5, "--arena-truth", tmp_path / "truth.json")
    assert "battles between 5 models" in out
    truth = json.loads((tmp_path / "truth.json").read_text())["planted_strengths"]
    assert sorted(truth) == [f"arena-model-{i:02d}" for i in range(5)]
    st = json.loads(run("node", "status", d, "--json"))
    assert st["contributors"]["eligible"] == 200 and st["feedback"]["pairwise"] > 400
    assert set(st["models"]) == set(truth)
    res = CliRunner().invoke(cli, ["node", "synth", str(d), "--contributors", "5", "--arena-models", "1"])
    assert res.exit_code == 2 and "at least 2 models" in res.output


def test_synth_reads_the_data_it_is_given(tmp_path):
    formats = Path(__file__).resolve().parents[2] / "fixtures" / "formats"
    d = tmp_path / "small"
    run("node", "init", d, "--name", "small")
    out = run("node", "synth", d, "--contributors", 4, "--pairs-per-contributor", 2, "--rule-space", "text",
              "--data", formats)
    assert "8 pairs over" in out
    with NodeDir(d).open_store() as s:
        assert {r.prompt[0].text for r in s.records()} <= {g.prompt for g in load_text_pool([formats])}
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(cli, ["node", "synth", str(d), "--contributors", "4", "--data", str(empty)])
    assert res.exit_code == 1 and "no text pool found" in res.output
