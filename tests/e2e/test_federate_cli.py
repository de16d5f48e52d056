"""The public contract `cairn federate --node-dir DIR ... --rounds R --out BUNDLE`, from the command
line: a signed bundle that an auditor verifies with the coordinator's key and the nodes' ids pinned,
and whose model `cairn model eval` scores."""

import json
import stat

from click.testing import CliRunner

from cairn.cli import cli
from tests.e2e.conftest import make_community


def test_federate_cli_signed_bundle_verifies_with_pins(tmp_path):
    nodes = [make_community(tmp_path / f"n{i}", f"community-{i}", i, n_contributors=30, pairs_each=2) for i in range(2)]
    key = tmp_path / "coordinator" / "coordinator.key"
    args = ["federate", *[a for n in nodes for a in ("--node-dir", str(n.path))], "--rounds", "1", "--features", "hashed",
            "--local-steps", "5", "--coordinator-key", str(key), "--out", str(tmp_path / "bundle"), "--json"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert summary["rounds"] == 1 and {n["name"] for n in summary["nodes"]} == {"community-0", "community-1"}
    assert all(0 < n["epsilon"] <= 8.0 for n in summary["nodes"])
    # the key was created for the coordinator, private, with its public key beside it to publish
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pub = (tmp_path / "coordinator" / "coordinator.key.pub").read_text().strip()
    assert summary["coordinator_public_key"] == pub

    pins = ["--coordinator-key", str(key) + ".pub", *[a for n in nodes for a in ("--trust-node", n.node_id)]]
    r = CliRunner().invoke(cli, ["audit", "verify", summary["bundle"], *pins])
    assert r.exit_code == 0 and "PASS signature:manifest" in r.output and "PASS nodes:trusted" in r.output, r.output
    r = CliRunner().invoke(cli, ["audit", "verify", summary["bundle"], "--coordinator-key", "cd" * 32])
    assert r.exit_code == 1 and "FAIL signature:manifest" in r.output

    test = tmp_path / "test.jsonl"
    long = "The {0} is wide and old; it shaped the land, and people have lived near it for centuries."
    test.write_text("".join(json.dumps({
        "chosen": f"\n\nHuman: Tell me about the {t}.\n\nAssistant: {long.format(t)}",
        "rejected": f"\n\nHuman: Tell me about the {t}.\n\nAssistant: {t}.",
    }) + "\n" for t in ("river", "stone")))
    r = CliRunner().invoke(cli, ["model", "eval", "--model", summary["bundle"], "--data", str(test), "--format", "hh-rlhf",
                                 "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["pairs"] == 2


def test_federate_cli_refuses_a_bad_coordinator_key_before_anything_runs(tmp_path):
    nodes = [make_community(tmp_path / "n0", "community-0", 0, n_contributors=12, pairs_each=1)]
    bad = tmp_path / "coordinator.key"
    bad.write_text("not a key")
    r = CliRunner().invoke(cli, ["federate", "--node-dir", str(nodes[0].path), "--rounds", "1", "--features", "hashed",
                                 "--coordinator-key", str(bad), "--out", str(tmp_path / "bundle")])
    assert r.exit_code != 0 and "coordinator.key: not a PEM private key" in r.output
    assert not (tmp_path / "bundle").exists()
    r = CliRunner().invoke(cli, ["node", "budget", str(nodes[0].path), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["entries"] == 0, r.output


def test_coordinator_query_cli_writes_statistics_and_a_signed_bundle(tmp_path):
    nodes = [make_community(tmp_path / f"n{i}", f"community-{i}", i, n_contributors=20, pairs_each=2) for i in range(2)]
    args = ["coordinator", "query", *[a for n in nodes for a in ("--node-dir", str(n.path))], "--query", "battle_counts",
            "--query", "coverage", "--model", "m-good", "--model", "m-bad", "--language", "en", "--query-epsilon", "1.0",
            "--coordinator-key", str(tmp_path / "coordinator.key"), "--out", str(tmp_path / "bundle")]
    r = CliRunner().invoke(cli, [*args, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout[r.stdout.index("{"):])
    assert [q["query"]["name"] for q in out["statistics"]["queries"]] == ["battle_counts", "coverage"]
    for q in out["statistics"]["queries"]:
        assert set(q["answers"]) == {n.node_id for n in nodes} and not q["refused"]
        assert all(0 < a["epsilon"] <= 1.0 for a in q["answers"].values())
    pins = ["--coordinator-key", str(tmp_path / "coordinator.key.pub"), *[a for n in nodes for a in ("--trust-node", n.node_id)]]
    r = CliRunner().invoke(cli, ["audit", "verify", out["bundle"], *pins])
    assert r.exit_code == 0 and "PASS signature:manifest" in r.output, r.output
    # no training ran: the bundle publishes no (random, untrained) model, and says so
    assert not (tmp_path / "bundle" / "model").exists()
    assert "No reward model is published" in (tmp_path / "bundle" / "datacard.md").read_text()
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go"}) + "\n")
    r = CliRunner().invoke(cli, ["model", "eval", "--model", out["bundle"], "--data", str(data), "--json"])
    assert r.exit_code != 0 and "lists no model" in r.output
    # a bundle goes into an empty directory: a second run into it is refused before anything runs
    r = CliRunner().invoke(cli, args)
    assert r.exit_code != 0 and "the bundle directory is not empty" in r.output
