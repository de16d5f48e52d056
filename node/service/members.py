"""The service layer for members (no HTTP here): invitations, tokens, contributions, me, withdrawal, export.

A member is a pseudonymous contributor id ("m-" + random hex) with a bearer token that is stored
only as a keyed HMAC (node/crypto.py `StoreCipher.ident`), found by that HMAC and compared in
constant time. A contribution is parsed by the very importers `cairn node import` uses (ShareLM or
OpenAI-style messages: node/importers/), redacted by node/redact.py and sealed; it waits, sealed,
in `contributions.pending` until the policy's waiting period has passed (the member may delete it
any time), then `promote_due` stores it with `Store.add_record` exactly as an import does, so it
feeds releases exactly like imported data and never before it is eligible (ARCHITECTURE.md
invariants 1 and 8). Withdrawal is `Store.forget` plus the service's own rows (invariant 8).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from node.consent import ConsentError, check_consent
from node.importers.common import Context
from node.importers.openai_messages import IMPORTER as OPENAI
from node.importers.sharelm import IMPORTER as SHARELM
from node.node_dir import NodeDir
from node.redact import redact, redact_record
from node.schema import Feedback, Message, Record, Response, SchemaError
from node.service.store_access import open_store
from node.store import utcnow
from node.store_cache import forget_features

ECHO = re.compile(r"[,;:]?\s*got\s+['\"].*$", re.DOTALL)  # the quoted input at the end of an importer's message
MAX_MESSAGES = 200
MAX_PENDING = 500  # contributions one member may have waiting
MAX_TEXT = 100_000  # characters of one message


class ServiceError(Exception):
    """A request the service refuses; `status` is the HTTP status, `field` the offending field (if any)."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def _nd(nd) -> NodeDir:
    return nd if isinstance(nd, NodeDir) else NodeDir(Path(nd))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")



def create_invites(nd, count: int = 1) -> list[str]:
    """`count` new one-time invitation codes (only their keyed HMAC is stored)."""
    if not 1 <= count <= 1000:
        raise ServiceError(400, "count must be between 1 and 1000", "count")
    codes = [secrets.token_urlsafe(12) for _ in range(count)]
    with open_store(_nd(nd)) as store, store.transaction():
        for code in codes:
            store.conn.execute("INSERT INTO invites(code_mac, created_at) VALUES(?, ?)",
                               (store.cipher.ident("invite", code), utcnow()))
    return codes


def open_enrolment(policy) -> bool:
    """Does the policy let anyone enrol without an invitation (policy.toml `[extra] open_enrolment = true`)?"""
    return policy.extra.get("open_enrolment") is True


def redeem(nd, code: str | None) -> tuple[str, str]:
    """Redeem an invitation (or enrol openly when the policy allows and `code` is None): (member_id, token).
    An unknown code is 403, a used one 410; nothing is stored then."""
    nd = _nd(nd)
    member_id, token = "m-" + secrets.token_hex(8), secrets.token_urlsafe(32)
    with open_store(nd) as store, store.transaction():
        if code is None or code == "":
            if not open_enrolment(nd.policy()):
                raise ServiceError(400, "an invitation code is required (field 'invite'); this node does not enrol "
                                        "openly", "invite")
            how = "open"
        else:
            if not isinstance(code, str) or len(code) > 200:
                raise ServiceError(400, "invite must be a string", "invite")
            mac = store.cipher.ident("invite", code)
            row = store.conn.execute("SELECT used_at FROM invites WHERE code_mac=?", (mac,)).fetchone()
            if row is None:
                raise ServiceError(403, "unknown invitation code", "invite")
            if row[0] is not None:
                raise ServiceError(410, "this invitation was already used", "invite")
            claimed = store.conn.execute("UPDATE invites SET used_at=? WHERE code_mac=? AND used_at IS NULL",
                                         (utcnow(), mac)).rowcount
            if claimed != 1:  # BEGIN IMMEDIATE already serialises redemptions; this holds without it too
                raise ServiceError(410, "this invitation was already used", "invite")
            how = "invite"
        store.conn.execute("INSERT INTO members(id, token_mac, created_at, enrolled_by) VALUES(?,?,?,?)",
                           (member_id, store.cipher.ident("token", token), utcnow(), how))
    return member_id, token


