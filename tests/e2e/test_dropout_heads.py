"""Issue 15: a node that drops after round 1, node-signed ledger heads, and a hostile coordinator.

One federation (2 communities, 2 rounds, a coverage query) in which community-1 dies after round 1:
the bundle still publishes it (its ledger came with its round-1 reply), records that it dropped in
round 2, and verifies with the coordinator's key and every node id pinned. Then the attacks, played
on copies of that bundle by a coordinator holding its real signing key: cut a node's ledger tail
(its query entry and the answer's lineage) and re-sign; do the same with an earlier head the node
really signed; drop the whole dropped-out node and re-sign. Each FAILs, from the heads the bundle
carries, from a pinned node id, or from the head the node publishes itself (`cairn node head`,
`--node-head` FILE and URL).
"""

import hashlib
import json
import shutil
import threading
from functools import partial
from http.server import HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from cairn.cli import cli
from coordinator.server_app import FederationConfig
from coordinator.simulation import run_simulation_federation
from privacy.audit import verify_bundle
from privacy.ledger import export_to_json
from privacy.ledger_head import parse_json
from protos import bundle as fmt
from protos import ledger_pb2
from protos.wire import Key, MessageType, Record
from tests.e2e.conftest import make_community
from tests.e2e.test_federation import HASHED
from tests.privacy.audit.conftest import COORDINATOR_KEY, COORDINATOR_PUB, load_manifest, rehash, save_manifest

FED = "fed-dropout"


class DroppingGrid:
    """The network of a node that dies after round 1: from round 2's training message on, nothing
    reaches it and nothing comes back. Also records every signed head the coordinator received
    (what a dishonest coordinator holds)."""

    def __init__(self, grid, victim_name: str):
        self.grid, self.victim_name, self.victim, self.dead, self.heads = grid, victim_name, None, False, []
        self.exchanges: list[str] = []  # the group of every exchange, in order

    def __getattr__(self, name):
        return getattr(self.grid, name)

    def send_and_receive(self, messages, timeout=None):
        messages = list(messages)
        self.exchanges += sorted({m.metadata.group_id for m in messages})
        if any(m.metadata.message_type == MessageType.TRAIN and m.metadata.group_id == "round-2" for m in messages):
            self.dead = True
        alive = [m for m in messages if not (self.dead and m.metadata.dst_node_id == self.victim)]
        out = list(self.grid.send_and_receive(alive, timeout=timeout)) if alive else []
        self.heads += [str(r.content[Record.HEAD][Key.SIGNED_HEAD]) for r in out
                       if not r.has_error() and Record.HEAD in r.content]
        for r in out:  # the hello names each node
            if not r.has_error() and Record.INFO in r.content and r.content[Record.INFO][Key.NAME] == self.victim_name:
                self.victim = r.metadata.src_node_id
        return out


