"""A second round of attacks on the node service (issue 12 item 6), each played and shown to change nothing.

Deeply nested JSON, a cross-site form post carrying a planted ("tossed") CSRF cookie, DNS rebinding
onto the loopback service, a stolen operator cookie, two redemptions of one invitation at once, an
out-of-range proposal id, and withdrawal leaving nothing of the member anywhere in the node.
"""

from __future__ import annotations

import re
import threading

from fastapi.testclient import TestClient

from node.service import governance, members
from node.service.app import create_app
from node.service.security import LOOPBACK_HOSTS, host_name, json_depth_ok
from node.service.server import allowed_hosts_for
from node.service.store_access import StoreBusy
from tests.node.service.conftest import OPERATOR, make_node, sharelm
from tests.node.service.test_security import _join, _state

CANARY = "quokka-canary-7731-marmot"


def _csrf(client, path: str = "/member") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


def test_deeply_nested_json_is_a_422_and_stores_nothing(client, svc_node):
    _, h = _join(client)
    before = _state(svc_node)
    r = client.post("/api/v1/contributions", content=b"[" * 200_000, headers={**h, "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"  # was a 500 (RecursionError)
    body = sharelm()
    nest: dict = {}
    cur = nest
    for _ in range(40):
        cur["a"] = {}
        cur = cur["a"]
    body["conversation_metadata"]["x"] = nest
    r = client.post("/api/v1/contributions", json=body, headers=h)
    assert r.status_code == 422 and r.json()["field"] == "body"
    # the page's upload too
    client.cookies.set("cairn_session", h["Authorization"][7:])
    csrf = _csrf(client)
    r = client.post("/member/contribute", data={"csrf": csrf, "licence": "CC-BY-4.0"},
                    files={"file": ("deep.json", b"[" * 50_000, "application/json")})
    assert r.status_code == 422 and "nested deeper" in r.text
    assert _state(svc_node) == before
    assert json_depth_ok('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\""}')  # brackets in strings


def test_cross_site_form_post_with_a_tossed_csrf_cookie_is_refused(client, svc_node):
    """A sibling subdomain plants cairn_csrf=KNOWN; a sandboxed cross-site frame posts the form with
    csrf=KNOWN and `Origin: null` (what no-referrer makes browsers send on same-origin posts too)."""
    _, h = _join(client)
    token = h["Authorization"][7:]
    before = _state(svc_node)
    client.cookies.set("cairn_session", token)
    client.cookies.set("cairn_csrf", "tossed-by-a-sibling")
    form = {"csrf": "tossed-by-a-sibling", "chat": "User: hi\nAssistant: hello", "licence": "CC-BY-4.0"}
    for site in ("cross-site", "same-site"):
        r = client.post("/member/contribute", data=form, headers={"origin": "null", "sec-fetch-site": site})
        assert r.status_code == 403, site
        r = client.post("/member/withdraw", data={**form, "confirm": "yes"}, headers={"sec-fetch-site": site})
        assert r.status_code == 403, site
    assert _state(svc_node) == before
    assert members.authenticate(svc_node.path, token) is not None
    # the member's own browser (same-origin, Origin: null under no-referrer) still gets through
    r = client.post("/member/contribute", data=form, headers={"origin": "null", "sec-fetch-site": "same-origin"})
    assert r.status_code == 200 and "Thank you" in r.text
    # behind a TLS-terminating proxy the browser's Origin is https:// on the same host: accepted
    r = client.post("/member/contribute", data=form, headers={"origin": "https://testserver",
                                                              "sec-fetch-site": "same-origin"})
    assert r.status_code == 200 and "Thank you" in r.text
    assert client.post("/member/contribute", data=form, headers={"origin": "https://testserver.evil.example"}
                       ).status_code == 403


def test_dns_rebinding_cannot_reach_a_loopback_service(svc_node):
    assert allowed_hosts_for("127.0.0.1") == LOOPBACK_HOSTS and allowed_hosts_for("0.0.0.0") is None
    assert [host_name(h) for h in ("127.0.0.1:8750", "[::1]:8750", "LocalHost", "evil.example:80")] == \
        ["127.0.0.1", "::1", "localhost", "evil.example"]
    (code,) = members.create_invites(svc_node.path, 1)
    app = create_app(svc_node.path, operator_token=OPERATOR, tick_seconds=0, allowed_hosts=LOOPBACK_HOSTS)
    with TestClient(app, base_url="http://127.0.0.1:8750") as c:
        before = _state(svc_node)
        evil = {"host": "rebound.evil.example"}
        assert c.post("/api/v1/members", json={"invite": code}, headers=evil).status_code == 421
        assert c.get("/member", headers=evil).status_code == 421
        assert c.post("/api/v1/operator/invites", json={"count": 1},
                      headers={**evil, "Authorization": f"Bearer {OPERATOR}"}).status_code == 421
        assert _state(svc_node) == before
        assert c.post("/api/v1/members", json={"invite": code}).status_code == 201  # the real name works
        assert c.get("/healthz", headers={"host": "[::1]:8750"}).status_code == 200


def test_the_operator_cookie_is_not_the_operator_token(client):
    csrf = _csrf(client, "/operator")
    r = client.post("/operator/signin", data={"csrf": csrf, "token": OPERATOR}, follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert r.status_code == 303 and OPERATOR not in cookie
    assert "httponly" in cookie.lower() and "path=/operator" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert "Ledger" in client.get("/operator").text  # the session works
    client.cookies.clear()
    client.cookies.set("cairn_operator", OPERATOR, path="/operator")  # the raw token is no session
    assert "Ledger" not in client.get("/operator").text
    # a new process (a restart) ends the old sessions: the cookie is keyed by the process's secret
    value = re.search(r"cairn_operator=([^;]+)", cookie).group(1)
    with TestClient(create_app(client.app.state.node_dir.path, operator_token=OPERATOR, tick_seconds=0)) as c2:
        c2.cookies.set("cairn_operator", value, path="/operator")
        assert "Ledger" not in c2.get("/operator").text


def test_two_concurrent_redemptions_of_one_invitation(svc_node):
    (code,) = members.create_invites(svc_node.path, 1)
    results: list = []
    go = threading.Barrier(6)

    def redeem() -> None:
        go.wait()
        try:
            results.append(members.redeem(svc_node.path, code))
        except (members.ServiceError, StoreBusy) as e:
            results.append(e)

    threads = [threading.Thread(target=redeem) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [r for r in results if isinstance(r, tuple)]
    assert len(won) == 1
    assert all(isinstance(r, StoreBusy) or r.status == 410 for r in results if not isinstance(r, tuple))
    with svc_node.open_store() as store:
        assert store.conn.execute("SELECT COUNT(*) FROM members").fetchone()[0] == 1


def test_an_out_of_range_proposal_id_is_a_404(client, svc_node):
    _, h = _join(client)
    for pid in ("99999999999999999999999", "0", "-1"):
        r = client.post(f"/api/v1/proposals/{pid}/objections", json={"reason": "no"}, headers=h)
        assert r.status_code in (404, 422), pid


def test_withdrawal_leaves_nothing_of_the_member(tmp_path):
    """Pending and stored contributions, dissent notes on both, an objection: all gone, token dead."""
    nd = make_node(tmp_path / "n", waiting_hours=24.0)
    keep, _ = members.redeem(nd.path, members.create_invites(nd.path, 1)[0])
    members.contribute(nd.path, keep, sharelm("What grows in tundra?"))
    gone, token = members.redeem(nd.path, members.create_invites(nd.path, 1)[0])
    stored = members.contribute(nd.path, gone, sharelm(f"Tell me about {CANARY} stored"))["id"]
    from datetime import datetime, timedelta, timezone

    assert members.promote_due(nd.path, now=datetime.now(timezone.utc) + timedelta(hours=25)) == 2
    pending = members.contribute(nd.path, gone, sharelm(f"Tell me about {CANARY} pending"))["id"]
    governance.dissent(nd.path, gone, stored, f"unfair question {CANARY}")
    governance.dissent(nd.path, gone, pending, f"unfair question {CANARY}")
    new_policy = nd.policy_path.read_text().replace("waiting_period_hours = 24.0", "waiting_period_hours = 48.0")
    pid = governance.propose(nd.path, new_policy)["id"]
    governance.object_to(nd.path, gone, pid, f"I object {CANARY}")
    governance.object_to(nd.path, keep, pid, "too slow")
    out = members.withdraw(nd.path, gone)
    assert out["withdrawn"] and out["contributions_deleted"] == 2
    assert members.authenticate(nd.path, token) is None
    with nd.open_store() as store:
        q = store.conn.execute
        assert q("SELECT COUNT(*) FROM contributions WHERE member=?", (gone,)).fetchone()[0] == 0
        assert q("SELECT COUNT(*) FROM members WHERE id=?", (gone,)).fetchone()[0] == 0
        assert q("SELECT COUNT(*) FROM feedback WHERE contributor=?", (gone,)).fetchone()[0] == 0
        assert q("SELECT COUNT(*) FROM objections").fetchone()[0] == 1  # only the other member's
        assert [r.owner for r in store.records()] == [keep]
        assert store.is_withdrawn(gone)
    for f in nd.path.rglob("*"):
        if f.is_file():
            assert CANARY.encode() not in f.read_bytes(), f
    for fn in (members.me, members.export):
        try:
            fn(nd.path, gone)
            raise AssertionError("a withdrawn member still reads their data")
        except members.ServiceError as e:
            assert e.status == 401


def test_a_refusal_never_echoes_what_was_sent(client, svc_node):
    """The importers' messages end in "got 'VALUE'": the service names the field, never the value."""
    _, h = _join(client)
    bad = [
        {"conversation": [{"role": CANARY, "content": "hi"}, {"role": "assistant", "content": "ok"}]},
        {"conversation": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}],
         "conversation_metadata": {"rate": CANARY}},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}], "thumbs": CANARY},
    ]
    for body in bad:
        r = client.post("/api/v1/contributions", json={**body, "licence": "CC-BY-4.0"}, headers=h)
        assert r.status_code == 422 and r.json()["field"] and CANARY.lower() not in r.text.lower()
    client.cookies.set("cairn_session", h["Authorization"][7:])
    r = client.post("/member/contribute", data={"csrf": _csrf(client), "chat": bad[0]["conversation"] and
                                                 '{"messages": [{"role": "%s", "content": "hi"}]}' % CANARY,
                                                 "licence": "CC-BY-4.0"})
    assert r.status_code == 422 and CANARY not in r.text


