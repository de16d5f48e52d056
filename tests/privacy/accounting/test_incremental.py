"""Incremental accounting (issue 16, item 1): the ledger's running state gives the SAME numbers as the
from-scratch recomputation, enforces the cap exactly where it did, and is never reused for another chain."""

from __future__ import annotations

import json
import random
import sqlite3

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.planning import quote
from node.training import TrainRequest
from privacy import ledger_accounting
from privacy.accounting import adaptive_epsilon, epsilon_of, new_state, state_report
from privacy.accounting.calibration import noise_multiplier_within_filter
from privacy.accounting.filter import filter_epsilon
from privacy.audit.recompute import recompute_filter_epsilons
from privacy.events import (
    ComposedEvent,
    DiscreteGaussianEvent,
    DiscreteLaplaceEvent,
    EpsilonDeltaEvent,
    GaussianEvent,
    LaplaceEvent,
    SelfComposedEvent,
    dpsgd_event,
)
from privacy.ledger import CapExceeded, Ledger, LedgerError
from privacy.policy import Policy

DELTA = 1e-6


def random_release(rng: random.Random, plans: list) -> tuple[str, object, tuple | None]:
    """One release of a node's mixed history: queries, thresholds, key selection, DP-SGD rounds of plans."""
    r = rng.random()
    if r < 0.3:
        return "query:coverage", DiscreteGaussianEvent(rng.choice([20.0, 35.5, 80.0]), rng.choice([1, 2])), None
    if r < 0.45:
        return "threshold:train", DiscreteGaussianEvent(4.0, 1), None
    if r < 0.55:
        return "query:ratings", DiscreteLaplaceEvent(rng.choice([30.0, 90.0]), 1), None
    if r < 0.6:
        return "discover_keys", EpsilonDeltaEvent(rng.choice([0.05, 0.1]), 1e-9), None
    if r < 0.65:
        return "query:mean", ComposedEvent((GaussianEvent(40.0, 1.0), LaplaceEvent(200.0, 1.0))), None
    if r < 0.7 or not plans:  # a new federation: a new plan
        q, z, steps, rounds = rng.choice([0.01, 0.05]), rng.choice([1.1, 2.5, 4.0]), rng.choice([5, 20]), 3
        plans.append([f"fed-{len(plans)}", dpsgd_event(q, z, steps), rounds, 0])
    plan = rng.choice([p for p in plans if p[3] < p[2]] or [plans[-1]])
    plan[3] += 1
    return "train", plan[1], (plan[0], SelfComposedEvent(plan[1], plan[2]))