def authenticate(nd, token: str | None) -> str | None:
    """The member id of a bearer token, or None. The token is looked up by its keyed HMAC and the
    stored HMAC compared with `hmac.compare_digest` (constant time)."""
    if not token or not isinstance(token, str) or len(token) > 200:
        return None
    with open_store(_nd(nd)) as store:
        mac = store.cipher.ident("token", token)
        row = store.conn.execute("SELECT id, token_mac FROM members WHERE token_mac=?", (mac,)).fetchone()
    if row is None or not hmac.compare_digest(row[1], mac):
        return None
    return row[0]



def parse_contribution(payload: dict, member_id: str, key: str) -> Record:
    """The contribution as the importers read it (ShareLM upload or OpenAI-style messages), validated
    and redacted; ServiceError(422) naming the field otherwise."""
    if not isinstance(payload, dict):
        raise ServiceError(422, "expected a JSON object", "body")
    obj = {k: v for k, v in payload.items() if k not in ("licence", "user_id", "user", "id", "conversation_id")}
    if "conversation" in obj and "messages" in obj:
        raise ServiceError(422, "give either conversation (ShareLM) or messages (OpenAI-style), not both", "messages")
    if isinstance(obj.get("conversation"), list):
        imp, field = SHARELM, "conversation"
        obj["conversation_id"] = key
    elif isinstance(obj.get("messages"), list):
        imp, field = OPENAI, "messages"
        obj["id"] = key
        _openai_extras(obj)
    else:
        raise ServiceError(422, "expected conversation: [{role, content}] (ShareLM) or messages: [{role, content}] "
                                "(OpenAI-style)", "conversation")
    turns = obj[field]
    if not turns or len(turns) > MAX_MESSAGES:
        raise ServiceError(422, f"expected 1..{MAX_MESSAGES} messages", field)
    for i, m in enumerate(turns):
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, str) and len(c) > MAX_TEXT:
            raise ServiceError(422, f"message longer than {MAX_TEXT} characters", f"{field}[{i}].content")
    try:
        (rec,) = imp.parse(obj, Context(imp.name, member_id))
        rec.validate()
    except SchemaError as e:  # the importers' messages may quote the value ("got 'X'"): never echo it
        raise ServiceError(422, ECHO.sub("", str(e)), e.field or field) from None
    except (TypeError, ValueError, AttributeError) as e:
        raise ServiceError(422, f"malformed contribution ({type(e).__name__})", field) from None
    rec.meta["redactions"] = dict(redact_record(rec))  # counts by kind (text-free), added to the store's on storing
    rec.meta["via"] = "service"
    return rec


def _openai_extras(obj: dict) -> None:
    """The issue's OpenAI-style extras: `rating` at the top, a `preferred` alternative, a `critique`."""
    fb = dict(obj["feedback"]) if isinstance(obj.get("feedback"), dict) else {}
    if "feedback" in obj and not isinstance(obj["feedback"], dict):
        raise ServiceError(422, "expected an object", "feedback")
    for k in ("rating", "critique", "comment"):
        if k in obj:
            fb.setdefault(k, obj.pop(k))
    if fb:
        obj["feedback"] = fb
    pref = obj.pop("preferred", None)
    if pref is not None:
        if not isinstance(pref, str) or not pref.strip() or len(pref) > MAX_TEXT:
            raise ServiceError(422, "expected the text of the answer you would have preferred", "preferred")
        obj["_preferred"] = pref


