"""The auditor recomputes both guarantees of a distributed discrete Gaussian entry (issue 11), its sensitivity
after conditional rounding and its wrap bound, and fails an entry whose logged sensitivity was understated."""

import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy.audit import ddg as audit_ddg
from privacy.audit import epsilon as epsilon_check
from privacy.audit.context import AuditContext, NodeContext
from privacy.audit.result import FAIL, PASS, WARN, AuditResult, NodeAudit
from privacy.distributed_dp import ddg_epsilons, ddg_event, plan_ddg
from privacy.events import dpsgd_event
from privacy.ledger import Ledger, body_bytes
from privacy.reports.audit_report import render_audit_html
from protos import bundle_pb2, ledger_pb2

DELTA = 1e-6
P = plan_ddg(clip=1.0, noise_multiplier=1.2, dim=100, participants=5, min_honest=3)
Q, STEPS = 0.05, 20


def _ledger() -> tuple[Ledger, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    ledger = Ledger(sqlite3.connect(":memory:", isolation_level=None), key, "community-d")
    ledger.append("train", dpsgd_event(0.05, 1.5, 10), DELTA, "p" * 64, round_id="local")
    for r in range(2):
        ledger.append("train", ddg_event(P, Q, STEPS), DELTA, "p" * 64, round_id=f"ddg-{r}")
    return ledger, key


def _audit(export: ledger_pb2.LedgerExport) -> AuditResult:
    last = export.entries[-1].body
    node = bundle_pb2.BundleNode(node_id=export.node_id, name="community-d", claimed_epsilon=last.claimed_epsilon,
                                 delta=DELTA, accountant=last.accountant)
    result = AuditResult("mem")
    ctx = AuditContext(root=Path("."), result=result)
    na = NodeAudit(node.node_id, node.name, DELTA, node.claimed_epsilon, node.accountant)
    result.nodes.append(na)
    ctx.node = NodeContext(node, na, export)
    epsilon_check.check(ctx)
    return result


def _resign(export, key, start):
    prev = export.entries[start - 1].entry_hash
    for e in export.entries[start:]:
        import hashlib

        e.body.prev_hash = prev
        e.entry_hash = hashlib.sha256(body_bytes(e.body)).digest()
        e.signature = key.sign(e.entry_hash)
        prev = e.entry_hash


def test_auditor_recomputes_both_guarantees_and_the_checks():
    ledger, _ = _ledger()
    result = _audit(ledger.export())
    assert result.check("epsilon:community-d").status in (PASS, WARN)
    dist = result.check("distributed:community-d")
    assert dist is not None and dist.status == PASS, dist
    trust, own = ddg_epsilons(P, Q, STEPS, DELTA)
    entries = result.nodes[0].entries
    for e in entries[1:]:
        assert e.params["ddg_trust_epsilon"] == pytest.approx(trust, rel=1e-9)
        assert e.params["ddg_own_epsilon"] == pytest.approx(own, rel=1e-9)
        assert e.params["ddg_l2_recomputed"] == pytest.approx(P.l2_bound, rel=1e-12)
        assert e.params["ddg_wrap_bound"] < 1e-12
        assert "3 honest of 5 shares" in e.mechanism
    assert "ddg_trust_epsilon" not in entries[0].params
    html = render_audit_html(result)
    assert "trust assumption" in html and f"{own:.4f}" in html and f"{trust:.4f}" in html


def test_understated_sensitivity_fails_even_when_resigned():
    ledger, key = _ledger()
    export = ledger.export()
    step = export.entries[1].body.event.self_composed.event.poisson_sampled.event.distributed_discrete_gaussian
    step.l2_sensitivity = P.l2_bound / 2  # the node claims half the rounding's bound: its epsilon would be too small
    _resign(export, key, 1)
    result = _audit(export)
    dist = result.check("distributed:community-d")
    assert dist.status == FAIL and "BELOW the recomputed" in dist.message and "seq 1" in dist.message


def test_more_honest_shares_than_participants_fails_and_a_wrap_risk_warns():
    ledger, key = _ledger()
    export = ledger.export()
    step = export.entries[2].body.event.self_composed.event.poisson_sampled.event.distributed_discrete_gaussian
    step.participants = 2  # fewer participants than the 3 honest shares it counts on
    _resign(export, key, 2)
    dist = _audit(export).check("distributed:community-d")
    assert dist.status == FAIL and "honest shares among 2 participants" in " ".join(dist.problems)
    m = ledger.export().entries[2].body.event.self_composed.event.poisson_sampled.event.distributed_discrete_gaussian
    m.bits = 20  # the same sums cannot fit in 20 bits
    assert audit_ddg.wrap_bound(m) == 1.0


def test_tampered_sigma_fails_the_epsilon_claim():
    ledger, key = _ledger()
    export = ledger.export()
    step = export.entries[2].body.event.self_composed.event.poisson_sampled.event.distributed_discrete_gaussian
    step.sigma *= 0.5  # less noise than logged before: the claimed cumulative epsilon is now under-reported
    _resign(export, key, 2)
    assert _audit(export).check("epsilon:community-d").status == FAIL


def test_node_report_shows_both_guarantees_side_by_side():
    from privacy.policy import Policy
    from privacy.reports.node_report import budget_summary, render_html, render_markdown

    ledger, _ = _ledger()
    s = budget_summary(ledger, Policy(community="d", epsilon_cap=50.0, delta=DELTA))
    trust, own = ddg_epsilons(P, Q, STEPS, DELTA)
    assert [d["seq"] for d in s["distributed"]] == [1, 2]
    assert s["distributed"][0]["trust_epsilon"] == pytest.approx(trust) and s["distributed"][0]["own_epsilon"] == pytest.approx(own)
    assert s["spent"] < s["spent_own_share"]  # the budget is charged with the trust figure
    md = render_markdown(s)
    assert "own share alone" in md and f"{own:.4f}" in md and f"{trust:.4f}" in md
    assert f"{own:.4f}" in render_html(s)


def test_more_honest_shares_than_the_node_policy_relies_on_fails(tmp_path):
    """Adversarial review (issue 11): an entry whose trust figure counts on more honest shares than the node's
    policy (trust.min_honest_nodes) understates epsilon with a consistent claim; with the policy text the
    auditor FAILs it naming the rule, and passes the same ledger under a policy that relies on that many."""
    import dataclasses

    from privacy.policy import Policy, Trust

    for honest, ok in ((2, False), (3, True)):  # P's steps count on 3 honest shares
        pol = dataclasses.replace(Policy(community="d", epsilon_cap=50.0, delta=DELTA), trust=Trust(min_honest_nodes=honest))
        path = tmp_path / f"policy-{honest}.toml"
        pol.save(path)
        key = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
        ledger = Ledger(sqlite3.connect(":memory:", isolation_level=None), key, "community-d")
        ledger.append("train", ddg_event(P, Q, STEPS), DELTA, pol.sha256(), round_id="ddg-0")
        export = ledger.export()
        last = export.entries[-1].body
        node = bundle_pb2.BundleNode(node_id=export.node_id, name="community-d", claimed_epsilon=last.claimed_epsilon,
                                     delta=DELTA, accountant=last.accountant)
        result = AuditResult("mem")
        ctx = AuditContext(root=tmp_path, result=result, policies={export.node_id: str(path)})
        na = NodeAudit(node.node_id, node.name, DELTA, node.claimed_epsilon, node.accountant)
        result.nodes.append(na)
        ctx.node = NodeContext(node, na, export)
        epsilon_check.check(ctx)
        dist = result.check("distributed:community-d")
        if ok:
            assert dist.status == PASS, dist
        else:
            assert dist.status == FAIL and "policy rule trust.min_honest_nodes" in dist.message, dist
