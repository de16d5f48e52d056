"""The API contract driven with curl against a real `cairn node serve` (issue 12, "Done when").

invite (CLI) -> redeem -> contribute -> GET /me -> export -> delete -> withdraw, and the canary: text
contributed through the API is in no file of the node directory, and after withdrawal nowhere in the store.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.node.service.conftest import ROOT, Server, curl, make_node, sharelm

CANARY = "zebra-canary-7741-quokka"


def _files_contain(path, needle: bytes) -> list[str]:
    return [str(p) for p in path.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    nd = make_node(tmp_path_factory.mktemp("svc") / "node")
    server = Server(nd)
    try:
        yield nd, server
    finally:
        server.stop()


def test_member_journey_with_curl(served):
    nd, server = served
    out = subprocess.run([sys.executable, "-m", "cairn.cli", "node", "invite", str(nd.path), "--count", "2", "--json"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    invites = json.loads(out)["invites"]
    assert len(invites) == 2 and all(i["code"] and "/join?invite=" in i["url"] for i in invites)

    code, body = curl("-X", "POST", f"{server.url}/api/v1/members", data={"invite": invites[0]["code"]})
    assert code == 201, body
    member, token = body["member_id"], body["token"]
    assert member.startswith("m-") and len(token) >= 32

    code, body = curl("-X", "POST", f"{server.url}/api/v1/contributions", token=token,
                      data=sharelm(f"Tell me about rivers. {CANARY}"))
    assert code == 201, body
    first = body["id"]
    assert body["status"] == "pending" and body["eligible_from"]
    code, body = curl("-X", "POST", f"{server.url}/api/v1/contributions", token=token, data={
        "messages": [{"role": "user", "content": "Name a mountain."}, {"role": "assistant", "content": "Denali."}],
        "model": "model-b", "rating": 4, "critique": "Short but right.", "licence": "CC-BY-4.0"})
    assert code == 201, body
    second = body["id"]

    code, me = curl(f"{server.url}/api/v1/me", token=token)
    assert code == 200
    assert [c["id"] for c in me["contributions"]] == [first, second]
    assert all(c["status"] == "pending" for c in me["contributions"])
    assert me["consent"]["licence"] == "CC-BY-4.0" and me["consent"]["waiting_period_hours"] == 24
    assert me["budget"]["epsilon_remaining"] == me["budget"]["epsilon_cap"]
    assert me["releases_since_consent"] == []

    code, exported = curl(f"{server.url}/api/v1/me/export", token=token)
    assert code == 200 and CANARY in json.dumps(exported)  # the member gets their own text back
    assert _files_contain(nd.path, CANARY.encode()) == []  # ... and it is sealed at rest, in every file

    code, _ = curl("-X", "DELETE", f"{server.url}/api/v1/contributions/{second}", token=token)
    assert code == 204
    code, me = curl(f"{server.url}/api/v1/me", token=token)
    assert [c["id"] for c in me["contributions"]] == [first]

    code, body = curl("-X", "DELETE", f"{server.url}/api/v1/me", token=token)
    assert code == 200 and body["withdrawn"] is True
    code, _ = curl(f"{server.url}/api/v1/me", token=token)
    assert code == 401  # the token is revoked

    with nd.open_store() as store:
        assert store.is_withdrawn(member)
        assert store.conn.execute("SELECT COUNT(*) FROM contributions").fetchone()[0] == 0
        assert not any(CANARY in json.dumps([m.text for m in r.prompt]) for r in store.records())
    assert _files_contain(nd.path, CANARY.encode()) == []
    log = server.log.read_bytes()
    for secret in (token, member, invites[0]["code"], first, CANARY):
        assert secret.encode() not in log, "the service log must not carry tokens, ids, codes or text"


def test_bad_input_names_the_field_and_stores_nothing(served):
    nd, server = served
    _, body = curl("-X", "POST", f"{server.url}/api/v1/operator/invites", data={"count": 1},
                   token="operator-secret-for-tests")
    code, body = curl("-X", "POST", f"{server.url}/api/v1/members", data={"invite": body["invites"][0]["code"]})
    token = body["token"]
    cases = [
        ({**sharelm(), "licence": "All-rights-reserved"}, "licence"),
        ({k: v for k, v in sharelm().items() if k != "licence"}, "licence"),
        ({**sharelm(), "conversation": [{"role": "user", "content": "no reply"}]}, "conversation"),
        ({**sharelm(), "conversation_metadata": {"rate": "sideways"}}, "conversation_metadata.rate"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "rating": 9,
          "licence": "CC0-1.0"}, "feedback.rating"),
        ({"licence": "CC0-1.0"}, "conversation"),
    ]
    with nd.open_store() as store:
        before = [store.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("contributions", "conversations")]
    for payload, field in cases:
        code, body = curl("-X", "POST", f"{server.url}/api/v1/contributions", token=token, data=payload)
        assert code == 422 and body["field"] == field, (field, body)
    code, body = curl("-X", "POST", f"{server.url}/api/v1/contributions", token=token, data=None)
    assert code == 422
    with nd.open_store() as store:
        assert [store.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("contributions", "conversations")] == before


def test_canary_sealed_once_stored_and_gone_after_withdrawal(tmp_path):
    """With no waiting period the contribution is stored at once (conversations, feedback, critique):
    the canary is in no file; after withdrawal it is nowhere in the store, decrypted or not."""
    from fastapi.testclient import TestClient

    from node.service.app import create_app
    from node.service.members import create_invites

    nd = make_node(tmp_path / "node", waiting_hours=0.0)
    with TestClient(create_app(nd.path, tick_seconds=0)) as c:
        tok = c.post("/api/v1/members", json={"invite": create_invites(nd.path, 1)[0]}).json()["token"]
        h = {"Authorization": f"Bearer {tok}"}
        r = c.post("/api/v1/contributions", headers=h, json={
            "messages": [{"role": "user", "content": f"My code word is {CANARY}."},
                         {"role": "assistant", "content": f"Noted: {CANARY}."}],
            "thumbs": "down", "critique": f"It repeated {CANARY}", "preferred": f"Never repeat {CANARY}",
            "licence": "CC0-1.0"})
        assert r.status_code == 201 and r.json()["status"] == "eligible"
        cid = r.json()["id"]
        assert c.post(f"/api/v1/contributions/{cid}/dissent", json={"note": f"unfair {CANARY}"},
                      headers=h).status_code == 201
        with nd.open_store() as store:
            (rec,) = list(store.records())
            assert CANARY in rec.prompt[0].text and len(rec.responses) == 2
        assert _files_contain(nd.path, CANARY.encode()) == []
        assert c.delete("/api/v1/me", headers=h).status_code == 200
    assert _files_contain(nd.path, CANARY.encode()) == []
    with nd.open_store() as store:
        assert list(store.records()) == []
        for table in ("conversations", "feedback", "contributions", "members", "objections"):
            assert store.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0


def test_contributions_are_pii_redacted_as_on_import(client, svc_node):
    from node.service.members import create_invites
    from node.status import node_status

    tok = client.post("/api/v1/members", json={"invite": create_invites(svc_node.path, 1)[0]}).json()["token"]
    h = {"Authorization": f"Bearer {tok}"}
    r = client.post("/api/v1/contributions", headers=h, json={
        "messages": [{"role": "user", "content": "Write to jane.doe@example.org about it."},
                     {"role": "assistant", "content": "Sure."}],
        "preferred": "I will not mail jane.doe@example.org for you.", "licence": "CC-BY-4.0"})
    assert r.status_code == 201
    exported = client.get("/api/v1/me/export", headers=h).text
    assert "jane.doe@example.org" not in exported and "Write to" in exported
    with svc_node.open_store() as store:
        assert node_status(svc_node, store)["redactions"].get("email") == 2
