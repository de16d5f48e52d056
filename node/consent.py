"""Consent gates everything (ARCHITECTURE.md invariant 8).

A contributor's data may feed a release only when consent is recorded under a licence the policy
accepts and the policy's waiting period has passed since consent. Withdrawn contributors are
deleted from the store (Store.forget) and tombstoned, so they are never eligible again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from privacy.policy import Policy


class ConsentError(ValueError):
    """Consent cannot be recorded as asked (unknown contributor, no licence, bad time)."""


def parse_time(value: str) -> datetime:
    """An ISO 8601 time, UTC when no zone is given."""
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConsentError(f"not an ISO 8601 time: {value!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class ContributorState:
    """One contributor's consent state under a policy, and when they are (or become) eligible."""
    id: str
    licence: str | None
    consent_at: str | None
    status: str  # "eligible", "waiting", "no_consent", "licence_not_accepted"
    eligible_from: str | None


def classify(row: tuple, policy: Policy, now: datetime) -> ContributorState:
    """The consent state of a (id, licence, consent_at) row under `policy` at `now`."""
    cid, licence, consent_at = row
    if not licence or not consent_at:
        return ContributorState(cid, licence, consent_at, "no_consent", None)
    if licence not in policy.licences:
        return ContributorState(cid, licence, consent_at, "licence_not_accepted", None)
    start = parse_time(consent_at) + timedelta(hours=policy.waiting_period_hours)
    status = "eligible" if now >= start else "waiting"
    return ContributorState(cid, licence, consent_at, status, start.isoformat(timespec="seconds"))


def contributor_states(store, policy: Policy, now: datetime | None = None) -> list[ContributorState]:
    """Every contributor's consent state, ordered by id."""
    now = now or datetime.now(timezone.utc)
    rows = store.conn.execute("SELECT id, consent_licence, consent_at FROM contributors ORDER BY id").fetchall()
    return [classify(r, policy, now) for r in rows]


def eligible_contributors(store, policy: Policy, now: datetime | None = None) -> set[str]:
    """The contributors whose data may feed a release now: consent, accepted licence, waiting period over."""
    return {s.id for s in contributor_states(store, policy, now) if s.status == "eligible"}


def record_consent(store, contributors: list[str] | None, licence: str, at: str | None, source: str) -> int:
    """Record consent for the given contributors (None: everyone in the store). Returns how many."""
    if not licence:
        raise ConsentError("a licence is required (e.g. CC-BY-4.0)")
    at_iso = (parse_time(at) if at else datetime.now(timezone.utc)).isoformat(timespec="seconds")
    with store.transaction():
        if contributors is None:
            contributors = [r[0] for r in store.conn.execute("SELECT id FROM contributors")]
        for cid in contributors:
            if not store.conn.execute("SELECT 1 FROM contributors WHERE id=?", (cid,)).fetchone():
                raise ConsentError(f"no contributor {cid!r} in this node")
            store.conn.execute(
                "UPDATE contributors SET consent_licence=?, consent_at=?, consent_source=? WHERE id=?",
                (licence, at_iso, source, cid),
            )
    return len(contributors)