def test_one_member_cannot_flood_the_node_with_waiting_contributions(client, svc_node, monkeypatch):
    monkeypatch.setattr(members, "MAX_PENDING", 2)
    _, h = _join(client)
    for i in range(2):
        assert client.post("/api/v1/contributions", json=sharelm(f"q{i}"), headers=h).status_code == 201
    before = _state(svc_node)
    r = client.post("/api/v1/contributions", json=sharelm("one too many"), headers=h)
    assert r.status_code == 429 and _state(svc_node) == before


def test_a_short_operator_token_is_refused(svc_node, monkeypatch):
    import pytest

    from node.service.server import ServeError, operator_token_for

    monkeypatch.setenv("CAIRN_OPERATOR_TOKEN", "admin")
    with pytest.raises(ServeError):
        operator_token_for(svc_node)
    monkeypatch.delenv("CAIRN_OPERATOR_TOKEN")
    shown: list[str] = []
    digest, where = operator_token_for(svc_node, shown.append)  # made for the operator: long, random, 0600
    assert (svc_node.key_dir / "operator.token").stat().st_mode & 0o077 == 0
    token = shown[0].rsplit(" ", 1)[1]
    assert len(token) >= 32 and token not in (svc_node.key_dir / "operator.token").read_text()


def test_a_stolen_operator_token_file_does_not_sign_the_operator_in(svc_node):
    """keys/operator.token keeps only the token's hash: presenting the file's content (the digest) fails,
    the token printed once passes."""
    from fastapi.testclient import TestClient

    from node.service.app import create_app
    from node.service.server import operator_token_for

    shown: list[str] = []
    digest, _ = operator_token_for(svc_node, shown.append)
    token = shown[0].rsplit(" ", 1)[1]
    stolen = (svc_node.key_dir / "operator.token").read_text().strip()
    with TestClient(create_app(svc_node.path, operator_token=digest, tick_seconds=0)) as c:
        assert c.post("/api/v1/operator/invites", json={"count": 1},
                      headers={"Authorization": f"Bearer {stolen}"}).status_code == 401
        assert c.post("/api/v1/operator/invites", json={"count": 1},
                      headers={"Authorization": f"Bearer {token}"}).status_code in (200, 201)