@pytest.fixture(scope="module")
def dropout(tmp_path_factory):
    root = tmp_path_factory.mktemp("dropout")
    # the smallest federation in which a dropout means something: 2 nodes just above min_contributors (10),
    # 1 pair each, hashed features, 1 local step, 2 rounds (the victim contributes to round 1, dies in round 2)
    nodes = [make_community(root / f"n{i}", f"community-{i}", i, n_contributors=12, pairs_each=1) for i in range(2)]
    key_file = root / "coordinator.key"
    key_file.write_bytes(COORDINATOR_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    grids = []

    def wrap(grid):
        grids.append(DroppingGrid(grid, "community-1"))
        return grids[-1]

    cfg = FederationConfig(out=str(root / "bundle"), rounds=2, local_steps=1, featurizer=HASHED, secagg=False,
                           federation_id=FED, coordinator_key=str(key_file), queries=["coverage"],
                           query_epsilon=0.5, query_languages=["en"], query_models=["m-good"], query_topics=["other"])
    summary = run_simulation_federation([n.path for n in nodes], cfg, "node.client_app:app", wrap_grid=wrap)
    return Path(summary["bundle"]), nodes, summary, grids[0]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _pins(nodes):
    return {"coordinator_key": COORDINATOR_PUB, "trusted_nodes": {n.node_id for n in nodes}}


def test_dropout_after_round_1_bundle_verifies_and_says_who_dropped_when(dropout):
    bundle, nodes, summary, grid = dropout
    # fewer exchanges (issue 16): budgets and ledgers came with the hellos and the release replies
    assert grid.exchanges == ["hello", "budget-quote", "round-1", "round-2", "query-coverage"] or (
        "ledger" not in grid.exchanges and "budget" not in grid.exchanges), grid.exchanges
    victim = nodes[1].node_id
    res = verify_bundle(bundle, **_pins(nodes))
    assert res.ok, "\n".join(res.summary_lines())
    assert summary["audit"]["ok"] and summary["dropped"] == {victim: [2]}
    rounds = json.loads((bundle / fmt.ROUNDS).read_text())
    assert rounds[0]["dropped"] == [] and victim in {c["node_id"] for c in rounds[0]["contributors"]}
    assert rounds[1]["dropped"] == [victim] and victim not in {c["node_id"] for c in rounds[1]["contributors"]}
    # the dropped node is published with its round-1 release and its signed head, which its ledger reaches
    head = parse_json((bundle / fmt.head_file(victim)).read_bytes())
    export = ledger_pb2.LedgerExport.FromString((bundle / fmt.ledger_pb(victim)).read_bytes())
    assert head.run_id == FED and head.seq == len(export.entries) - 1 >= 0
    assert res.check("head:community-1").status == "PASS"
    stats = json.loads((bundle / fmt.STATISTICS).read_text())
    assert victim in stats["queries"][0]["refused"] and "no reply" in stats["queries"][0]["refused"][victim]


def _cut_tail(bundle: Path, node_id: str) -> int:
    """A dishonest coordinator drops node_id's last ledger entry (its query answer), the answer from
    statistics.json and its lineage, re-pins the head in the manifest and re-signs. Returns the cut seq."""
    export = ledger_pb2.LedgerExport.FromString((bundle / fmt.ledger_pb(node_id)).read_bytes())
    cut = export.entries[-1]
    assert cut.body.release_kind.startswith("query") or cut.body.release_kind == "coverage", cut.body.release_kind
    del export.entries[-1]
    (bundle / fmt.ledger_pb(node_id)).write_bytes(export.SerializeToString(deterministic=True))
    (bundle / fmt.ledger_json(node_id)).write_text(export_to_json(export))
    stats = json.loads((bundle / fmt.STATISTICS).read_text())
    for q in stats["queries"]:
        q["answers"].pop(node_id, None)
    (bundle / fmt.STATISTICS).write_text(json.dumps(stats, indent=2) + "\n")
    m = load_manifest(bundle)
    for n in m.nodes:
        if n.node_id == node_id:
            n.ledger_entries, n.ledger_head_hash = len(export.entries), bytes(export.entries[-1].entry_hash)
            n.claimed_epsilon = export.entries[-1].body.claimed_epsilon
    for art in m.artifacts:
        keep = [s for s in art.sources if not (s.node_id == node_id and s.ledger_seq == cut.body.seq)]
        del art.sources[:]
        art.sources.extend(keep)
    arts = [a for a in m.artifacts if a.sources]  # an artifact left with no source claims no lineage
    del m.artifacts[:]
    m.artifacts.extend(arts)
    save_manifest(bundle, m)
    rehash(bundle)
    return cut.body.seq


def test_truncated_tail_resigned_fails_on_the_nodes_signed_head(dropout, tmp_path):
    bundle, nodes, _, grid = dropout
    nid = nodes[0].node_id
    b = _copy(bundle, tmp_path / "cut")
    seq = _cut_tail(b, nid)
    res = verify_bundle(b, **_pins(nodes))
    assert not res.ok and [c.name for c in res.failures] == ["head:community-0"], "\n".join(res.summary_lines())
    assert "tail was cut" in res.check("head:community-0").message and f"seq {seq}" in res.check("head:community-0").message

    # the same coordinator swaps in an earlier head the node really signed (it kept every reply):
    earlier = max((parse_json(h) for h in grid.heads if parse_json(h).node_id == nid and parse_json(h).seq < seq),
                  key=lambda h: h.seq)
    (b / fmt.head_file(nid)).write_text(earlier.to_json())
    rehash(b)
    assert verify_bundle(b, **_pins(nodes)).ok  # the bundle alone cannot tell: the node's own head can
    node_head = tmp_path / "head.json"
    r = CliRunner().invoke(cli, ["node", "head", str(nodes[0].path), "--run", FED, "--out", str(node_head)])
    assert r.exit_code == 0, r.output
    assert parse_json(node_head.read_bytes()).seq == seq
    r = CliRunner().invoke(cli, ["audit", "verify", str(b), "--coordinator-key", COORDINATOR_PUB.hex(),
                                 *[a for n in nodes for a in ("--trust-node", n.node_id)], "--node-head", str(node_head)])
    assert r.exit_code == 1 and "FAIL node-head:community-0" in r.output and "tail was cut" in r.output, r.output
    # and the honest bundle passes the same cross-check, from a file and from the node's URL
    r = CliRunner().invoke(cli, ["audit", "verify", str(bundle), "--coordinator-key", COORDINATOR_PUB.hex(),
                                 *[a for n in nodes for a in ("--trust-node", n.node_id)], "--node-head", str(node_head)])
    assert r.exit_code == 0 and "PASS node-head:community-0" in r.output, r.output
    server = HTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/head.json"
        r = CliRunner().invoke(cli, ["audit", "verify", str(b), "--node-head", url])
        assert "FAIL node-head:community-0" in r.output and r.exit_code == 1, r.output
        r = CliRunner().invoke(cli, ["audit", "verify", str(b), "--node-head", url.replace("head.json", "nothing")])
        assert r.exit_code != 0 and "--node-head" in r.output, r.output
    finally:
        server.shutdown()
        server.server_close()


def test_dropped_contributing_node_resigned_fails_when_pinned_or_its_head_given(dropout, tmp_path):
    bundle, nodes, _, _ = dropout
    victim = nodes[1].node_id
    b = _copy(bundle, tmp_path / "gone")
    m = load_manifest(b)
    keep = [n for n in m.nodes if n.node_id != victim]
    del m.nodes[:]
    m.nodes.extend(keep)
    for art in m.artifacts:
        srcs = [s for s in art.sources if s.node_id != victim]
        del art.sources[:]
        art.sources.extend(srcs)
    drop = {fmt.ledger_pb(victim), fmt.ledger_json(victim), fmt.key_file(victim), fmt.head_file(victim),
            f"policies/{victim}.toml"}
    files = [f for f in m.files if f.path not in drop]
    del m.files[:]
    m.files.extend(files)
    for p in drop:
        (b / p).unlink(missing_ok=True)
    rounds = json.loads((b / fmt.ROUNDS).read_text())
    for r in rounds:
        r["contributors"] = [c for c in r["contributors"] if c["node_id"] != victim]
        r["dropped"], r["refused"] = [], {k: v for k, v in r["refused"].items() if k != victim}
    (b / fmt.ROUNDS).write_text(json.dumps(rounds, indent=2) + "\n")
    save_manifest(b, m)
    rehash(b)
    others = {nodes[0].node_id}
    assert verify_bundle(b, coordinator_key=COORDINATOR_PUB, trusted_nodes=others).ok  # only what you pin is caught
    res = verify_bundle(b, coordinator_key=COORDINATOR_PUB, trusted_nodes={n.node_id for n in nodes})
    assert [c.name for c in res.failures] == ["nodes:trusted"] and victim[:16] in res.check("nodes:trusted").message
    from node.head import signed_head

    head = parse_json(json.dumps(signed_head(nodes[1].path, FED)))
    assert head.seq >= 0
    res = verify_bundle(b, coordinator_key=COORDINATOR_PUB, trusted_nodes=others, node_heads=[("node", head)])
    assert not res.ok and "was dropped" in res.failures[0].message, "\n".join(res.summary_lines())


def test_forged_or_foreign_head_is_refused(dropout, tmp_path):
    bundle, nodes, _, _ = dropout
    nid = nodes[1].node_id
    b = _copy(bundle, tmp_path / "forged")
    d = json.loads((b / fmt.head_file(nid)).read_text())
    d["seq"] -= 1  # claims the ledger ends earlier: the signature no longer holds
    (b / fmt.head_file(nid)).write_text(json.dumps(d))
    rehash(b)
    res = verify_bundle(b, **_pins(nodes))
    assert [c.name for c in res.failures] == ["head:community-1"] and "signature" in res.failures[0].message
    # another node's genuine head in this node's place
    b2 = _copy(bundle, tmp_path / "foreign")
    shutil.copy(b2 / fmt.head_file(nodes[0].node_id), b2 / fmt.head_file(nid))
    rehash(b2)
    assert [c.name for c in verify_bundle(b2, **_pins(nodes)).failures] == ["head:community-1"]
    # a head file removed and unlisted: the node no longer shows its ledger is complete
    b3 = _copy(bundle, tmp_path / "nohead")
    (b3 / fmt.head_file(nid)).unlink()
    m = load_manifest(b3)
    files = [f for f in m.files if f.path != fmt.head_file(nid)]
    del m.files[:]
    m.files.extend(files)
    save_manifest(b3, m)
    res = verify_bundle(b3, **_pins(nodes))
    assert [c.name for c in res.failures] == ["head:community-1"] and "missing" in res.failures[0].message


def test_node_head_cli_output_verifies(dropout, tmp_path):
    _, nodes, _, _ = dropout
    r = CliRunner().invoke(cli, ["node", "head", str(nodes[0].path)])
    assert r.exit_code == 0, r.output
    head = parse_json(r.output)
    from privacy.ledger_head import verify_head

    assert verify_head(head, None) == [] and head.node_id == nodes[0].node_id and head.run_id == ""
    assert head.node_id == hashlib.sha256(head.public_key).hexdigest()


def test_run_exit_status_is_the_bundles_audit(dropout, tmp_path):
    """`cairn federate` / `coordinator run` exit non-zero naming the failing checks when the bundle they
    wrote does not verify with the coordinator's key and the nodes' ids pinned (coordinator/bundle.py)."""
    import click

    from cairn.coordinator_cli import _exit_on_audit
    from coordinator.bundle import audit_written

    bundle, nodes, summary, _ = dropout
    ids = {n.node_id for n in nodes}
    assert audit_written(summary, ids)["ok"]
    _exit_on_audit(summary)  # verified: returns
    b = _copy(bundle, tmp_path / "bad")
    _cut_tail(b, nodes[0].node_id)
    bad = {**summary, "bundle": str(b)}
    bad["audit"] = audit_written(bad, ids)
    assert not bad["audit"]["ok"] and bad["audit"]["failures"][0].startswith("head:community-0")
    with pytest.raises(click.ClickException, match="does not verify: head:community-0"):
        _exit_on_audit(bad)


def _node_message(content: dict, message_type: str):
    """A coordinator message as the node's ClientApp receives it, outside a Flower run (TaskIdentity set
    for the constructor only, then restored)."""
    from flwr.app import Message, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id)
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 1
    try:
        return Message(content=RecordDict(content), dst_node_id=1, message_type=message_type)
    finally:
        TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = saved