def _with_preferred(rec: Record, payload: dict, member_id: str) -> Record:
    """A preferred alternative becomes a second response and a pairwise judgement: it beats the reply."""
    pref = payload.get("preferred")
    if pref is None:
        return rec
    text, counts = redact(pref)
    rec.responses.append(Response(text, None))
    rec.feedback.append(Feedback("pairwise", member_id, {"a": 0, "b": 1, "outcome": "b", "strength": 1.0}))
    rec.validate()
    rec.meta["redactions"] = dict(Counter(rec.meta.get("redactions", {})) + counts)
    return rec


def _seal_record(store, cid: str, rec: Record) -> bytes:
    doc = {"source": rec.source, "prompt": [[m.role, m.text] for m in rec.prompt],
           "responses": [[r.text, r.model] for r in rec.responses],
           "feedback": [[f.kind, f.data, f.text, f.timestamp] for f in rec.feedback],
           "language": rec.language, "timestamp": rec.timestamp, "meta": rec.meta}
    return store.cipher.seal(json.dumps(doc, ensure_ascii=False).encode(), b"contribution:" + cid.encode())


def _open_record(store, cid: str, member_id: str, blob: bytes) -> Record:
    d = json.loads(store.cipher.open(blob, b"contribution:" + cid.encode()))
    return Record(d["source"], cid, [Message(r, t) for r, t in d["prompt"]], [Response(t, m) for t, m in d["responses"]],
                  [Feedback(k, member_id, data, text, ts) for k, data, text, ts in d["feedback"]], owner=member_id,
                  language=d["language"], timestamp=d["timestamp"], meta=d["meta"])


def contribute(nd, member_id: str, payload: dict) -> dict:
    """Store one conversation with its feedback, sealed, pending until the policy's waiting period has
    passed: {"id", "status", "eligible_from"}. Bad input is a ServiceError naming the field; nothing is stored."""
    return contribute_many(nd, member_id, [payload])[0]


def contribute_many(nd, member_id: str, payloads: list[dict]) -> list[dict]:
    """Several contributions (an uploaded export) in one transaction: all stored, or none."""
    nd = _nd(nd)
    policy = nd.policy()
    ready = [_prepare(policy, member_id, p) for p in payloads]  # every one checked before any is stored
    with open_store(nd) as store, store.transaction():
        _require_member(store, member_id)
        waiting = store.conn.execute("SELECT COUNT(*) FROM contributions WHERE member=? AND pending IS NOT NULL",
                                     (member_id,)).fetchone()[0]
        if waiting + len(ready) > MAX_PENDING:  # one token must not fill the node's disk
            raise ServiceError(429, f"at most {MAX_PENDING} contributions may wait at once; try again later")
        for cid, rec, licence, at, eligible in ready:
            store.add_redactions(Counter(rec.meta.pop("redactions", {})))  # as an import counts them
            store.conn.execute(
                "INSERT INTO contributions(id, member, source, licence, created_at, eligible_from, pending)"
                " VALUES(?,?,?,?,?,?,?)",
                (cid, member_id, rec.source, licence, _iso(at), _iso(eligible), _seal_record(store, cid, rec)))
    if policy.waiting_period_hours == 0:
        promote_due(nd)
    return [{"id": cid, "status": "pending" if policy.waiting_period_hours else "eligible",
             "eligible_from": _iso(eligible)} for cid, _, _, _, eligible in ready]


def _prepare(policy, member_id: str, payload: dict) -> tuple:
    licence = payload.get("licence") if isinstance(payload, dict) else None
    if not isinstance(licence, str) or not licence:
        raise ServiceError(422, f"choose a licence (field 'licence'), one of: {', '.join(policy.licences)}", "licence")
    if licence not in policy.licences:  # said without echoing what was sent
        raise ServiceError(422, f"this licence is not accepted by the node's policy; choose one of: "
                                f"{', '.join(policy.licences)}", "licence")
    try:
        at = check_consent(licence, None, policy)
    except ConsentError as e:
        raise ServiceError(422, str(e), "licence") from None
    cid = "c-" + secrets.token_hex(10)
    rec = parse_contribution(payload, member_id, cid)
    if isinstance(payload.get("preferred"), str):
        rec = _with_preferred(rec, payload, member_id)
    return cid, rec, licence, at, at + timedelta(hours=policy.waiting_period_hours)


