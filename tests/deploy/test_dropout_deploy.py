"""Issue 15 item 1 on the Flower Deployment Engine (loopback: SuperLink + SuperNodes, TLS and SuperNode
auth on): a community whose SuperNode dies after it contributed to round 1 leaves a bundle that
verifies with the coordinator key and the node ids pinned, publishes the dead node (its signed ledger
came with its round-1 reply) and says it dropped in round 2.

The kill is SIGKILL to the victim's SuperNode process group (deploy.local.LocalDeployment.kill_supernode),
the moment its SuperNode logs that its round-1 reply was sent: the reply is at the SuperLink, round 2
is not done. The coordinator's per-exchange timeout (run config `timeout`) ends round 2 without it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cairn.cli import cli
from deploy.local import LocalDeployment
from model.presets import preset_config
from protos import bundle as fmt
from tests.e2e.conftest import make_community

pytestmark = pytest.mark.slow

EXCHANGE_TIMEOUT = 20.0  # seconds the coordinator waits for one message exchange (round 2 ends this long after the kill)


def _kill_after_round_1(dep: LocalDeployment, victim: Path, killed: dict, stop: threading.Event) -> None:
    """Watch the victim's SuperNode log; SIGKILL it once its first train reply (round 1) was sent."""
    log = dep.logs / f"supernode-{victim.name}.log"
    while not stop.is_set():
        text = log.read_text(errors="replace") if log.exists() else ""
        sending = text.find("Sending: train")
        if sending >= 0 and text.find("Sent successfully", sending) >= 0:
            killed["pid"] = dep.kill_supernode(victim)
            killed["at"] = time.monotonic()
            return
        time.sleep(0.05)


def test_supernode_killed_after_round_1_bundle_verifies_and_records_dropout(tmp_path):
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    nodes = [make_community(tmp_path / f"n{i}", f"community-{i}", i, n_contributors=12, pairs_each=1) for i in range(2)]
    victim = nodes[1]
    key = tmp_path / "coordinator.key"
    out = tmp_path / "bundle"
    run_config = {"out": str(out), "rounds": 2, "min-nodes": 2, "featurizer": json.dumps(preset_config("hashed")),
                  "local-steps": 1, "epsilon": 2.0, "secagg": False, "coordinator-key": str(key),
                  "federation-id": "fed-deploy-dropout", "timeout": EXCHANGE_TIMEOUT}
    dep = LocalDeployment([n.path for n in nodes], tmp_path / "deploy")
    killed: dict = {}
    stop = threading.Event()
    t0 = time.monotonic()
    with dep:
        watcher = threading.Thread(target=_kill_after_round_1, args=(dep, victim.path.resolve(), killed, stop), daemon=True)
        watcher.start()
        try:
            res = dep.run_app(run_config, timeout=300)
        finally:
            stop.set()
            watcher.join(timeout=15)
        victim_proc = dep.supernodes[victim.path.resolve()]
        assert killed.get("pid") == victim_proc.pid and not victim_proc.alive() and not victim_proc.group_alive()
        after_kill = time.monotonic() - killed["at"]
    for p in dep._procs:  # every process (group) this test started is gone
        assert not p.alive() and not p.group_alive(), f"{p.name} (pid {p.pid}) still running"
    print(f"\nloopback dropout: {time.monotonic() - t0:.1f}s in all; run {res.wall_s:.1f}s, "
          f"{after_kill:.1f}s from the kill to the run's end")
    assert res.ok, res.status

    ids = [n.node_id for n in nodes]
    rounds = json.loads((out / fmt.ROUNDS).read_text())
    assert [r["round"] for r in rounds] == [1, 2]
    assert rounds[0]["dropped"] == [] and sorted(c["node_id"] for c in rounds[0]["contributors"]) == sorted(ids)
    assert rounds[1]["dropped"] == [victim.node_id], rounds[1]
    assert [c["node_id"] for c in rounds[1]["contributors"]] == [nodes[0].node_id] and rounds[1]["applied"]
    assert "no reply" in rounds[1]["refused"][victim.node_id]
    # the dead node is published: its ledger and the head it signed with its round-1 reply
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(n["node_id"] for n in manifest["nodes"]) == sorted(ids)
    assert (out / fmt.ledger_pb(victim.node_id)).is_file() and (out / fmt.head_file(victim.node_id)).is_file()

    pub = (tmp_path / "coordinator.key.pub").read_text().strip()
    r = CliRunner().invoke(cli, ["audit", "verify", str(out), "--coordinator-key", pub,
                                 *[a for i in ids for a in ("--trust-node", i)]])
    assert r.exit_code == 0, r.output
    assert "PASS head:community-1" in r.output, r.output


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s"]))