def test_a_deeply_nested_policy_proposal_is_a_422(client, svc_node):
    before = _state(svc_node)
    r = client.post("/api/v1/operator/proposals", json={"policy": "a = " + "[" * 5000},
                    headers={"Authorization": f"Bearer {OPERATOR}"})
    assert r.status_code == 422 and r.json()["field"] == "policy" and _state(svc_node) == before


def test_an_ipv6_client_cannot_dodge_its_rate_limit_by_changing_address():
    from node.service.security import RateLimiter, client_key

    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1234") == "2001:db8::/64"
    assert client_key("2001:db8:0:1::1") != client_key("2001:db8::1")
    assert client_key("::ffff:10.0.0.1") == "10.0.0.1" and client_key("10.0.0.1") == "10.0.0.1"
    limiter = RateLimiter(3)
    allowed = [limiter.allow(client_key(f"2001:db8::{i:x}")) for i in range(1, 6)]
    assert allowed == [True, True, True, False, False]


def test_serve_runs_uvicorn_quietly_on_loopback_with_bounded_connections(svc_node, monkeypatch):
    import uvicorn

    from node.service import server

    seen: dict = {}
    monkeypatch.setenv("CAIRN_OPERATOR_TOKEN", OPERATOR)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    server.serve(svc_node.path, echo=lambda *_: None)
    assert seen["host"] == "127.0.0.1" and seen["ssl_certfile"] is None
    assert seen["access_log"] is False and seen["proxy_headers"] is False and seen["server_header"] is False
    assert seen["limit_concurrency"] == server.MAX_CONNECTIONS
    with TestClient(seen["app"], base_url="http://127.0.0.1:8750") as c:  # answers only its loopback names
        assert c.get("/healthz").status_code == 200
        assert c.get("/healthz", headers={"host": "attacker.example"}).status_code == 421


