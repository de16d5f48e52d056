"""What the member and operator pages show, gathered from the service layer (no HTTP, no HTML here).

`contribution_payloads` turns the contribute form (a pasted chat, or an uploaded ShareLM / OpenAI-style
export, plus the form's rating, thumbs, comment and licence) into the JSON bodies the API takes, so
a contribution from the page is parsed, redacted and sealed by exactly the code the API uses
(node/service/members.py; ARCHITECTURE.md invariants 1 and 8). `member_view` and `operator_view`
collect what each page shows; the operator's view holds counts, the ledger and the policy, never
text or member ids (invariant 1).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

from node.service import governance, members
from node.service.chart import budget_svg
from node.service.members import ServiceError
from node.service.store_access import open_store

# `?done=KEY` after a form: fixed messages, so that nothing a request carries is reflected into a page
DONE = {
    "contributed": "Thank you: your conversation is stored, sealed, and pending until its waiting period ends. "
                   "You can delete it until then (and after).",
    "contributed-many": "Thank you: your conversations are stored, sealed, and pending until their waiting period ends.",
    "deleted": "Deleted: that contribution is gone from this node.",
    "dissent": "Your dissent note is attached to that contribution.",
    "objected": "Your objection is recorded. It is counted, never attributed to you.",
    "proposed": "The policy change is proposed; it takes effect after the notice period unless withdrawn.",
}

ROLE = re.compile(r"^\s*(user|human|me|you|assistant|ai|bot|chatgpt|claude|model|system)\s*:\s?(.*)$", re.IGNORECASE)
ROLES = {"user": "user", "human": "user", "me": "user", "you": "user", "system": "system"}


def parse_transcript(text: str) -> list[dict]:
    """A pasted chat: lines that start with "User:" / "Assistant:" (or Human:, AI:, ChatGPT:, System:)
    begin turns, other lines continue the current one. ServiceError(422, field "chat") otherwise."""
    turns: list[dict] = []
    for line in text.splitlines():
        m = ROLE.match(line)
        if m:
            turns.append({"role": ROLES.get(m.group(1).lower(), "assistant"), "content": m.group(2)})
        elif turns:
            turns[-1]["content"] += "\n" + line
        elif line.strip():
            raise ServiceError(422, "start each turn of the pasted chat with 'User:' or 'Assistant:' "
                                    "(or paste the JSON of a ShareLM or OpenAI-style conversation)", "chat")
    for t in turns:
        t["content"] = t["content"].strip()
    return [t for t in turns if t["content"]]


def _feedback(rating: str, thumbs: str, comment: str) -> dict:
    fb: dict = {}
    if rating:
        if rating not in {"1", "2", "3", "4", "5"}:
            raise ServiceError(422, "a rating from 1 to 5", "rating")
        fb["rating"] = int(rating)
    if thumbs:
        if thumbs not in {"up", "down"}:
            raise ServiceError(422, "thumbs up or down", "thumbs")
        fb["thumbs"] = thumbs
    if comment:
        fb["comment"] = comment
    return fb


def _with_form(item, fb: dict, model: str, licence: str) -> dict:
    """One conversation object from a paste or an upload, with the form's feedback where it has none."""
    if not isinstance(item, dict) or not (isinstance(item.get("conversation"), list) or isinstance(item.get("messages"), list)):
        raise ServiceError(422, "expected a ShareLM conversation ({conversation: [...]}) or OpenAI-style "
                                "messages ({messages: [...]})", "file")
    item = dict(item)
    if isinstance(item.get("conversation"), list) and fb:
        cm = item.get("conversation_metadata") if isinstance(item.get("conversation_metadata"), dict) else {}
        if cm.get("rate") in (None, ""):  # ShareLM's own rate wins; else the form's, as ShareLM's rate if it can
            rate = {"up": "thumbs up", "down": "thumbs down"}.get(fb.get("thumbs", ""), str(fb.get("rating", "")))
            if set(fb) <= {"rating", "thumbs"} and len(fb) == 1 and rate != "1":
                item["conversation_metadata"] = {**cm, "rate": rate}
            else:  # both, a comment, or a rating of 1 (which ShareLM reads as thumbs up): OpenAI-style
                item = {"messages": item["conversation"], "model": item.get("model_name") or model or None,
                        "feedback": fb, **({"timestamp": item["timestamp"]} if "timestamp" in item else {})}
    elif isinstance(item.get("messages"), list):
        own = item.get("feedback") if isinstance(item.get("feedback"), dict) else {}
        if not own and not any(k in item for k in ("thumbs", "rating", "critique", "comment")) and fb:
            item["feedback"] = fb
        if model and not item.get("model"):
            item["model"] = model
    if isinstance(item.get("conversation"), list) and model and not item.get("model_name"):
        item["model_name"] = model
    if item.get("model") is None:
        item.pop("model", None)
    item["licence"] = licence
    return item


