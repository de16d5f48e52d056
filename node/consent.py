"""Consent gates everything (ARCHITECTURE.md invariant 8).

A contributor's data may feed a release only when consent is recorded under a licence the policy
accepts and the policy's waiting period has passed since consent. Withdrawn contributors are
deleted from the store (Store.forget) and tombstoned, so they are never eligible again.

Recording consent is checked against the policy (`check_consent`): a licence the policy does not
list is refused (consent under it could never make anyone eligible, and recording it silently
misleads the operator), a time in the future is refused, and a time in the past (backdated by
more than BACKDATE_GRACE) must say who gave or witnessed that consent (`by`), which is stored with
the consent row: a backdated time shortens the waiting period, so it has to be justified.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from privacy.policy import Policy

CLOCK_SKEW = timedelta(minutes=5)  # a consent time this far ahead of our clock is still "now"
BACKDATE_GRACE = timedelta(hours=1)  # a consent time further back than this needs `by`


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
    rows = store.conn.execute(
        "SELECT id, consent_licence, consent_at FROM contributors WHERE pending_import IS NULL ORDER BY id").fetchall()
    return [classify(r, policy, now) for r in rows]


def eligible_contributors(store, policy: Policy, now: datetime | None = None) -> set[str]:
    """The contributors whose data may feed a release now: consent, accepted licence, waiting period over."""
    return {s.id for s in contributor_states(store, policy, now) if s.status == "eligible"}


def check_consent(licence: str, at: str | None, policy: Policy, by: str | None = None,
                  now: datetime | None = None) -> datetime:
    """The consent time (now when `at` is None), or ConsentError naming the rule it breaks:
    a licence the policy does not list, a time in the future, a backdated time without `by`."""
    now = now or datetime.now(timezone.utc)
    if not licence:
        raise ConsentError("a licence is required (e.g. CC-BY-4.0)")
    if licence not in policy.licences:
        raise ConsentError(f"licence {licence!r} is not accepted by this node's policy (policy.toml [consent] licences: "
                           f"{', '.join(policy.licences)}); consent under it would never make anyone eligible")
    t = parse_time(at) if at else now
    if t > now + CLOCK_SKEW:
        raise ConsentError(f"consent time {t.isoformat(timespec='seconds')} is in the future; consent is recorded when "
                           f"it was given")
    if t < now - BACKDATE_GRACE and not (by and by.strip()):
        raise ConsentError(f"consent time {t.isoformat(timespec='seconds')} is in the past: a backdated consent skips "
                           f"(part of) the {policy.waiting_period_hours:g} h waiting period, so say who gave or "
                           f"witnessed it (--consent-by WHO); it is recorded with the consent")
    return t


def record_consent(store, contributors: list[str] | None, licence: str, at: str | None, source: str,
                   policy: Policy | None = None, by: str | None = None) -> int:
    """Record consent for the given contributors (None: everyone in the store). Returns how many.

    With `policy` (as the CLI does), `check_consent` applies first; `by` is stored with the row."""
    if policy is not None:
        at_iso = check_consent(licence, at, policy, by).isoformat(timespec="seconds")
    else:
        if not licence:
            raise ConsentError("a licence is required (e.g. CC-BY-4.0)")
        at_iso = (parse_time(at) if at else datetime.now(timezone.utc)).isoformat(timespec="seconds")
    if by:
        source = f"{source}; given by {by.strip()}"
    with store.transaction():
        if contributors is None:
            contributors = [r[0] for r in store.conn.execute("SELECT id FROM contributors WHERE pending_import IS NULL")]
        for cid in (store.resolve(c) for c in contributors):  # a linked id names its person (node/links.py)
            row = store.conn.execute(
                "SELECT consent_licence, consent_at, consent_source FROM contributors WHERE id=? AND pending_import IS NULL",
                (cid,)).fetchone()
            if not row:
                raise ConsentError(f"no contributor {cid!r} in this node")
            when, why = at_iso, source
            if row[0] == licence and row[1]:  # the same consent again: keep its first time and who gave it
                when = min(row[1], at_iso, key=parse_time)
                why = row[2] if not row[2] or source in row[2] else f"{row[2]} | {source}"
            store.conn.execute(
                "UPDATE contributors SET consent_licence=?, consent_at=?, consent_source=? WHERE id=?",
                (licence, when, why, cid),
            )
    return len(contributors)