def test_an_upload_past_the_waiting_limit_stores_none_of_it(client, svc_node, monkeypatch):
    import json

    monkeypatch.setattr(members, "MAX_PENDING", 2)
    _, h = _join(client)
    client.cookies.set("cairn_session", h["Authorization"][7:])
    before = _state(svc_node)
    items = "\n".join(json.dumps({k: v for k, v in sharelm(f"q{i}").items() if k != "licence"}) for i in range(3))
    r = client.post("/member/contribute", data={"csrf": _csrf(client), "licence": "CC-BY-4.0"},
                    files={"file": ("export.jsonl", items.encode(), "application/json")})
    assert r.status_code == 429 and _state(svc_node) == before  # all or nothing, even when the third is refused


def test_behind_a_tls_proxy_cookies_are_secure_and_only_the_public_name_is_answered(svc_node, monkeypatch):
    import pytest
    import uvicorn

    from node.service import server

    seen: dict = {}
    monkeypatch.setenv("CAIRN_OPERATOR_TOKEN", OPERATOR)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    with pytest.raises(server.ServeError):
        server.serve(svc_node.path, echo=lambda *_: None, public_url="javascript:alert(1)")
    server.serve(svc_node.path, echo=lambda *_: None, public_url="https://feedback.example.org")
    with TestClient(seen["app"], base_url="http://feedback.example.org") as c:
        r = c.get("/member")
        assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower()
        assert r.headers["strict-transport-security"].startswith("max-age=")
        assert c.get("/member", headers={"host": "rebound.evil.example"}).status_code == 421
        assert c.get("/healthz", headers={"host": "127.0.0.1:8750"}).status_code == 200