def _require_member(store, member_id: str) -> None:
    if store.conn.execute("SELECT 1 FROM members WHERE id=?", (member_id,)).fetchone() is None:
        raise ServiceError(401, "not a member (withdrawn or unknown token)")


def promote_due(nd, now: datetime | None = None) -> int:
    """Store every pending contribution whose waiting period has passed, as an import stores records
    (`Store.add_record`, consent recorded with the contribution's licence and time); how many."""
    now = now or _now()
    n = 0
    q = ("SELECT id, member, licence, created_at, pending FROM contributions WHERE pending IS NOT NULL"
         " AND eligible_from <= ? ORDER BY rowid")
    with open_store(_nd(nd)) as store:
        if not store.conn.execute(q, (_iso(now),)).fetchone():
            return 0  # nothing due: no write lock taken
    with open_store(_nd(nd)) as store, store.transaction():
        due = store.conn.execute(q, (_iso(now),)).fetchall()
        for cid, member, licence, created, blob in due:
            rec = _open_record(store, cid, member, blob)
            row = store.conn.execute("SELECT consent_licence FROM contributors WHERE id=?", (member,)).fetchone()
            consent = None if row and row[0] == licence else (licence, created, "service")
            store.add_record(rec, None, consent)
            store.conn.execute("UPDATE contributions SET pending=NULL WHERE id=?", (cid,))
            n += 1
    return n



def _own(store, member_id: str, cid: str) -> tuple:
    row = store.conn.execute("SELECT id, source, pending FROM contributions WHERE id=? AND member=?",
                             (cid, member_id)).fetchone() if isinstance(cid, str) and len(cid) < 100 else None
    if row is None:  # another member's id and an unknown id look the same
        raise ServiceError(404, "no such contribution of yours", "id")
    return row


def conversation_id(store, source: str, cid: str) -> int | None:
    """The stored conversation row of a promoted contribution."""
    row = store.conn.execute("SELECT id FROM conversations WHERE uid=?",
                             (store.cipher.ident("record", source, cid),)).fetchone()
    return row[0] if row else None


def delete_contribution(nd, member_id: str, cid: str) -> None:
    """Delete one of the member's contributions (pending or stored); 404 for anyone else's."""
    with open_store(_nd(nd)) as store:
        with store.transaction():
            _, source, _pending = _own(store, member_id, cid)
            conv = conversation_id(store, source, cid)
            if conv is not None:
                forget_features(store, _texts_of(store, conv))  # their cached features go too, as in Store.forget
                store.conn.execute("DELETE FROM feedback WHERE conversation_id=?", (conv,))
                store.conn.execute("DELETE FROM conversations WHERE id=?", (conv,))
            store.conn.execute("DELETE FROM contributions WHERE id=?", (cid,))
        # secure_delete zeroed the rows in place; flush the WAL so no old page stays in it (no VACUUM per
        # delete: a member could otherwise make the node rewrite its whole file at will)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _texts_of(store, conv: int) -> set[str]:
    uid, body = store.conn.execute("SELECT uid, body FROM conversations WHERE id=?", (conv,)).fetchone()
    doc = json.loads(store.cipher.open(body, b"conv:" + uid.encode()))
    return {t for _, t in doc["prompt"]} | set(doc["responses"])


