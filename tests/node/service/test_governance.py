"""Issue 12 item 8: policy proposals take effect only after the notice period; members object (counted,
never attributed); dissent notes are critique feedback on one's own contribution."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from click.testing import CliRunner

from node.service import governance, members
from tests.node.service.conftest import OPERATOR, sharelm

OP = {"Authorization": f"Bearer {OPERATOR}"}


def _member(client, nd):
    r = client.post("/api/v1/members", json={"invite": members.create_invites(nd.path, 1)[0]})
    return r.json()["member_id"], {"Authorization": f"Bearer {r.json()['token']}"}


def _proposed_text(nd, **changes) -> str:
    from dataclasses import replace

    return replace(nd.policy(), **changes).dumps()


def test_proposal_waits_for_its_notice_period_then_applies(client, svc_node):
    old = svc_node.policy()
    r = client.post("/api/v1/operator/proposals", json={"policy": _proposed_text(svc_node, epsilon_cap=4.0)}, headers=OP)
    assert r.status_code == 201
    p = r.json()
    assert p["changes"] == {"epsilon_cap": [8.0, 4.0]} and p["notice_period_hours"] == governance.NOTICE_HOURS
    effective = datetime.fromisoformat(p["effective_at"])
    assert governance.apply_due(svc_node.path) == []
    assert svc_node.policy() == old  # the node keeps the old policy during the notice period
    _, h = _member(client, svc_node)
    seen = client.get("/api/v1/proposals", headers=h).json()["proposals"]
    assert seen[0]["id"] == p["id"] and seen[0]["status"] == "pending" and seen[0]["objected"] is False
    assert "objections" not in seen[0]  # members do not see the exact count
    assert governance.apply_due(svc_node.path, now=effective - timedelta(seconds=1)) == []
    assert governance.apply_due(svc_node.path, now=effective) == [p["id"]]
    assert svc_node.policy().epsilon_cap == 4.0
    assert client.get("/api/v1/proposals", headers=h).json()["proposals"][0]["status"] == "applied"


def test_notice_period_comes_from_the_policy_in_force(tmp_path):
    from tests.node.service.conftest import make_node

    nd = make_node(tmp_path / "n", notice_period_hours=48)
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    out = governance.propose(nd.path, _proposed_text(nd, epsilon_cap=2.0), now=now)
    assert out["effective_at"] == (now + timedelta(hours=48)).isoformat(timespec="seconds")


def test_bad_proposals_are_refused(client, svc_node):
    for text, status in (("not toml [", 422), (svc_node.policy().dumps(), 422),
                         (_proposed_text(svc_node).replace("epsilon_cap = 8.0", "epsilon_cap = -1.0"), 422)):
        r = client.post("/api/v1/operator/proposals", json={"policy": text}, headers=OP)
        assert r.status_code == status and r.json()["field"] == "policy"
    _, h = _member(client, svc_node)
    assert client.post("/api/v1/operator/proposals", json={"policy": _proposed_text(svc_node, epsilon_cap=1.0)},
                       headers=h).status_code == 401  # a member is not the operator


def test_objections_are_counted_once_each_and_never_attributed(client, svc_node):
    pid = governance.propose(svc_node.path, _proposed_text(svc_node, waiting_period_hours=1.0))["id"]
    voters = [_member(client, svc_node) for _ in range(3)]
    for member_id, h in voters[:2]:
        r = client.post(f"/api/v1/proposals/{pid}/objections", json={"reason": "Too short a wait; mail me at a@b.org"},
                        headers=h)
        assert r.status_code == 201
    again = client.post(f"/api/v1/proposals/{pid}/objections", json={"reason": "again"}, headers=voters[0][1])
    assert again.status_code == 409
    assert client.post(f"/api/v1/proposals/{pid}/objections", json={}, headers=voters[2][1]).status_code == 422
    assert client.post("/api/v1/proposals/999/objections", json={"reason": "x"}, headers=voters[2][1]).status_code == 404
    ops = client.get("/api/v1/operator/proposals", headers=OP).json()["proposals"]
    assert ops[0]["objections"] == 2
    reasons = governance.objection_reasons(svc_node.path, pid)
    assert len(reasons) == 2 and all("a@b.org" not in r for r in reasons)  # redacted
    with svc_node.open_store() as store:
        row = store.conn.execute("SELECT * FROM objections").fetchall()
        assert not any(m in repr(row) for m, _ in voters)  # who objected is never stored in clear
    # an objector who withdraws takes their objection with them
    client.delete("/api/v1/me", headers=voters[0][1])
    assert client.get("/api/v1/operator/proposals", headers=OP).json()["proposals"][0]["objections"] == 1


def test_cli_propose_list_apply(svc_node, tmp_path):
    from cairn.cli import cli

    f = tmp_path / "new.toml"
    f.write_text(_proposed_text(svc_node, epsilon_cap=6.0))
    r = CliRunner().invoke(cli, ["node", "policy", "propose", str(svc_node.path), "--file", str(f)])
    assert r.exit_code == 0, r.output
    assert "epsilon_cap: 8.0 -> 6.0" in r.output
    r = CliRunner().invoke(cli, ["node", "policy", "list", str(svc_node.path)])
    assert "pending" in r.output and "0 objection(s)" in r.output
    r = CliRunner().invoke(cli, ["node", "policy", "apply", str(svc_node.path)])
    assert "no proposal is due" in r.output and svc_node.policy().epsilon_cap == 8.0


def test_dissent_note_is_critique_feedback_on_ones_own_contribution(tmp_path):
    from fastapi.testclient import TestClient

    from node.service.app import create_app
    from tests.node.service.conftest import make_node

    nd = make_node(tmp_path / "n", waiting_hours=0.0)
    with TestClient(create_app(nd.path, tick_seconds=0)) as client:
        member, h = _member(client, nd)
        cid = client.post("/api/v1/contributions", json=sharelm(), headers=h).json()["id"]
        r = client.post(f"/api/v1/contributions/{cid}/dissent",
                        json={"note": "I rated this, but the question was unfair"}, headers=h)
        assert r.status_code == 201
        assert client.post(f"/api/v1/contributions/{cid}/dissent", json={"note": ""}, headers=h).status_code == 422
    with nd.open_store() as store:
        (rec,) = list(store.records())
    critiques = [f for f in rec.feedback if f.kind == "critique"]
    assert len(critiques) == 1 and critiques[0].contributor == member and critiques[0].data["dissent"] is True
    assert critiques[0].text == "I rated this, but the question was unfair"
    assert b"question was unfair" not in (nd.path / "store.sqlite").read_bytes()


def test_objection_count_leaves_only_as_an_accounted_dp_count(tmp_path):
    """The data card's objection count: a `policy_objections` query answered through the release gate
    (a ledger entry, discrete Gaussian noise), never the exact count."""
    from coordinator.datacard import render
    from coordinator.queries import build_query
    from node.node_dir import NodeDir
    from node.queries import answer_query
    from node.releases import open_ledger
    from privacy.policy import Policy

    nd = NodeDir.init(tmp_path / "n", "gov", policy=Policy(community="gov", waiting_period_hours=0.0,
                                                             min_contributors=3, min_contributors_noise=0.0))
    pid = governance.propose(nd.path, _proposed_text(nd, epsilon_cap=5.0))["id"]
    for i, code in enumerate(members.create_invites(nd.path, 6)):
        member, _ = members.redeem(nd.path, code)
        members.contribute(nd.path, member, sharelm(f"question {i}"))
        if i < 4:
            governance.object_to(nd.path, member, pid, "no")
    with nd.open_store() as store:
        answer, values = answer_query(nd, store, build_query("policy_objections", 1.0), now=datetime.now(timezone.utc)
                                      + timedelta(seconds=1))
        entries = open_ledger(nd, store).entries()
    assert [c.key for c in answer.cells] == [["objected"]]
    assert answer.mechanism == "discrete_gaussian" and answer.noise_scale > 0 and answer.sensitivity == 1
    assert [e.body.release_kind for e in entries][-1] == "policy_objections"
    assert answer.ledger_seq == entries[-1].body.seq
    assert abs(values[0] - 4) < 8 * answer.noise_scale
    stats = {"queries": [{"query": {"name": "policy_objections"}, "pooled": [{"key": ["objected"], "value": values[0]}],
                          "pooled_noise_sd_per_cell": answer.noise_scale}]}
    card = render("fed", [], statistics=stats)
    assert "policy_objections" in card and "objected" in card
