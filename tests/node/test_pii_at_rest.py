"""Review 13-14 findings 2 and 5: no planted identifier reaches the store's bytes in clear, whatever column an
importer puts it in (feedback labels: Open WebUI reason and tags; model names from a mapped CSV column),
and a contributor id that is an e-mail address or phone number is refused at import; SSNs and NHS
numbers are counted under their own kind, not as phones."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cairn.cli import cli

PHONE_REASON, EMAIL_TAG, PHONE_TAG = "07700 900123", "eve@example.com", "212-555-0175"
PHONE_MODEL = "415-555-0199"


def run(*args, ok=True):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def store_bytes(nd: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (nd / "store.sqlite", nd / "store.sqlite-wal") if p.exists())


def owui_file(path: Path) -> Path:
    def msg(mid, parent, role, content, **kw):
        return {"id": mid, "parentId": parent, "childrenIds": [], "role": role, "content": content, **kw}
    chat = {"history": {"messages": {"u1": msg("u1", None, "user", "hello"),
                                     "a1": msg("a1", "u1", "assistant", "hi", model="llama3.1:8b")}, "currentId": "a1"}}
    fb = {"id": "fb-1", "user_id": "6f1e-u1", "version": 0, "type": "rating",
          "data": {"rating": -1, "model_id": "llama3.1:8b", "reason": f"Call me {PHONE_REASON}",
                   "comment": "", "tags": [EMAIL_TAG, f"call {PHONE_TAG}", "accuracy"], "details": {"rating": 3}},
          "meta": {"model_id": "llama3.1:8b", "message_id": "a1", "message_index": 2, "chat_id": "chat-1"},
          "snapshot": {"chat": {"id": "chat-1", "user_id": "6f1e-u1", "title": "x", "chat": chat}},
          "created_at": 1720000003, "updated_at": 1720000003}
    path.write_text(json.dumps([fb]))
    return path


def test_feedback_labels_and_model_names_are_redacted_before_storage(tmp_path):
    nd = tmp_path / "node"
    run("node", "init", nd, "--name", "club")
    out = json.loads(run("node", "import", nd, owui_file(tmp_path / "owui.json"), "--json").output)
    assert out["format"] == "openwebui"
    assert out["redactions"]["email"] >= 1 and out["redactions"]["phone"] >= 2  # counted like the rest
    csv = tmp_path / "t.csv"
    csv.write_text(f"question,ans1,ans2,winner,user,judge\nhi,a,b,ans1,u-1,gpt-4o {PHONE_MODEL}\n")
    run("node", "import", nd, csv, "--map", "prompt=question,response_a=ans1,response_b=ans2,preference=winner,"
        "contributor=user,model_a=judge", "--json")
    raw = store_bytes(nd)
    for planted in (PHONE_REASON, EMAIL_TAG, PHONE_TAG, PHONE_MODEL):
        assert planted.encode() not in raw, planted


def test_contributor_ids_that_are_contacts_are_refused(tmp_path):
    nd = tmp_path / "node"
    run("node", "init", nd, "--name", "club")
    csv = tmp_path / "t.csv"
    csv.write_text("question,ans1,ans2,winner,user\nhi,a,b,ans1,alice@example.com\n")
    res = run("node", "import", nd, csv, "--map", "prompt=question,response_a=ans1,response_b=ans2,preference=winner,"
              "contributor=user", ok=False)
    assert res.exit_code != 0 and "user" in res.output and "e-mail address" in res.output
    res = run("node", "import", nd, owui_file(tmp_path / "o.json"), "--contributor", "+44 7700 900123", ok=False)
    assert res.exit_code != 0 and "--contributor" in res.output and "phone number" in res.output
    assert b"alice@example.com" not in store_bytes(nd)


def test_ssn_and_nhs_are_counted_as_such_not_as_phones():
    from node.redact import redact
    assert redact("078-05-1120") == ("[US_SSN]", {"us_ssn": 1})
    assert redact("ssn: 078051120") == ("ssn: [US_SSN]", {"us_ssn": 1})
    assert redact("social security number 536228734 ok") == ("social security number [US_SSN] ok", {"us_ssn": 1})
    assert redact("943 476 5919") == ("[UK_NHS]", {"uk_nhs": 1})
    assert redact("call 212-555-0147") == ("call [PHONE]", {"phone": 1})
    assert redact("order 123456789") == ("order 123456789", {})  # 9 digits without the context stay