def contribution_payloads(pasted: str, upload: bytes, model: str, rating: str, thumbs: str, comment: str,
                          licence: str, max_items: int = 50) -> list[dict]:
    """The contribute form as API bodies: a pasted transcript or JSON, or an uploaded JSON / JSONL export
    (one conversation, a list of them, or one per line). ServiceError(422) naming the field otherwise."""
    fb = _feedback(rating, thumbs, comment)
    pasted = (pasted or "").strip()
    if upload:
        if pasted:
            raise ServiceError(422, "paste a chat or upload a file, not both", "file")
        try:
            text = upload.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ServiceError(422, "the file is not UTF-8 text", "file") from None
        items = _json_items(text, "file")
    elif pasted.startswith(("{", "[")):
        items = _json_items(pasted, "chat")
    elif pasted:
        turns = parse_transcript(pasted)
        if not any(t["role"] == "assistant" for t in turns):
            raise ServiceError(422, "the pasted chat needs at least one 'Assistant:' turn", "chat")
        items = [{"messages": turns}]
    else:
        raise ServiceError(422, "paste a chat or choose a file", "chat")
    if not items:
        raise ServiceError(422, "no conversation found", "file" if upload else "chat")
    if len(items) > max_items:
        raise ServiceError(422, f"at most {max_items} conversations at a time", "file")
    return [_with_form(it, fb, model, licence) for it in items]


def _json_items(text: str, field: str) -> list:
    from node.service.security import MAX_JSON_DEPTH, json_depth_ok

    if not json_depth_ok(text):
        raise ServiceError(422, f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels", field)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        try:  # JSON Lines
            doc = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise ServiceError(422, f"not JSON or JSON Lines (line {e.lineno})", field) from None
    return doc if isinstance(doc, list) else [doc]


def countdown(eligible_from: str, now: datetime | None = None) -> str:
    """'in 23 h 5 min' until `eligible_from` (ISO 8601), or 'now'."""
    now = now or datetime.now(timezone.utc)
    try:
        at = datetime.fromisoformat(eligible_from)
    except ValueError:
        return ""
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    left = int((at - now).total_seconds())
    if left <= 0:
        return "now"
    d, rest = divmod(left, 86400)
    h, rest = divmod(rest, 3600)
    m = max(1, rest // 60) if not (d or h) else rest // 60
    return "in " + " ".join(p for p in (f"{d} d" if d else "", f"{h} h" if h or d else "", f"{m} min") if p)


def member_view(nd, member_id: str) -> dict:
    """What the member page shows: their contributions (with countdowns), consent, budget, releases, proposals."""
    me = members.me(nd, member_id)  # read-only: the service's tick stores due contributions and applies due changes
    for c in me["contributions"]:
        c["countdown"] = countdown(c["eligible_from"]) if c["status"] == "pending" else ""
    budget = me["budget"]
    cap = budget.get("epsilon_cap") or 0.0
    pending = [p for p in governance.proposals(nd, member_id=member_id) if p["status"] == "pending"]
    for p in pending:
        p["countdown"] = countdown(p["effective_at"])
    return {**me, "budget_fraction": min(1.0, budget["epsilon_spent"] / cap) if cap else 0.0,
            "proposals": pending, "licences": me["consent"]["licences_accepted"]}


def operator_view(nd) -> dict:
    """What the operator page shows: status counts, the budget chart and ledger, the policy, proposals."""
    from node.status import node_status, privacy_budget

    with open_store(nd) as store:
        status = node_status(nd, store)
        q = store.conn.execute
        service = {
            "members": q("SELECT COUNT(*) FROM members").fetchone()[0],
            "invites_open": q("SELECT COUNT(*) FROM invites WHERE used_at IS NULL").fetchone()[0],
            "invites_used": q("SELECT COUNT(*) FROM invites WHERE used_at IS NOT NULL").fetchone()[0],
            "pending": q("SELECT COUNT(*) FROM contributions WHERE pending IS NOT NULL").fetchone()[0],
            "contributions": q("SELECT COUNT(*) FROM contributions").fetchone()[0],
        }
    budget = privacy_budget(nd)
    policy = nd.policy()
    return {
        "node_status": status, "service": service, "budget": budget,
        "chart": budget_svg(budget["timeline"], budget["epsilon_cap"], budget["delta"]),
        "ledger": list(reversed(budget["timeline"]))[:200],
        "policy_text": nd.policy_path.read_text(encoding="utf-8") if nd.policy_path.exists() else policy.dumps(),
        "policy_sha256": policy.sha256(),
        "notice_hours": governance.notice_hours(policy),
        "proposals": governance.proposals(nd, operator=True),
        "open_enrolment": members.open_enrolment(policy),
    }
