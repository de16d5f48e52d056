"""Issue 12 item 6: each attack gets the right 4xx and changes nothing; secrets stay out of logs and errors."""

from __future__ import annotations

import hashlib
import logging
import re

import pytest

from node.service import members
from tests.node.service.conftest import OPERATOR, sharelm

CANARY = "okapi-canary-5150-tamarin"


def _join(client) -> tuple[str, dict]:
    r = client.post("/api/v1/operator/invites", json={"count": 1}, headers={"Authorization": f"Bearer {OPERATOR}"})
    assert r.status_code == 201
    r = client.post("/api/v1/members", json={"invite": r.json()["invites"][0]["code"]})
    assert r.status_code == 201
    return r.json()["member_id"], {"Authorization": f"Bearer {r.json()['token']}"}


def _state(nd) -> tuple:
    """Everything a request could change: the store's rows and the files' digests."""
    with nd.open_store() as store:
        rows = tuple(store.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                     for t in ("members", "invites", "contributions", "conversations", "feedback", "objections"))
        used = store.conn.execute("SELECT COUNT(*) FROM invites WHERE used_at IS NOT NULL").fetchone()[0]
    return rows + (used, hashlib.sha256(nd.policy_path.read_bytes()).hexdigest())


def test_forged_token_is_refused_and_changes_nothing(client, svc_node):
    _join(client)
    before = _state(svc_node)
    for token in ("forged", "A" * 43, "", "x" * 5000):
        h = {"Authorization": f"Bearer {token}"}
        assert client.post("/api/v1/contributions", json=sharelm(), headers=h).status_code == 401
        assert client.get("/api/v1/me", headers=h).status_code == 401
        assert client.delete("/api/v1/me", headers=h).status_code == 401
    assert client.get("/api/v1/me").status_code == 401
    assert client.post("/api/v1/operator/invites", json={"count": 1},
                       headers={"Authorization": "Bearer not-the-operator"}).status_code == 401
    assert _state(svc_node) == before


