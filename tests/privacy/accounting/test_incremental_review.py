"""Attacks on incremental accounting (issue 16 review): rounding, stale or foreign sidecars, concurrent
writers with stale caches, a plan changed after its first entry, the calibration cache's keys.
Each test plays the attack and checks the figure is never below the from-scratch composition."""

from __future__ import annotations

import math
import multiprocessing
import random
import sqlite3
from fractions import Fraction

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy import ledger_accounting, ledger_sidecar
from privacy.accounting import adaptive_epsilon, epsilon_of, new_state, state_report
from privacy.accounting.calibration import discrete_gaussian_sigma_for, discrete_laplace_scale_for
from privacy.accounting.filter import SELECTION_DELTA_SHARE, _slack
from privacy.accounting.running import SCALE_BITS
from privacy.events import DiscreteGaussianEvent, DiscreteLaplaceEvent, EpsilonDeltaEvent, SelfComposedEvent, dpsgd_event
from privacy.ledger import CapExceeded, Ledger, LedgerError
from privacy.ledger_sidecar import SIDECAR_EVERY

DELTA = 1e-6


def open_ledger(path, key) -> Ledger:
    return Ledger(sqlite3.connect(str(path), isolation_level=None, timeout=30), key, "n")


def count_verified(monkeypatch) -> list[int]:
    seen: list[int] = []
    real = ledger_accounting.apply_row
    monkeypatch.setattr(ledger_accounting, "apply_row", lambda st, v, seq, *a: (seen.append(seq), real(st, v, seq, *a)))
    return seen


def test_the_filter_figure_is_never_below_the_exact_value_of_its_terms():
    # the exact sums are rounded up, and so must be the final `S(alpha) + slack(alpha)` (one float addition,
    # round to nearest: before the fix, about half of these states reported a figure below the exact value)
    rng = random.Random(11)
    slack = _slack((1 - SELECTION_DELTA_SHARE) * DELTA)
    below = 0
    for _ in range(300):
        st = new_state()
        for _ in range(rng.randint(1, 6)):
            st.add(rng.choice([DiscreteGaussianEvent(rng.uniform(3, 90), 1), DiscreteLaplaceEvent(rng.uniform(5, 200), 1),
                               EpsilonDeltaEvent(rng.uniform(0.01, 0.3), 0.0)]), rng.randint(1, 40))
        exact = min(Fraction(s, 1 << SCALE_BITS) + Fraction(float(a)) for s, a in zip(st.sums, slack))
        figure = state_report(st, DELTA).epsilon
        below += Fraction(figure) < exact
    assert below == 0


def test_a_sidecar_of_another_node_is_ignored(tmp_path, monkeypatch):
    key, other_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    mine, theirs = open_ledger(tmp_path / "a.db", key), open_ledger(tmp_path / "b.db", other_key)
    events = [DiscreteGaussianEvent(9.0, 1)] * (SIDECAR_EVERY + 3)
    for i, ev in enumerate(events):
        mine.append("q", ev, DELTA, "p", request_hash=f"r{i}")
        theirs.append("q", DiscreteLaplaceEvent(900.0, 1), DELTA, "p", request_hash=f"r{i}")  # spends far less
    row = theirs.conn.execute("SELECT id, seq, head_hash, state, mac FROM privacy_accounting_state").fetchone()
    mine.conn.execute("INSERT OR REPLACE INTO privacy_accounting_state VALUES (?, ?, ?, ?, ?)", row)
    seen = count_verified(monkeypatch)
    ledger_accounting.forget()
    assert mine.spent(DELTA) == adaptive_epsilon(events, DELTA)
    assert seen == list(range(len(events)))  # rebuilt from the first entry: the MAC is another node's


def test_a_ledger_rolled_back_behind_its_own_sidecar_is_refused(tmp_path):
    # a ledger file rolled back to an earlier copy, with the later (genuine) sidecar planted in it: the releases
    # of the removed entries were made, so a rebuild from the shorter ledger would under-report
    key = Ed25519PrivateKey.generate()
    led = open_ledger(tmp_path / "a.db", key)
    events = [DiscreteGaussianEvent(12.0 + i % 2, 1) for i in range(SIDECAR_EVERY + 4)]
    for i, ev in enumerate(events[:5]):
        led.append("q", ev, DELTA, "p", request_hash=f"r{i}")
    snapshot = sqlite3.connect(str(tmp_path / "old.db"), isolation_level=None)
    led.conn.backup(snapshot)
    for i, ev in enumerate(events[5:], start=5):
        led.append("q", ev, DELTA, "p", request_hash=f"r{i}")
    row = led.conn.execute("SELECT id, seq, head_hash, state, mac FROM privacy_accounting_state").fetchone()
    assert row is not None and row[1] >= 5
    snapshot.execute("INSERT OR REPLACE INTO privacy_accounting_state VALUES (?, ?, ?, ?, ?)", row)
    snapshot.close()
    ledger_accounting.forget()  # a new process
    old = open_ledger(tmp_path / "old.db", key)
    with pytest.raises(LedgerError, match="rolled back"):
        old.spent(DELTA)
    with pytest.raises(LedgerError, match="rolled back"):
        old.append("q", events[0], DELTA, "p", request_hash="again", epsilon_cap=100.0)
    # the same by deleting rows in place (an attacker who drops the append-only trigger)
    led.conn.execute("DROP TRIGGER privacy_ledger_no_delete")
    led.conn.execute("DROP TRIGGER privacy_release_cache_no_delete")
    led.conn.execute("DELETE FROM privacy_release_cache WHERE seq >= 10")
    led.conn.execute("DELETE FROM privacy_ledger WHERE seq >= 10")
    ledger_accounting.forget()
    with pytest.raises(LedgerError, match="rolled back"):
        led.spent(DELTA)


