"""The member and operator pages without a browser (issue 12 item 5): forms, uploads, CSRF, escaping, the chart.

In-process (FastAPI's TestClient) and fast; the journey in a real browser is test_browser.py.
"""

from __future__ import annotations

import json
import re

import pytest

from node.service import members
from node.service.chart import budget_svg
from node.service.members import ServiceError
from node.service.page_data import contribution_payloads, countdown, parse_transcript
from tests.node.service.conftest import OPERATOR

CHAT = "User: What is a cairn?\nAssistant: A human-made pile of stones, often a trail marker."


def _csrf(client, path: str = "/member") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


def _join(client, nd) -> tuple[str, str]:
    csrf = _csrf(client)
    (code,) = members.create_invites(nd.path, 1)
    r = client.post("/member/redeem", data={"csrf": csrf, "invite": code})
    assert r.status_code == 201 and "Keep your token" in r.text
    return csrf, re.search(r'id="new-token"[^>]*value="([^"]+)"', r.text).group(1)


def _stored(nd) -> int:
    with nd.open_store() as store:
        return store.conn.execute("SELECT COUNT(*) FROM contributions").fetchone()[0]


def test_pages_are_plain_html_under_the_csp(client):
    r = client.get("/member")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'none'" in r.headers["content-security-policy"] and r.headers["cache-control"] == "no-store"
    assert "<script" not in r.text and "style=" not in r.text and 'name="viewport"' in r.text
    assert 'rel="stylesheet" href="/static/cairn.css"' in r.text
    css = client.get("/static/cairn.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/member"


def test_invite_link_is_escaped_and_prefills_the_join_form(client):
    assert re.search(r'<input[^>]*id="invite"[^>]* value="Ab-12_x"[^>]* required>', client.get("/join?invite=Ab-12_x").text)
    r = client.get("/join", params={"invite": '"><script>alert(1)</script>'})
    assert "<script>alert" not in r.text and "&lt;script&gt;" in r.text


def test_form_posts_without_the_csrf_token_change_nothing(client, svc_node):
    csrf, _token = _join(client, svc_node)
    form = {"chat": CHAT, "rating": "4", "licence": "CC-BY-4.0"}
    assert client.post("/member/contribute", data=form).status_code == 403
    assert client.post("/member/contribute", data={**form, "csrf": "forged"}).status_code == 403
    r = client.post("/member/contribute", data={**form, "csrf": csrf}, headers={"origin": "https://evil.example"})
    assert r.status_code == 403 and _stored(svc_node) == 0
    r = client.post("/member/contribute", data={**form, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and _stored(svc_node) == 1


def test_upload_an_export_all_or_nothing(client, svc_node):
    csrf, token = _join(client, svc_node)
    conv = {"conversation": [{"role": "user", "content": "Name a blue flower"},
                             {"role": "assistant", "content": "Cornflower."}], "model_name": "m-a",
            "conversation_metadata": {"rate": "thumbs up"}}
    good = "\n".join(json.dumps(c) for c in (conv, {**conv, "conversation_metadata": {}})).encode()
    bad = good + b"\n" + json.dumps({"conversation": [{"role": "user", "content": "no reply"}]}).encode()
    data = {"csrf": csrf, "chat": "", "rating": "5", "licence": "CC0-1.0"}
    r = client.post("/member/contribute", data=data, files={"file": ("export.jsonl", bad, "application/json")})
    assert r.status_code == 422 and "field: conversation" in r.text and _stored(svc_node) == 0
    r = client.post("/member/contribute", data=data, files={"file": ("export.jsonl", good, "application/json")})
    assert r.status_code == 200 and "conversations are stored" in r.text
    me = client.get("/api/v1/me", headers={"authorization": f"Bearer {token}"}).json()
    assert [c["licence"] for c in me["contributions"]] == ["CC0-1.0", "CC0-1.0"]
    assert all(c["status"] == "pending" for c in me["contributions"])
    r = client.post("/member/contribute", data={**data, "licence": "All-rights-reserved"},
                    files={"file": ("export.jsonl", good, "application/json")})
    assert r.status_code == 422 and "field: licence" in r.text and _stored(svc_node) == 2


def test_withdraw_needs_confirmation_and_signs_out(client, svc_node):
    csrf, token = _join(client, svc_node)
    client.post("/member/contribute", data={"csrf": csrf, "chat": CHAT, "licence": "CC-BY-4.0"})
    r = client.post("/member/withdraw", data={"csrf": csrf})
    assert r.status_code == 422 and "field: confirm" in r.text and _stored(svc_node) == 1
    r = client.post("/member/withdraw", data={"csrf": csrf, "confirm": "yes"})
    assert r.status_code == 200 and "everything you contributed is deleted (1 contributions)" in r.text
    assert _stored(svc_node) == 0 and members.authenticate(svc_node.path, token) is None
    assert "Join with an invitation" in client.get("/member").text


def test_operator_page_is_behind_the_operator_token(client):
    csrf = _csrf(client, "/operator")
    r = client.get("/operator")
    assert "operator-token" in r.text and "Ledger" not in r.text
    r = client.post("/operator/invites", data={"csrf": csrf, "count": "3"})
    assert r.status_code == 401 and "invite-code" not in r.text
    assert client.post("/operator/signin", data={"csrf": csrf, "token": "guess"}).status_code == 401
    r = client.post("/operator/signin", data={"csrf": csrf, "token": OPERATOR}, follow_redirects=False)
    assert r.status_code == 303 and "path=/operator" in r.headers["set-cookie"].lower()
    r = client.get("/operator")
    assert '<svg class="chart"' in r.text and "no releases yet" in r.text
    r = client.post("/operator/invites", data={"csrf": csrf, "count": "3"})
    assert r.status_code == 201 and len(re.findall(r'class="mono invite-code"', r.text)) == 3 and "/join?invite=" in r.text


def test_pasted_transcripts_and_payloads():
    assert parse_transcript("User: hi\nthere\nAssistant: hello") == [
        {"role": "user", "content": "hi\nthere"}, {"role": "assistant", "content": "hello"}]
    with pytest.raises(ServiceError) as e:
        contribution_payloads("just some text", b"", "", "", "", "", "CC0-1.0")
    assert e.value.field == "chat"
    (p,) = contribution_payloads(CHAT, b"", "gpt-x", "2", "down", "too terse", "CC0-1.0")
    assert p["feedback"] == {"rating": 2, "thumbs": "down", "comment": "too terse"} and p["model"] == "gpt-x"
    with pytest.raises(ServiceError) as e:
        contribution_payloads(CHAT, b"", "", "9", "", "", "CC0-1.0")
    assert e.value.field == "rating"
    assert countdown("2000-01-01T00:00:00+00:00") == "now"


def test_budget_chart_is_drawn_from_the_timeline():
    timeline = [{"seq": i, "kind": "coverage", "claimed_epsilon": 0.5 * (i + 1), "created_at": "t"} for i in range(4)]
    svg = str(budget_svg(timeline, cap=8.0, delta=1e-6))
    assert svg.count('<circle class="point"') == 4 and 'class="cap"' in svg and 'role="img"' in svg
    assert "2 spent" in svg and "no releases yet" in str(budget_svg([], 8.0, 1e-6))
    evil = [{"seq": 0, "kind": "<script>", "claimed_epsilon": 1.0, "created_at": "t"}]
    assert "<script>" not in str(budget_svg(evil, 8.0, 1e-6))