def test_node_refuses_a_release_outside_the_run_it_signs_heads_for(dropout):
    """The attack: a coordinator names run FED in every message (so every head it holds is of FED) but
    the rounds 'elsewhere/...', so `cairn node head --run FED` would find no entry of FED (seq -1) and a
    bundle of FED cut back to the node's hello head would pass the node's own head. The node refuses
    a release whose round is not of the named run, or that names no run, before any budget is spent."""
    from flwr.app import ConfigRecord, Context, RecordDict

    import node.client_app as ca
    from coordinator.queries import build_query
    from node.head import run_problem, signed_head
    from protos.wire import query_action

    _, nodes, _, _ = dropout
    nd = nodes[0]
    before = signed_head(nd.path)
    ctx = Context(run_id=1, node_id=1, node_config={"node-dir": str(nd.path)}, state=RecordDict(), run_config={})
    run = {Record.RUN: ConfigRecord({Key.RUN_ID: FED})}
    for round_id, content in [("elsewhere/query/coverage", run), (f"{FED}-2/query/coverage", run),
                              (f"{FED}/query/coverage", {}),  # another run's round; a look-alike; no run named;
                              (f"{FED}\nseq=99/query/coverage",  # an unsignable run id: a refusal, not a traceback
                               {Record.RUN: ConfigRecord({Key.RUN_ID: f"{FED}\nseq=99"})})]:
        q = build_query("coverage", 0.5, round_id, models=["m-good"], languages=["en"], topics=["other"])
        msg = _node_message({**content, Record.QUERY: ConfigRecord({Key.QUERY: q.SerializeToString()})},
                            "query." + query_action(MessageType.AGGREGATE))
        status = ca.aggregate(msg, ctx).content[Record.STATUS]
        assert status[Key.OK] is False and "policy rule run" in str(status[Key.REFUSED]), dict(status)
    train = _node_message({**run, Record.CONFIG: ConfigRecord({"federation_id": "elsewhere", "round": 1, "rounds": 1})},
                          "train")
    status = ca.train(train, ctx).content[Record.STATUS]
    assert status[Key.OK] is False and "policy rule run" in str(status[Key.REFUSED]), dict(status)
    assert signed_head(nd.path)["seq"] == before["seq"]  # nothing released, nothing spent
    assert run_problem(FED, f"{FED}/3") is None and run_problem(FED, FED) is None