def test_a_sidecar_saved_by_other_accounting_code_is_not_reused(tmp_path, monkeypatch):
    key = Ed25519PrivateKey.generate()
    led = open_ledger(tmp_path / "a.db", key)
    events = [DiscreteGaussianEvent(20.0, 1)] * (SIDECAR_EVERY + 2)
    for i, ev in enumerate(events):
        led.append("q", ev, DELTA, "p", request_hash=f"r{i}")
    seen = count_verified(monkeypatch)
    ledger_accounting.forget()
    assert led.spent(DELTA) == adaptive_epsilon(events, DELTA) and seen[0] > 0  # genuine: reused
    # an upgrade changes the curves (a fixed bug, another dp_accounting): the saved sums are not trusted
    monkeypatch.setattr(ledger_sidecar, "fingerprint", lambda orders: "other code")
    seen.clear()
    ledger_accounting.forget()
    assert led.spent(DELTA) == adaptive_epsilon(events, DELTA) and seen == list(range(len(events)))


def _race_worker(path: str, raw: bytes, tag: str, cap: float) -> None:
    led = open_ledger(path, Ed25519PrivateKey.from_private_bytes(raw))  # its inherited cache is stale
    for i in range(40):
        try:
            led.append("q", DiscreteGaussianEvent(6.0, 1), DELTA, "p", request_hash=f"{tag}{i}", epsilon_cap=cap)
        except CapExceeded:
            return


def test_concurrent_processes_with_stale_caches_never_pass_the_cap(tmp_path):
    key, cap = Ed25519PrivateKey.generate(), 3.0
    path = str(tmp_path / "a.db")
    led = open_ledger(path, key)
    for i in range(2):  # the parent's cache holds the state at seq 1; every child starts from it
        led.append("q", DiscreteGaussianEvent(6.0, 1), DELTA, "p", request_hash=f"p{i}")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_race_worker, args=(path, key.private_bytes_raw(), f"w{j}-", cap)) for j in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ledger_accounting.forget()
    events = led.events()
    spent = led.spent(DELTA).epsilon  # rebuilt from the first row: every row verifies and chains
    assert spent == adaptive_epsilon(events, DELTA).epsilon <= cap
    assert adaptive_epsilon([*events, DiscreteGaussianEvent(6.0, 1)], DELTA).epsilon > cap  # filled to the cap
    claims = [e.body.claimed_epsilon for e in led.entries()]
    assert claims == [adaptive_epsilon(events[: i + 1], DELTA).epsilon for i in range(len(events))]


def test_a_plan_cannot_change_after_its_first_entry_and_its_figure_is_per_delta():
    led = Ledger(sqlite3.connect(":memory:", isolation_level=None), Ed25519PrivateKey.generate(), "n")
    step = dpsgd_event(0.02, 2.0, 10)
    plan = ("fed-1", SelfComposedEvent(step, 3))
    first = led.append("train", step, DELTA, "p", request_hash="r0", plan=plan)
    assert first.entry.body.plan_epsilon == epsilon_of([plan[1]], DELTA).epsilon
    assert first.report.method == "rdp-filter" and not first.report.fixed_in_advance  # the cap's figure is the filter's
    # the coordinator lowers the noise of the SAME plan id after its first round: refused, nothing written
    lowered = ("fed-1", SelfComposedEvent(dpsgd_event(0.02, 0.8, 10), 3))
    with pytest.raises(LedgerError, match="other parameters"):
        led.append("train", lowered[1].event, DELTA, "p", request_hash="r1", plan=lowered)
    longer = ("fed-1", SelfComposedEvent(step, 30))
    with pytest.raises(LedgerError, match="other parameters"):
        led.append("train", step, DELTA, "p", request_hash="r1", plan=longer)
    assert len(led) == 1
    # the same plan at another delta: its figure at THAT delta, not the cached one
    d2 = 1e-8
    second = led.append("train", step, d2, "p", request_hash="r2", plan=plan)
    assert second.entry.body.plan_epsilon == epsilon_of([plan[1]], d2).epsilon > first.entry.body.plan_epsilon
    third = led.append("train", step, DELTA, "p", request_hash="r3", plan=plan)
    assert third.entry.body.plan_epsilon == first.entry.body.plan_epsilon
    assert led.plans(DELTA) == {"fed-1": epsilon_of([plan[1]], DELTA)} and led.plans(DELTA)["fed-1"].fixed_in_advance


@pytest.mark.parametrize("fn, base, variants", [
    (discrete_gaussian_sigma_for, (0.5, DELTA, 1, 1), [(0.6, DELTA, 1, 1), (0.5, 1e-8, 1, 1), (0.5, DELTA, 2, 1),
                                                      (0.5, DELTA, 1, 3)]),
    (discrete_laplace_scale_for, (0.5, 0.0, 1, 1), [(0.7, 0.0, 1, 1), (0.5, 0.0, 3, 1), (0.5, 0.0, 1, 2)]),
])
def test_the_calibration_cache_answers_each_question_with_its_own_inputs(fn, base, variants):
    answers = {base: fn(*base)}
    for args in variants:
        answers[args] = fn(*args)  # cached after `base`: must not return base's answer
    for args, got in answers.items():
        assert got == fn.__wrapped__(*args)  # the uncached calibration
    assert len(set(answers.values())) == len(answers)
    assert all(math.isfinite(v) and v > 0 for v in answers.values())
    assert np.isfinite(list(answers.values())).all()
