"""Governance and dissent (issue 12 item 8): policy proposals with a notice period, objections, dissent notes.

A change to `policy.toml` is proposed (`cairn node policy propose DIR --file NEW.toml`, or the
operator page), validated as a policy, and stored with the time it takes effect: now plus the
notice period of the policy IN FORCE (`[extra] notice_period_hours`, default NOTICE_HOURS). Until then
the node keeps using the old policy.toml; `apply_due` (run by the service on every tick and request,
and by `cairn node policy apply`) writes the new one when its time has come. A newer proposal
supersedes older pending ones. Members see pending proposals and may object once each, with a
reason (redacted and sealed); who objected is kept only as a keyed HMAC, so objections are counted,
never attributed. The operator sees exact counts on the node; what leaves the node is a DP count
(`objection_count_release`, through the release gate).

A dissent note ("I rated this, but the question was unfair") is critique feedback on one's own
contribution, data {"response": 0, "dissent": true}, text redacted and sealed like any critique.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from node.redact import redact
from node.service.members import ServiceError, _nd, _open_record, _own, _require_member, _seal_record, conversation_id
from node.service.store_access import open_store
from node.store import utcnow
from privacy.policy import Policy, PolicyError, load_policy

NOTICE_HOURS = 168.0  # a week, when the policy does not say
MAX_REASON = 2000


def notice_hours(policy: Policy) -> float:
    """The notice period a policy change needs under `policy` ([extra] notice_period_hours)."""
    v = policy.extra.get("notice_period_hours", NOTICE_HOURS)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else NOTICE_HOURS


def parse_policy_text(text: str) -> Policy:
    """A proposed policy.toml's text as a validated Policy; ServiceError(422) naming the problem."""
    if not isinstance(text, str) or not text.strip():
        raise ServiceError(422, "expected the proposed policy.toml as text", "policy")
    fd, tmp = tempfile.mkstemp(suffix=".toml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return load_policy(Path(tmp))
    except PolicyError as e:
        raise ServiceError(422, str(e).replace(tmp, "proposed policy"), "policy") from None
    except RecursionError:  # tomllib recurses on nested arrays: a deep one was a 500
        raise ServiceError(422, "proposed policy: nested too deeply", "policy") from None
    finally:
        os.unlink(tmp)


def changes(old: Policy, new: Policy) -> dict:
    """{field: [old, new]} for every field the proposal changes."""
    a, b = old.as_dict(), new.as_dict()
    return {k: [_plain(a.get(k)), _plain(b.get(k))] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


def propose(nd, policy_text: str, now: datetime | None = None) -> dict:
    """Store a proposed policy change; it takes effect after the notice period of the policy in force."""
    nd = _nd(nd)
    new = parse_policy_text(policy_text)
    old = nd.policy()
    if new.sha256() == old.sha256():
        raise ServiceError(422, "the proposed policy is the policy in force", "policy")
    now = now or datetime.now(timezone.utc)
    effective = now + timedelta(hours=notice_hours(old))
    with open_store(nd) as store, store.transaction():
        store.conn.execute("UPDATE proposals SET status='superseded' WHERE status='pending'")
        pid = store.conn.execute(
            "INSERT INTO proposals(created_at, effective_at, policy, policy_sha256, base_sha256, status)"
            " VALUES(?,?,?,?,?,'pending')",
            (now.isoformat(timespec="seconds"), effective.isoformat(timespec="seconds"), new.dumps(), new.sha256(),
             old.sha256())).lastrowid
    return {"id": pid, "effective_at": effective.isoformat(timespec="seconds"), "notice_period_hours": notice_hours(old),
            "changes": changes(old, new)}


def proposals(nd, member_id: str | None = None, operator: bool = False) -> list[dict]:
    """Proposals, newest first: id, times, status, changes; `objected` for a member; exact objection
    counts only for the operator (on the node)."""
    nd = _nd(nd)
    current = nd.policy()
    out = []
    with open_store(nd) as store:
        mac = store.cipher.ident("member", member_id) if member_id else None
        for pid, created, eff, text, status in store.conn.execute(
                "SELECT id, created_at, effective_at, policy, status FROM proposals ORDER BY id DESC").fetchall():
            new = parse_policy_text(text)
            item = {"id": pid, "created_at": created, "effective_at": eff, "status": status,
                    "changes": changes(current, new) if status == "pending" else {}, "policy": text}
            if mac:
                item["objected"] = store.conn.execute("SELECT 1 FROM objections WHERE proposal_id=? AND member_mac=?",
                                                      (pid, mac)).fetchone() is not None
            if operator:
                item["objections"] = store.conn.execute("SELECT COUNT(*) FROM objections WHERE proposal_id=?",
                                                        (pid,)).fetchone()[0]
            out.append(item)
    return out


def object_to(nd, member_id: str, proposal_id: int, reason: str) -> dict:
    """A member's objection to a pending proposal (once each); the reason is redacted and sealed."""
    if not isinstance(reason, str) or not reason.strip():
        raise ServiceError(422, "say why you object (field 'reason')", "reason")
    if len(reason) > MAX_REASON:
        raise ServiceError(422, f"a reason of at most {MAX_REASON} characters", "reason")
    if isinstance(proposal_id, bool) or not isinstance(proposal_id, int) or not 0 < proposal_id < 2**63:
        raise ServiceError(404, "no such proposal", "id")  # (an id past SQLite's integers was a 500)
    text, _counts = redact(reason.strip())
    with open_store(_nd(nd)) as store, store.transaction():
        _require_member(store, member_id)
        row = store.conn.execute("SELECT status FROM proposals WHERE id=?", (proposal_id,)).fetchone()
        if row is None:
            raise ServiceError(404, "no such proposal", "id")
        if row[0] != "pending":
            raise ServiceError(409, f"this proposal is {row[0]}; objections are taken while it is pending", "id")
        mac = store.cipher.ident("member", member_id)
        if store.conn.execute("SELECT 1 FROM objections WHERE proposal_id=? AND member_mac=?",
                              (proposal_id, mac)).fetchone():
            raise ServiceError(409, "you already objected to this proposal", "id")
        sealed = store.cipher.seal(text.encode("utf-8"), b"objection:%d:" % proposal_id + mac.encode())
        store.conn.execute("INSERT INTO objections(proposal_id, member_mac, reason, created_at) VALUES(?,?,?,?)",
                           (proposal_id, mac, sealed, utcnow()))
    return {"proposal_id": proposal_id, "objected": True}


def objection_reasons(nd, proposal_id: int) -> list[str]:
    """The (redacted) reasons given against a proposal, for the operator, in no particular order."""
    with open_store(_nd(nd)) as store:
        rows = store.conn.execute("SELECT member_mac, reason FROM objections WHERE proposal_id=? ORDER BY reason",
                                  (proposal_id,)).fetchall()
        return [store.cipher.open(r, b"objection:%d:" % proposal_id + m.encode()).decode("utf-8") for m, r in rows]


def apply_due(nd, now: datetime | None = None) -> list[int]:
    """Write the policy of every pending proposal whose notice period is over (the latest wins); their ids."""
    nd = _nd(nd)
    now_iso = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    with open_store(nd) as store:
        due = store.conn.execute("SELECT id, policy FROM proposals WHERE status='pending' AND effective_at <= ?"
                                 " ORDER BY id", (now_iso,)).fetchall()
        if not due:
            return []
        for _pid, text in due:
            parse_policy_text(text).save(nd.policy_path)
        with store.transaction():
            for pid, _ in due:
                store.conn.execute("UPDATE proposals SET status='applied' WHERE id=?", (pid,))
    return [pid for pid, _ in due]


def dissent(nd, member_id: str, cid: str, note: str) -> dict:
    """Attach a dissent note to one of the member's own contributions, as critique feedback."""
    if not isinstance(note, str) or not note.strip():
        raise ServiceError(422, "write the note (field 'note')", "note")
    if len(note) > MAX_REASON:
        raise ServiceError(422, f"a note of at most {MAX_REASON} characters", "note")
    text, _counts = redact(note.strip())
    data = {"response": 0, "dissent": True}
    with open_store(_nd(nd)) as store, store.transaction():
        _, source, pending = _own(store, member_id, cid)
        if pending is not None:
            from node.schema import Feedback

            rec = _open_record(store, cid, member_id, pending)
            rec.feedback.append(Feedback("critique", member_id, data, text, utcnow()))
            store.conn.execute("UPDATE contributions SET pending=? WHERE id=?", (_seal_record(store, cid, rec), cid))
        else:
            conv = conversation_id(store, source, cid)
            if conv is None:
                raise ServiceError(404, "no such contribution of yours", "id")
            fid = store.conn.execute(
                "INSERT INTO feedback(conversation_id, contributor, kind, data, created_at) VALUES(?,?,?,?,?)",
                (conv, member_id, "critique", json.dumps(data, sort_keys=True), utcnow())).lastrowid
            store.conn.execute("UPDATE feedback SET text=? WHERE id=?",
                               (store.cipher.seal(text.encode("utf-8"), b"feedback:%d" % fid), fid))
    return {"id": cid, "dissent": True}


def objection_rows(store) -> list[tuple[str, tuple[str, ...]]]:
    """The rows the `policy_objections` query counts (node/queries.py, through the release gate): one
    ("objected",) row per member (keyed HMAC, the person) objecting to the latest proposal not
    superseded. The exact count stays on the node; only a DP count leaves it (ARCHITECTURE.md invariant 2)."""
    latest = store.conn.execute("SELECT MAX(id) FROM proposals WHERE status != 'superseded'").fetchone()[0]
    if latest is None:
        return []
    return [(mac, ("objected",)) for (mac,) in
            store.conn.execute("SELECT member_mac FROM objections WHERE proposal_id=?", (latest,))]
