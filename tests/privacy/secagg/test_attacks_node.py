"""Issue 11 item 1: two attacks of a malicious coordinator found while writing test_attacks.py, each
played for real (the same transport-free coordinator as there) and each refused, naming the rule:
- a withheld inbox: the victim is routed no peer's shares, so it adds no pairwise mask; refused by the
  state machine itself (privacy/secagg/protocol.py, rule secagg_inbox);
- one cached release masked in two aggregations with different rosters: the difference of the two sums is
  one node's value; refused by the node, which remembers in its store every value it masked and under
  which plan (node/secagg.py, rule secagg_value_once; end to end in tests/e2e/test_secagg_malicious.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.node_dir import NodeDir
from node.secagg import _once
from privacy.secagg.constants import MOD, SecAggError, ShareKind
from privacy.secagg.crypto import combine
from tests.privacy.secagg.test_attacks import DIM, Aggregation, honest_sum, rule, unmask_alone


def withheld_inbox(agg: Aggregation, victim: int = 1) -> np.ndarray:
    """The coordinator routes the victim NO peer's shares, so the victim adds no pairwise mask at all
    (y = q(x) + PRG(b)); every node is then told the same, honest view (everyone survived), signs it and
    reveals b-shares: b_victim and so q(x_victim). No split view, no key substitution, t > n/2. Bonawitz et
    al. 2017 (Figure 4, rounds 2 and 4) refuse it: a node masks only with >= t - 1 peers' shares received
    (|U2| >= t), and unmasks only for survivors among the peers whose shares it received (U3 within U2)."""
    agg.keys()
    inbox = agg.shares()
    ys = {u: agg.masked(u, {} if u == victim else inbox[u]) for u in agg.ids}
    everyone = list(agg.ids)
    sigs = {u: agg.sign(u, everyone, []) for u in everyone}
    reveals = {u: agg.nodes[u].unmask(everyone, [], sigs) for u in everyone}
    b = combine([r[victim][1] for r in reveals.values()
                 if r.get(victim, ("",))[0] == ShareKind.SELF_MASK][:agg.plan.threshold])
    return unmask_alone(ys[victim], victim, b, {})


def test_a_withheld_inbox_is_refused():
    agg = Aggregation(5, 3, seed=8)
    with pytest.raises(SecAggError, match=rule("secagg_inbox")):
        withheld_inbox(agg)
    assert not agg.nodes[1].inbox  # refused with no masked value handed out


def differencing(victim_value: np.ndarray, known: np.ndarray, seed: int = 9) -> tuple[np.ndarray, list]:
    """A release made for secure aggregation is cached and a re-ask with secagg gets the same value (no fresh
    noise: node/queries.py, node/training.py, node/distributed.py). The coordinator runs two honest
    aggregations of that release, rosters {A, B, C} and {A, B, D}, every check of the state machine passing:
    A and B mask the same cached values twice, so sum1 - sum2 = v_C - v_D, and v_D is known (D is the
    coordinator's own member). In integer mode (distributed DP, where one node's value carries only its
    share of the noise) the recovery is exact. Returns it and what A and B masked: [(value, plan digest)]."""
    rng = np.random.default_rng(seed)
    a, b = (rng.integers(0, 1 << 20, DIM).astype(np.uint64) for _ in range(2))
    keys = {u: Ed25519PrivateKey.generate() for u in "ABCD"}
    first = Aggregation(3, 2, ledger_keys={1: keys["A"], 2: keys["B"], 3: keys["C"]},
                        values={1: a, 2: b, 3: victim_value}, group="secagg-3")
    second = Aggregation(3, 2, ledger_keys={1: keys["A"], 2: keys["B"], 3: keys["D"]},
                         values={1: a, 2: b, 3: known}, group="secagg-3-retry")
    learned = (honest_sum(first) + MOD - honest_sum(second) + known) % MOD
    masked = [(v, agg.plan.digest().hex()) for agg in (first, second) for v in (a, b)]
    return learned, masked


def test_a_cached_value_unmasked_in_two_aggregations_is_refused(tmp_path):
    rng = np.random.default_rng(10)
    v_c, v_d = (rng.integers(0, 1 << 20, DIM).astype(np.uint64) for _ in range(2))
    learned, masked = differencing(v_c, v_d)
    assert np.array_equal(learned, v_c)  # the attack works against the state machine alone
    # node A's store: its value under the first plan is taken, the same value under the second refused
    node_a = NodeDir.init(tmp_path / "a", "a")
    (a1, plan1), (_, _), (a2, plan2), (_, _) = masked
    assert np.array_equal(a1, a2) and plan1 != plan2
    _once(node_a, a1, plan1)
    _once(node_a, a1, plan1)  # the same plan again (a stage retried) is not a second aggregation
    with pytest.raises(SecAggError, match=rule("secagg_value_once")):
        _once(node_a, a2, plan2)
    _once(node_a, (a1 + 1) % MOD, plan2)  # a fresh value (fresh noise) may be masked under a new plan