def test_tokens_are_stored_as_keyed_hashes_and_compared_in_constant_time(client, svc_node, monkeypatch):
    member, h = _join(client)
    token = h["Authorization"][7:]
    raw = (svc_node.path / "store.sqlite").read_bytes()
    assert token.encode() not in raw
    calls = []
    real = members.hmac.compare_digest
    monkeypatch.setattr(members.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    assert client.get("/api/v1/me", headers=h).status_code == 200
    assert calls, "the token must be compared with hmac.compare_digest"


def test_replayed_invite_is_refused_and_changes_nothing(client, svc_node):
    code = members.create_invites(svc_node.path, 1)[0]
    assert client.post("/api/v1/members", json={"invite": code}).status_code == 201
    before = _state(svc_node)
    r = client.post("/api/v1/members", json={"invite": code})
    assert r.status_code == 410 and r.json()["field"] == "invite"
    assert client.post("/api/v1/members", json={"invite": "never-issued"}).status_code == 403
    assert client.post("/api/v1/members", json={}).status_code == 400  # no open enrolment by default
    assert _state(svc_node) == before


def test_open_enrolment_is_a_policy_switch(tmp_path):
    from fastapi.testclient import TestClient

    from node.service.app import create_app
    from tests.node.service.conftest import make_node

    nd = make_node(tmp_path / "open", open_enrolment=True)
    with TestClient(create_app(nd.path, tick_seconds=0)) as c:
        assert c.post("/api/v1/members", json={}).status_code == 201


def test_oversized_body_is_refused_and_changes_nothing(client, svc_node):
    _, h = _join(client)
    before = _state(svc_node)
    big = sharelm("x" * 1_200_000)
    assert client.post("/api/v1/contributions", json=big, headers=h).status_code == 413

    def chunks():  # no Content-Length: the limit holds on the streamed body too
        for _ in range(30):
            yield b"x" * 50_000

    r = client.post("/api/v1/contributions", content=chunks(), headers={**h, "content-type": "application/json"})
    assert r.status_code == 413
    assert _state(svc_node) == before


@pytest.mark.parametrize("path", [
    "/api/v1/contributions/..%2F..%2Fkeys%2Fstore.key",
    "/api/v1/contributions/%2e%2e%2f%2e%2e%2fnode.toml",
    "/api/v1/contributions/../../keys/store.key",
    "/static/..%2F..%2Fkeys%2Fstore.key",
    "/static/../../node.toml",
])
def test_path_traversal_reaches_nothing(client, svc_node, path):
    _, h = _join(client)
    before = _state(svc_node)
    key = (svc_node.path / "keys" / "store.key").read_bytes()
    for method in ("GET", "DELETE", "POST"):
        r = client.request(method, path, headers=h)
        assert r.status_code in (404, 405), (method, path, r.status_code)
        assert key not in r.content and b"node_id" not in r.content
    assert _state(svc_node) == before


def test_another_members_contribution_is_out_of_reach(client, svc_node):
    _, alice = _join(client)
    _, mallory = _join(client)
    cid = client.post("/api/v1/contributions", json=sharelm(), headers=alice).json()["id"]
    before = _state(svc_node)
    assert client.delete(f"/api/v1/contributions/{cid}", headers=mallory).status_code == 404
    assert client.post(f"/api/v1/contributions/{cid}/dissent", json={"note": "mine now"},
                       headers=mallory).status_code == 404
    assert cid not in client.get("/api/v1/me/export", headers=mallory).text
    assert _state(svc_node) == before
    assert [c["id"] for c in client.get("/api/v1/me", headers=alice).json()["contributions"]] == [cid]


def test_csrf_post_on_a_form_is_refused_and_changes_nothing(client, svc_node):
    pytest.importorskip("node.service.pages")
    _, h = _join(client)
    cid = client.post("/api/v1/contributions", json=sharelm(), headers=h).json()["id"]
    before = _state(svc_node)
    client.cookies.set("cairn_session", h["Authorization"][7:])
    # a forged cross-site form: the session cookie rides along, the CSRF token cannot
    r = client.post(f"/member/contributions/{cid}/delete", data={})
    assert r.status_code == 403
    client.cookies.set("cairn_csrf", "cookie-value")
    r = client.post(f"/member/contributions/{cid}/delete", data={"csrf": "guessed-value"})
    assert r.status_code == 403
    r = client.post(f"/member/contributions/{cid}/delete", data={"csrf": "cookie-value"},
                    headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert _state(svc_node) == before
    # the API itself takes no cookie: a cross-site request carrying only cookies is unauthenticated
    assert client.delete("/api/v1/me").status_code == 401
    assert _state(svc_node) == before
    # and the genuine form, with the token its page gave, works
    client.cookies.clear()
    client.cookies.set("cairn_session", h["Authorization"][7:])
    page = client.get("/member").text
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r = client.post(f"/member/contributions/{cid}/delete", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/api/v1/me", headers=h).json()["contributions"] == []


def test_per_token_rate_limit(svc_node):
    from fastapi.testclient import TestClient

    from node.service.app import create_app

    with TestClient(create_app(svc_node.path, tick_seconds=0, rate_per_token=3)) as c:
        _, h = _join_with(c, svc_node)
        codes = [c.get("/api/v1/me", headers=h).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        _, other = _join_with(c, svc_node)  # another member's bucket is full
        assert c.get("/api/v1/me", headers=other).status_code == 200


def _join_with(c, nd):
    r = c.post("/api/v1/members", json={"invite": members.create_invites(nd.path, 1)[0]})
    return r.json()["member_id"], {"Authorization": f"Bearer {r.json()['token']}"}


def test_public_signed_head(client):
    r = client.get("/api/v1/head")
    assert r.status_code == 200 and r.json()


def test_security_headers(client):
    for path in ("/api/v1/head", "/api/v1/me", "/healthz"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'none'" in csp and "unsafe-inline" not in csp
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"


def test_no_text_token_or_id_in_logs_or_error_pages(client, svc_node, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    member, h = _join(client)
    token = h["Authorization"][7:]
    r = client.post("/api/v1/contributions", json=sharelm(f"secret {CANARY}"), headers=h)
    cid = r.json()["id"]
    bad = client.post("/api/v1/contributions", json={**sharelm(CANARY), "licence": CANARY}, headers=h)
    assert bad.status_code == 422 and CANARY not in bad.text  # the error names the field, never echoes it
    bad = client.post("/api/v1/contributions", content=b'{"conversation": "' + CANARY.encode(), headers=h)
    assert bad.status_code == 422 and CANARY not in bad.text

    def boom(*a, **k):
        raise ValueError(f"exploded on {CANARY} for {member}")

    monkeypatch.setattr(members, "me", boom)
    crash = client.get("/api/v1/me", headers=h)
    assert crash.status_code == 500 and crash.json() == {"detail": "internal error"}
    client.delete(f"/api/v1/contributions/{cid}", headers=h)
    server_side = [r for r in caplog.records if not r.name.startswith("httpx")]  # not the test client's own log
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in server_side)
    assert "POST /api/v1/contributions" in logged  # requests are logged, by route template
    for secret in (CANARY, token, member, cid):
        assert secret not in logged


def test_https_when_certificates_are_given(tmp_path):
    from deploy.certs import generate
    from tests.node.service.conftest import Server, curl, make_node

    certs = generate(tmp_path / "certs")
    nd = make_node(tmp_path / "node")
    opts = ("--cacert", str(certs.ca_cert))
    server = Server(nd, "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key), scheme="https",
                    curl_opts=opts)
    try:
        code, body = curl(*opts, "-X", "POST", f"{server.url}/api/v1/members",
                          data={"invite": members.create_invites(nd.path, 1)[0]})
        assert code == 201 and body["token"]
        import subprocess

        head = subprocess.run(["curl", "-sS", "-I", *opts, f"{server.url}/healthz"], capture_output=True,
                              text=True).stdout.lower()
        assert "strict-transport-security" in head
        plain = subprocess.run(["curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{server.port}/healthz"],
                               capture_output=True, text=True)
        assert '"ok"' not in plain.stdout  # no plain HTTP on the TLS port
    finally:
        server.stop()


def test_serve_binds_loopback_by_default():
    from click.testing import CliRunner

    from cairn.service_cli import serve

    opt = next(p for p in serve.params if p.name == "host")
    assert opt.default == "127.0.0.1"
    r = CliRunner().invoke(serve, ["/nonexistent", "--tls-cert", "x.pem"])
    assert r.exit_code != 0


def test_a_passphrase_node_derives_its_key_once(tmp_path, monkeypatch):
    """scrypt per request would make every request slow and let anyone burn the node's CPU."""
    from fastapi.testclient import TestClient

    import node.node_dir as node_dir_mod
    from node.node_dir import NodeDir
    from node.service.app import create_app

    monkeypatch.setenv("SVC_PASS", "correct horse battery staple")
    nd = NodeDir.init(tmp_path / "n", "pp", passphrase="correct horse battery staple", passphrase_env="SVC_PASS")
    calls = []
    real = node_dir_mod.master_from_passphrase
    monkeypatch.setattr(node_dir_mod, "master_from_passphrase", lambda *a: calls.append(1) or real(*a))
    with TestClient(create_app(nd.path, tick_seconds=0)) as c:
        code = members.create_invites(nd.path, 1)[0]
        calls.clear()
        h = {"Authorization": f"Bearer {c.post('/api/v1/members', json={'invite': code}).json()['token']}"}
        assert c.post("/api/v1/contributions", json=sharelm(), headers=h).status_code == 201
        for _ in range(3):
            assert c.get("/api/v1/me", headers=h).status_code == 200
    assert len(calls) <= 1
