"""The auditor verifies a ledger in ONE pass (issue 16): the running prefix state gives the same figures as
recomputing every prefix from scratch, and an under-reported claim is still caught."""

from __future__ import annotations

import hashlib
import math
import random
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dp_accounting.rdp import rdp_privacy_accountant as rdp_acc

from privacy.audit import epsilon as epsilon_check
from privacy.audit.context import AuditContext, NodeContext
from privacy.audit.recompute import (
    FILTER_ORDERS,
    SELECTION_DELTA_SHARE,
    _approximate,
    _rdp_event,
    recompute_epsilons,
    recompute_filter_epsilons,
    recompute_total,
    to_dp_event,
)
from privacy.audit.result import FAIL, PASS, AuditResult, NodeAudit
from privacy.events import DiscreteGaussianEvent, DiscreteLaplaceEvent, EpsilonDeltaEvent, dpsgd_event
from privacy.ledger import Ledger, body_bytes
from protos import bundle_pb2

DELTA = 1e-6


def history(seed: int, n: int) -> list:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.4:
            out.append(DiscreteGaussianEvent(rng.choice([20.0, 45.0]), 1))
        elif r < 0.6:
            out.append(DiscreteLaplaceEvent(60.0, 1))
        elif r < 0.7:
            out.append(EpsilonDeltaEvent(0.05, 1e-9))
        else:
            out.append(dpsgd_event(0.02, rng.choice([1.5, 3.0]), 10))
    return out


def every_prefix_from_scratch(events: list, delta: float) -> list[float]:
    """The pre-issue-16 auditor: each prefix recomposed from its first event."""
    out = []
    left = (1 - SELECTION_DELTA_SHARE) * delta
    for k in range(1, len(events) + 1):
        acc, spent = rdp_acc.RdpAccountant(orders=list(FILTER_ORDERS)), 0.0
        for e in events[:k]:
            pure, d = _approximate(to_dp_event(e.to_proto()))
            spent += d
            acc.compose(_rdp_event(pure))
        curve = [math.inf if math.isnan(v) else float(v) for v in acc._rdp]
        out.append(min(v + math.log(len(FILTER_ORDERS) / left) / (a - 1.0) for v, a in zip(curve, FILTER_ORDERS)))
    return out


def test_one_pass_filter_figures_equal_every_prefix_recomputed():
    events = history(5, 16)
    one_pass = recompute_filter_epsilons([e.to_proto() for e in events], DELTA)
    assert one_pass == pytest.approx(every_prefix_from_scratch(events, DELTA), rel=1e-12)


def test_whole_ledger_figure_in_one_pass_matches_the_per_prefix_composer():
    events = history(6, 12)
    protos = [e.to_proto() for e in events]
    total = recompute_total(protos, DELTA)
    last = recompute_epsilons(protos, DELTA)[-1]
    assert total[0] == pytest.approx(last[0], rel=2e-3) and total[1] == pytest.approx(last[1], rel=1e-9)


def audit(ledger: Ledger, export=None) -> AuditContext:
    export = export or ledger.export()
    last = export.entries[-1].body
    node = bundle_pb2.BundleNode(node_id=export.node_id, name="n", delta=DELTA, claimed_epsilon=last.claimed_epsilon,
                                 accountant=last.accountant)
    ctx = AuditContext(root=Path("."), result=AuditResult("t"),
                       node=NodeContext(node, NodeAudit(export.node_id, "n", DELTA, last.claimed_epsilon, last.accountant),
                                        export))
    epsilon_check.check(ctx)
    return ctx


def test_epsilon_check_passes_a_clean_ledger_and_catches_an_under_reported_claim():
    key = Ed25519PrivateKey.generate()
    ledger = Ledger(sqlite3.connect(":memory:", isolation_level=None), key, "n")
    for i, e in enumerate(history(7, 30)):
        ledger.append("q", e, DELTA, "p", request_hash=f"r{i}")
    ctx = audit(ledger)
    status = {c.name.split(":")[0]: c.status for c in ctx.result.checks}
    assert status["epsilon"] == PASS, ctx.result.checks
    entries = ctx.node.audit.entries
    assert entries[-1].pld_epsilon is not None and entries[0].pld_epsilon is None  # the whole-ledger figure, once
    # a node that under-reports one claim in the middle (re-signed with its own key) is caught
    export = ledger.export()
    b = export.entries[12].body
    b.claimed_epsilon = b.claimed_epsilon * 0.9
    export.entries[12].entry_hash = hashlib.sha256(body_bytes(b)).digest()
    export.entries[12].signature = key.sign(bytes(export.entries[12].entry_hash))
    ctx = audit(ledger, export)
    check = next(c for c in ctx.result.checks if c.name.startswith("epsilon:"))
    assert check.status == FAIL and "seq 12" in check.message and "BELOW" in check.message
