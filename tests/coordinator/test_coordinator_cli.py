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


FAKE_FLWR = """#!{python}
import json, pathlib, sys
# a stand-in for `flwr`: records what it was asked, answers as `flwr supernode register --format json` does
log = pathlib.Path({log!r})
args = sys.argv[1:]
key = pathlib.Path(args[2]).read_text().strip()
with log.open("a") as f:
    f.write(json.dumps({{"args": args[:2] + args[3:], "key": key}}) + "\\n")
if "refuse" in {refuse!r}:
    print(json.dumps({{"success": False, "error-message": "Public key already in use"}}))
    sys.exit(1)
print(json.dumps({{"success": True, "node-id": 1000 + sum(1 for _ in log.open())}}))
"""


def _fake_flwr(tmp_path, refuse=""):
    import stat
    import sys

    bin_dir, log = tmp_path / "bin", tmp_path / "flwr-calls.jsonl"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "flwr"
    exe.write_text(FAKE_FLWR.format(python=sys.executable, log=str(log), refuse=refuse))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return bin_dir, log


def test_coordinator_nodes_registers_every_supernode_key(tmp_path, monkeypatch):
    """`cairn coordinator nodes --register CONNECTION` registers each admitted node's SuperNode key with
    the SuperLink (flwr supernode register), so an operator never types the raw command; a refusal names
    the node."""
    nds = [NodeDir.init(tmp_path / f"n{i}", f"community-{i}") for i in range(2)]
    bin_dir, log = _fake_flwr(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    dirs = [a for n in nds for a in ("--node-dir", str(n.path))]
    r = CliRunner().invoke(cli, ["coordinator", "nodes", *dirs, "--register", "my-superlink", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [x["name"] for x in out["registered"]] == ["community-0", "community-1"]
    assert [x["flower_node_id"] for x in out["registered"]] == ["1001", "1002"]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["args"] for c in calls] == [["supernode", "register", "my-superlink", "--format", "json"]] * 2
    assert [c["key"] for c in calls] == [(n.path / "keys" / "supernode_ec.pub").read_text().strip() for n in nds]

    refusing = tmp_path / "refusing"
    refusing.mkdir()
    bin_dir, _ = _fake_flwr(refusing, refuse="refuse")
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    r = CliRunner().invoke(cli, ["coordinator", "nodes", *dirs, "--register", "my-superlink"])
    assert r.exit_code == 1 and "community-0" in r.output and "refused its key" in r.output