def me(nd, member_id: str) -> dict:
    """What the node holds about the member and what has been released since their consent."""
    from node.status import privacy_budget

    nd = _nd(nd)
    policy = nd.policy()
    now = _now()
    with open_store(nd) as store:
        _require_member(store, member_id)
        rows = store.conn.execute("SELECT id, licence, created_at, eligible_from, pending IS NOT NULL FROM contributions"
                                  " WHERE member=? ORDER BY rowid", (member_id,)).fetchall()
        consent_row = store.conn.execute("SELECT consent_licence, consent_at FROM contributors WHERE id=?",
                                         (member_id,)).fetchone()
    contributions = [{"id": c, "licence": lic, "created_at": at, "eligible_from": ef,
                      "status": "pending" if pend and ef > _iso(now) else "eligible"} for c, lic, at, ef, pend in rows]
    consent_at = consent_row[1] if consent_row and consent_row[1] else (rows[0][2] if rows else None)
    licence = consent_row[0] if consent_row and consent_row[0] else (rows[-1][1] if rows else None)
    budget = privacy_budget(nd)
    releases, prev = [], 0.0
    for t in budget["timeline"]:
        if consent_at and t["created_at"] >= consent_at:
            releases.append({"seq": t["seq"], "kind": t["kind"], "created_at": t["created_at"],
                             "epsilon": max(0.0, t["claimed_epsilon"] - prev), "cumulative_epsilon": t["claimed_epsilon"]})
        prev = t["claimed_epsilon"]
    return {
        "member_id": member_id,
        "contributions": contributions,
        "consent": {"licence": licence, "at": consent_at, "waiting_period_hours": policy.waiting_period_hours,
                    "licences_accepted": list(policy.licences)},
        "budget": {"epsilon_spent": budget["spent"], "epsilon_remaining": budget["remaining"],
                   "epsilon_cap": budget["epsilon_cap"], "delta": budget["delta"], "label": budget["label"]},
        "releases_since_consent": releases,
    }


def withdraw(nd, member_id: str) -> dict:
    """Withdrawal, exactly as `cairn node forget`: text and feedback deleted, the id tombstoned, the
    token revoked, pending contributions and objections deleted."""
    nd = _nd(nd)
    with open_store(nd) as store:
        with store.transaction():
            _require_member(store, member_id)
            if not store.is_withdrawn(member_id):
                store.ensure_contributor(member_id)  # so that forget finds (and tombstones) a member with nothing stored
        # forget first: should the service's own rows then fail (a busy store), the token still works
        # and a retry finishes the job; a contribution promoted in between is dropped (tombstone)
        out = store.forget(member_id)
        with store.transaction():
            pending = store.conn.execute("DELETE FROM contributions WHERE member=?", (member_id,)).rowcount
            store.conn.execute("DELETE FROM objections WHERE member_mac=?", (store.cipher.ident("member", member_id),))
            store.conn.execute("DELETE FROM members WHERE id=?", (member_id,))
        store.scrub()
    return {"withdrawn": True, "contributions_deleted": pending, **out}


def export(nd, member_id: str) -> dict:
    """The member's own data: every contribution's text and feedback (pending or stored), and their consent."""
    nd = _nd(nd)
    out = []
    with open_store(nd) as store:
        _require_member(store, member_id)
        rows = store.conn.execute("SELECT id, source, licence, created_at, eligible_from, pending FROM contributions"
                                  " WHERE member=? ORDER BY rowid", (member_id,)).fetchall()
        stored = {r.key: r for r in store.records(contributors=[member_id]) if r.owner == member_id}
        for cid, source, licence, created, eligible, blob in rows:
            if blob is not None:
                rec = _open_record(store, cid, member_id, blob)
            else:
                rec = stored.get(store.cipher.ident("record", source, cid))
            out.append({"id": cid, "licence": licence, "created_at": created, "eligible_from": eligible,
                        "record": _record_json(rec) if rec else None})
    info = me(nd, member_id)
    return {"member_id": member_id, "consent": info["consent"], "contributions": out}


def _record_json(rec: Record) -> dict:
    return {"source": rec.source,
            "prompt": [{"role": m.role, "content": m.text} for m in rec.prompt],
            "responses": [{"content": r.text, "model": r.model} for r in rec.responses],
            "feedback": [{"kind": f.kind, **f.data, **({"text": f.text} if f.text else {})} for f in rec.feedback],
            "language": rec.language, "meta": rec.meta}
