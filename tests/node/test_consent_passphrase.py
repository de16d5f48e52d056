"""Consent that means something (licences the policy lists, no future times, backdating recorded
with who gave it) and a passphrase variable named at init honoured by every later command."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from cairn.cli import cli
from node.consent import ConsentError, check_consent
from node.node_dir import NodeDir
from privacy.policy import Policy

FIX = Path(__file__).resolve().parents[2] / "fixtures"
GOOD = FIX / "formats" / "openai_messages.jsonl"


def run(*args, ok=True, env=None):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False, env=env)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def consent_rows(d):
    with NodeDir(d).open_store() as store:  # the store is encrypted (SQLCipher): only its key opens it
        return store.conn.execute("SELECT id, consent_licence, consent_at, consent_source FROM contributors ORDER BY id").fetchall()


@pytest.fixture
def nd(tmp_path):
    d = tmp_path / "node"
    run("node", "init", d, "--name", "clinic")
    run("node", "import", d, GOOD)
    return d


def iso(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).isoformat(timespec="seconds")


def test_consent_refuses_unlisted_licence_and_future_time(nd):
    res = run("node", "consent", nd, "--all", "--licence", "All-Rights-Reserved", ok=False)
    assert res.exit_code == 1 and "'All-Rights-Reserved' is not accepted" in res.output and "CC-BY-4.0" in res.output
    res = run("node", "consent", nd, "--all", "--licence", "CC-BY-4.0", "--at", iso(timedelta(days=2)), ok=False)
    assert res.exit_code == 1 and "in the future" in res.output
    assert all(r[1] is None for r in consent_rows(nd))  # nothing recorded


def test_backdated_consent_needs_and_records_who(nd):
    past = "2020-01-01T00:00:00Z"
    res = run("node", "consent", nd, "--all", "--licence", "CC-BY-4.0", "--at", past, ok=False)
    assert res.exit_code == 1 and "--consent-by" in res.output and "24 h waiting period" in res.output
    assert all(r[1] is None for r in consent_rows(nd))
    run("node", "consent", nd, "--all", "--licence", "CC-BY-4.0", "--at", past, "--by", "Dr. Ames, signed form 12")
    rows = consent_rows(nd)
    assert rows and all(r[1:] == ("CC-BY-4.0", "2020-01-01T00:00:00+00:00", "cli; given by Dr. Ames, signed form 12")
                        for r in rows)
    st = json.loads(run("node", "status", nd, "--json").output)
    assert st["contributors"]["eligible"] == st["contributors"]["total"]


def test_consent_now_waits(nd):
    run("node", "consent", nd, "--all", "--licence", "CC0-1.0")
    st = json.loads(run("node", "status", nd, "--json").output)
    assert st["contributors"]["waiting"] == st["contributors"]["total"] > 0


def test_import_consent_is_checked_too(tmp_path):
    d = tmp_path / "n"
    run("node", "init", d, "--name", "c")
    res = run("node", "import", d, GOOD, "--consent", "Proprietary", ok=False)
    assert res.exit_code == 1 and "not accepted" in res.output
    res = run("node", "import", d, GOOD, "--consent", "CC-BY-4.0", "--consent-at", iso(timedelta(hours=3)), ok=False)
    assert res.exit_code == 1 and "in the future" in res.output
    res = run("node", "import", d, GOOD, "--consent", "CC-BY-4.0", "--consent-at", "2021-06-01T00:00:00Z", ok=False)
    assert res.exit_code == 1 and "--consent-by" in res.output
    assert consent_rows(d) == []  # refused before anything was imported
    run("node", "import", d, GOOD, "--consent", "CC-BY-4.0", "--consent-at", "2021-06-01T00:00:00Z",
        "--consent-by", "intake desk")
    rows = consent_rows(d)
    assert rows and all(r[3] == "import:openai_messages.jsonl; given by intake desk" for r in rows)


def test_check_consent_rules():
    p = Policy(community="c")
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert check_consent("CC-BY-4.0", None, p, now=now) == now
    assert check_consent("CC-BY-4.0", "2026-01-01T00:03:00Z", p, now=now)  # clock skew tolerated
    assert check_consent("CC-BY-4.0", "2025-12-31T23:30:00Z", p, now=now)  # minutes ago: not backdating
    for licence, at, by, rule in [("", None, None, "licence is required"), ("MIT", None, None, "not accepted"),
                                  ("CC-BY-4.0", "2026-01-01T01:00:00Z", None, "future"),
                                  ("CC-BY-4.0", "2025-12-01T00:00:00Z", None, "--consent-by"),
                                  ("CC-BY-4.0", "2025-12-01T00:00:00Z", "  ", "--consent-by")]:
        with pytest.raises(ConsentError, match=rule):
            check_consent(licence, at, p, by, now=now)


def test_passphrase_env_is_remembered_by_name(tmp_path):
    d = tmp_path / "pp"
    secret = "correct horse battery staple"
    run("node", "init", d, "--name", "pp", "--passphrase-env", "MYPASS", env={"MYPASS": secret, "CAIRN_PASSPHRASE": None})
    toml = (d / "node.toml").read_text()
    assert "MYPASS" in toml and secret not in toml
    assert not (d / "keys" / "store.key").exists()
    env = {"MYPASS": secret, "CAIRN_PASSPHRASE": None}
    run("node", "import", d, GOOD, env=env)
    st = json.loads(run("node", "status", d, "--json", env=env).output)
    assert st["conversations"] == 3
    run("node", "budget", d, "--json", env=env)
    res = run("node", "status", d, env={"MYPASS": None, "CAIRN_PASSPHRASE": secret}, ok=False)
    assert res.exit_code == 1 and "MYPASS" in res.output  # the named variable, not CAIRN_PASSPHRASE
    res = run("node", "status", d, env={"MYPASS": "wrong", "CAIRN_PASSPHRASE": None}, ok=False)
    assert res.exit_code == 1 and "wrong store key or passphrase" in res.output


def test_recording_the_same_consent_again_keeps_its_first_time_and_who_gave_it(nd):
    """A later re-run of `consent` (no --by needed for a time near now) must not erase a backdated
    consent's provenance or push the contributor back into the waiting period."""
    run("node", "consent", nd, "--all", "--licence", "CC-BY-4.0", "--at", "2020-01-01T00:00:00Z", "--by", "Dr. Ames")
    run("node", "consent", nd, "--all", "--licence", "CC-BY-4.0")
    rows = consent_rows(nd)
    assert rows and all(r[2] == "2020-01-01T00:00:00+00:00" and "given by Dr. Ames" in r[3] for r in rows)
    st = json.loads(run("node", "status", nd, "--json").output)
    assert st["contributors"]["eligible"] == st["contributors"]["total"]
    run("node", "consent", nd, "--all", "--licence", "CC0-1.0")  # another licence is a new consent: it waits
    assert all(r[1] == "CC0-1.0" for r in consent_rows(nd))
    assert json.loads(run("node", "status", nd, "--json").output)["contributors"]["waiting"] > 0
