"""`cairn coordinator` as the coordinator's home: one option means one thing everywhere, every option
has help, every command has --json; `federate` is `coordinator run`; `coordinator nodes` lists the
admitted nodes' ids and keys from node directories or a registry file."""

import json

import click
from click.testing import CliRunner

from cairn.cli import cli
from cairn.coordinator_cli import coordinator, leaderboard
from cairn.federate import federate
from node.node_dir import NodeDir

COMMANDS = {**{f"coordinator {n}": c for n, c in coordinator.commands.items()}, "federate": federate,
            "leaderboard": leaderboard}


def options(cmd: click.Command) -> dict[str, click.Option]:
    return {o.opts[0]: o for o in cmd.params if isinstance(o, click.Option)}


def test_every_command_has_json_and_every_option_has_help():
    assert set(coordinator.commands) >= {"run", "query", "plan", "nodes"}
    for name, cmd in COMMANDS.items():
        opts = options(cmd)
        assert "--json" in opts, name
        for flag, o in opts.items():
            assert o.help and len(o.help) > 10, f"{name} {flag} has no help"


def test_the_same_option_means_the_same_thing_everywhere():
    run, plan, query = (coordinator.commands[n] for n in ("run", "plan", "query"))
    assert federate.params == run.params and federate.callback is run.callback
    for cmd in (run, plan):
        assert "training" in options(cmd)["--epsilon"].help
    assert "--epsilon" not in options(query)  # a query-only federation has no training epsilon
    for cmd in (run, plan, query):
        o = options(cmd)
        assert o["--query-epsilon"].default == 1.0 and o["--secagg"].default is True
        for flag in ("--query-epsilon", "--secagg", "--model", "--node-dir", "--json"):
            assert o[flag].help == options(run)[flag].help, (cmd.name, flag)


def test_coordinator_nodes_lists_ids_and_keys_and_checks_a_registry(tmp_path):
    nds = [NodeDir.init(tmp_path / f"n{i}", f"community-{i}") for i in range(2)]
    reg = tmp_path / "registry.json"
    r = CliRunner().invoke(cli, ["coordinator", "nodes", *[a for n in nds for a in ("--node-dir", str(n.path))],
                                 "--write", str(reg), "--json"])
    assert r.exit_code == 0, r.output
    listed = json.loads(r.stdout)["nodes"]
    assert [n["node_id"] for n in listed] == [n.node_id for n in nds]
    assert [n["name"] for n in listed] == ["community-0", "community-1"]
    for n, nd in zip(listed, nds):
        assert n["supernode_public_key"] == (nd.path / "keys" / "supernode_ec.pub").read_text().strip()
        assert n["supernode_public_key"].startswith("ecdsa-sha2-nistp384 ")
    r = CliRunner().invoke(cli, ["coordinator", "nodes", "--registry", str(reg), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["nodes"] == listed
    # a substituted key cannot keep a node's id
    doc = json.loads(reg.read_text())
    doc["nodes"][0]["ledger_public_key"] = doc["nodes"][1]["ledger_public_key"]
    reg.write_text(json.dumps(doc))
    r = CliRunner().invoke(cli, ["coordinator", "nodes", "--registry", str(reg)])
    assert r.exit_code == 1 and "nodes[0]: field 'node_id' does not match its ledger_public_key" in r.output
    r = CliRunner().invoke(cli, ["coordinator", "nodes", "--node-dir", str(tmp_path)])
    assert r.exit_code == 1 and "not a Cairn node directory" in r.output