def new_ledger(path=":memory:", key=None) -> Ledger:
    """A ledger in its own SQLite connection."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    return Ledger(conn, key or Ed25519PrivateKey.generate(), "n")


@pytest.mark.parametrize("seed", [1, 2])
def test_incremental_equals_from_scratch_on_random_histories(seed):
    rng = random.Random(seed)
    ledger, plans, events = new_ledger(), [], []
    for i in range(150):
        kind, event, plan = random_release(rng, plans)
        c = ledger.append(kind, event, DELTA, "p", request_hash=f"r{i}", payload=b"x", plan=plan)
        events.append(event)
        scratch = adaptive_epsilon(events, DELTA)
        assert c.report == scratch  # bit for bit: same epsilon, method, labels
        assert c.entry.body.claimed_epsilon == scratch.epsilon
    assert ledger.spent(DELTA) == adaptive_epsilon(events, DELTA) == adaptive_epsilon(ledger.events(), DELTA)
    assert ledger.spent(1e-8) == adaptive_epsilon(events, 1e-8)  # the state does not depend on delta
    # plans: the same reports as computing each committed plan from scratch, in commitment order
    expected = {}
    for e in ledger.entries():
        b = e.body
        if b.plan_id and b.plan_id not in expected:
            expected[b.plan_id] = epsilon_of([SelfComposedEvent(*_plan_of(plans, b.plan_id))], DELTA)
    assert ledger.plans(DELTA) == expected and len(expected) >= 2
    # a cold start (no cached state) rebuilds the same state from the verified rows
    ledger_accounting.forget()
    assert ledger.spent(DELTA) == adaptive_epsilon(events, DELTA)
    # the auditor's independent recomputation agrees to float noise
    claims = [e.body.claimed_epsilon for e in ledger.entries()]
    assert recompute_filter_epsilons([e.to_proto() for e in events], DELTA) == pytest.approx(claims, rel=1e-12)


def _plan_of(plans, plan_id):
    p = next(p for p in plans if p[0] == plan_id)
    return p[1], p[2]


def test_a_cap_that_held_or_refused_still_does():
    rng = random.Random(7)
    cap = 2.5
    ledger, plans, events = new_ledger(), [], []
    held = refused = 0
    for i in range(120):
        kind, event, plan = random_release(rng, plans)
        before = filter_epsilon([*events, event], DELTA) <= cap  # the from-scratch filter's decision
        try:
            ledger.append(kind, event, DELTA, "p", request_hash=f"r{i}", epsilon_cap=cap, plan=plan)
        except CapExceeded as e:
            assert not before and e.projected.epsilon == filter_epsilon([*events, event], DELTA)
            refused += 1
            continue
        assert before
        held += 1
        events.append(event)
    assert held > 5 and refused > 5
    assert ledger.spent(DELTA).epsilon <= cap


def test_two_processes_appending_catch_up_and_a_swapped_ledger_is_not_reused(tmp_path):
    key = Ed25519PrivateKey.generate()
    a, b = new_ledger(tmp_path / "s.db", key), new_ledger(tmp_path / "s.db", key)
    events = []
    for i in range(6):  # alternate writers, each with its own process's cache: each catches up over the other's rows
        ev = DiscreteGaussianEvent(10.0 + i, 1)
        mine = dict(ledger_accounting._CACHE)  # this process's view before the other one appends
        (a if i % 2 else b).append("q", ev, DELTA, "p", request_hash=f"r{i}")
        events.append(ev)
        ledger_accounting._CACHE.clear()
        ledger_accounting._CACHE.update(mine)  # the state of the previous head: a miss, then a catch-up
        assert a.spent(DELTA) == b.spent(DELTA) == adaptive_epsilon(events, DELTA)
    # another ledger file under the same key, with a different history: a different head, a different chain
    other = new_ledger(tmp_path / "t.db", key)
    for i in range(8):
        other.append("q", DiscreteLaplaceEvent(5.0, 1), DELTA, "p", request_hash=f"o{i}")
    assert other.spent(DELTA) == adaptive_epsilon([DiscreteLaplaceEvent(5.0, 1)] * 8, DELTA)
    assert a.spent(DELTA) == adaptive_epsilon(events, DELTA)


def test_a_tampered_row_is_never_accounted(tmp_path):
    key = Ed25519PrivateKey.generate()
    led = new_ledger(tmp_path / "s.db", key)
    for i in range(4):
        led.append("q", DiscreteGaussianEvent(5.0, 1), DELTA, "p", request_hash=f"r{i}")
    conn = led.conn
    conn.execute("DROP TRIGGER privacy_ledger_no_update")  # an attacker with the file rewrites an entry
    row = conn.execute("SELECT body FROM privacy_ledger WHERE seq = 3").fetchone()
    body = bytearray(row[0])
    body[-1] ^= 1
    conn.execute("UPDATE privacy_ledger SET body = ? WHERE seq = 3", (bytes(body),))
    ledger_accounting.forget()  # a new process: nothing cached
    with pytest.raises(LedgerError, match="does not verify at seq 3"):
        led.spent(DELTA)
    with pytest.raises(LedgerError, match="does not verify"):
        led.append("q", DiscreteGaussianEvent(5.0, 1), DELTA, "p", request_hash="new")


def test_planning_and_calibration_from_the_running_state_match_the_history():
    rng = random.Random(3)
    ledger, plans, events = new_ledger(), [], []
    for i in range(40):
        kind, event, plan = random_release(rng, plans)
        ledger.append(kind, event, DELTA, "p", request_hash=f"r{i}", plan=plan)
        events.append(event)
    st = ledger.filter_state()
    assert noise_multiplier_within_filter(st, 0.02, 10, 40.0, DELTA, at_least=0.5) == \
        noise_multiplier_within_filter(events, 0.02, 10, 40.0, DELTA, at_least=0.5)
    policy = Policy(community="t", epsilon_cap=40.0, delta=DELTA, min_contributors=1, max_release_cells=10,
                    max_query_epsilon=1.0, min_contributors_noise=3.0)
    req = TrainRequest.from_config({"federation_id": "f", "round": 1, "rounds": 2, "local_steps": 5, "epsilon": 2.0,
                                    "sampling_rate": 0.05, "lr": 0.1, "max_grad_norm": 1.0,
                                    "max_pairs_per_contributor": 4})
    qs = [("coverage", 0.5), ("ratings", 0.5)]
    assert quote(policy, st, req, qs, 0.5) == quote(policy, events, req, qs, 0.5)
    # the projection adds to a copy: the ledger's own state is untouched
    assert ledger.spent(DELTA) == adaptive_epsilon(events, DELTA)
    assert state_report(new_state(), DELTA).epsilon == 0.0


def test_the_sidecar_starts_a_new_process_and_a_forged_or_stale_one_is_ignored(tmp_path, monkeypatch):
    from privacy.ledger_sidecar import SIDECAR_EVERY, sidecar_seq

    key = Ed25519PrivateKey.generate()
    led = new_ledger(tmp_path / "s.db", key)
    events = [DiscreteGaussianEvent(10.0 + i % 3, 1) for i in range(SIDECAR_EVERY + 5)]
    for i, ev in enumerate(events):
        led.append("q", ev, DELTA, "p", request_hash=f"r{i}")
    assert 0 <= sidecar_seq(led.conn) < len(events) - 1  # saved at most every SIDECAR_EVERY entries
    truth = adaptive_epsilon(events, DELTA)
    verified = []
    real_apply = ledger_accounting.apply_row
    monkeypatch.setattr(ledger_accounting, "apply_row", lambda st, v, seq, *a: (verified.append(seq), real_apply(st, v, seq, *a)))
    ledger_accounting.forget()  # a new process: starts from the sidecar, verifies the rows after it
    assert led.spent(DELTA) == truth
    assert verified == list(range(sidecar_seq(led.conn) + 1, len(events)))
    verified.clear()
    # a forged sidecar (its sums lowered without the node's key) is ignored: the state is rebuilt
    blob = json.loads(led.conn.execute("SELECT state FROM privacy_accounting_state").fetchone()[0])
    blob["sums"] = ["0"] * len(blob["sums"])
    led.conn.execute("UPDATE privacy_accounting_state SET state = ?", (json.dumps(blob).encode(),))
    ledger_accounting.forget()
    assert led.spent(DELTA) == truth and verified == list(range(len(events)))  # every row, from the first
    # a genuine sidecar of ANOTHER chain under the same key (a swapped ledger file) is not reused
    other = new_ledger(tmp_path / "t.db", key)
    for i in range(SIDECAR_EVERY + 2):
        other.append("q", DiscreteLaplaceEvent(500.0, 1), DELTA, "p", request_hash=f"o{i}")
    row = other.conn.execute("SELECT id, seq, head_hash, state, mac FROM privacy_accounting_state").fetchone()
    led.conn.execute("INSERT OR REPLACE INTO privacy_accounting_state VALUES (?, ?, ?, ?, ?)", row)
    ledger_accounting.forget()
    assert led.spent(DELTA) == truth