def test_audit_report_is_strict_by_default_like_verify(dropout, tmp_path):
    """Issue 15 item 4 for `cairn audit report`: without the coordinator key and node ids pinned it
    exits non-zero; --allow-unpinned writes the report and says what was not checked; pinned, it verifies."""
    bundle, nodes, _, _ = dropout
    out = tmp_path / "r.html"
    r = CliRunner().invoke(cli, ["audit", "report", str(bundle), "--out", str(out)])
    assert r.exit_code == 1 and "NOT VERIFIED" in r.output, r.output
    r = CliRunner().invoke(cli, ["audit", "report", str(bundle), "--out", str(out), "--allow-unpinned"])
    assert r.exit_code == 0 and "not checked (--allow-unpinned)" in out.read_text(), r.output
    r = CliRunner().invoke(cli, ["audit", "report", str(bundle), "--out", str(out), "--coordinator-key",
                                 COORDINATOR_PUB.hex(), *[a for n in nodes for a in ("--trust-node", n.node_id)]])
    assert r.exit_code == 0 and "VERIFIED" in r.output, r.output


def test_real_key_heads_of_another_run_chain_or_epsilon_fail(dropout, tmp_path):
    """Heads genuinely signed by the node's ledger key but of another federation (a replay), or naming
    the published seq with another entry hash, or with another cumulative epsilon: each FAILs head:."""
    from privacy.ledger_head import sign_head

    bundle, nodes, _, _ = dropout
    nid, key = nodes[0].node_id, nodes[0].ledger_key()
    real = parse_json((bundle / fmt.head_file(nid)).read_bytes())
    for i, (changes, why) in enumerate([({"run_id": "another-fed"}, "not this federation"),
                                        ({"entry_hash": bytes(range(32))}, "a different chain"),
                                        ({"epsilon": real.epsilon + 0.25}, "claims epsilon")]):
        args = {"seq": real.seq, "entry_hash": real.entry_hash, "epsilon": real.epsilon, "run_id": real.run_id,
                "created_at": real.created_at, **changes}
        b = _copy(bundle, tmp_path / f"h{i}")
        (b / fmt.head_file(nid)).write_text(sign_head(key, **args).to_json())
        rehash(b)
        res = verify_bundle(b, **_pins(nodes))
        assert [c.name for c in res.failures] == ["head:community-0"] and why in res.failures[0].message, why
