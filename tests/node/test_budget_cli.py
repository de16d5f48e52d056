"""`cairn node budget / ledger / report` after real releases through the node's gate."""

import json

import pytest
from click.testing import CliRunner

from cairn.cli import cli
from node.releases import open_gate
from privacy.audit.ledgers import verify_ledger
from privacy.events import DiscreteGaussianEvent
from privacy.ledger import load_export
from privacy.release import PolicyViolation


def run(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def release_counts(node_dir, sigma, name):
    with node_dir.open_store() as store:
        gate = open_gate(node_dir, store)
        return gate.release("coverage", {"q": name}, contributors=50, event=DiscreteGaussianEvent(sigma, 1),
                            payload=b"[1,2,3]")


def test_budget_ledger_and_report(node_dir, tmp_path):
    assert json.loads(run("node", "budget", node_dir.path, "--json"))["spent"] == 0
    release_counts(node_dir, 5.0, "a")
    release_counts(node_dir, 5.0, "b")
    release_counts(node_dir, 5.0, "a")  # identical request: cached, spends nothing
    b = json.loads(run("node", "budget", node_dir.path, "--json"))
    # each release is preceded by its noisy min_contributors test, its own accounted entry
    assert b["entries"] == 4 and 0 < b["spent"] < b["epsilon_cap"]
    assert b["remaining"] == pytest.approx(b["epsilon_cap"] - b["spent"])
    assert b["delta"] == 1e-6 and b["method"] and b["unit"] == "contributor"
    assert b["by_kind"]["coverage"]["releases"] == 2 and b["by_kind"]["threshold:coverage"]["releases"] == 2
    out = tmp_path / "ledger.pb"
    run("node", "ledger", node_dir.path, "--export", out)
    export = load_export(out)
    assert len(export.entries) == 4 and verify_ledger(export) == []
    assert all(not e.body.contributors for e in export.entries)  # no exact count in the public ledger
    run("node", "ledger", node_dir.path, "--export", tmp_path / "ledger.json")
    assert json.loads((tmp_path / "ledger.json").read_text())["entries"]
    run("node", "report", node_dir.path, "--out", tmp_path / "rep")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "contributor" in md and "coverage" in md
    assert (tmp_path / "rep" / "epsilon.png").read_bytes()[:4] == b"\x89PNG"
    assert "<img" in (tmp_path / "rep" / "report.html").read_text()


def test_cap_refusal_names_the_rule(node_dir):
    import dataclasses

    # cap 3: the privacy filter (issue 10) admits a few of these releases, then refuses
    dataclasses.replace(node_dir.policy(), epsilon_cap=3.0).save(node_dir.policy_path)
    done = 0
    with pytest.raises(PolicyViolation) as e:
        for i in range(500):
            release_counts(node_dir, 5.0, f"q{i}")
            done += 1
    assert done > 1 and e.value.rule == "epsilon_cap"
    assert "privacy.epsilon_cap" in str(e.value)
    b = json.loads(run("node", "budget", node_dir.path, "--json"))
    # each release: its threshold test and itself; the refused one may have spent its threshold test
    assert b["entries"] in (2 * done, 2 * done + 1) and b["spent"] <= b["epsilon_cap"]
