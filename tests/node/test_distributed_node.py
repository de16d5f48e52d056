"""The node's maths of a distributed-DP round (node/distributed.py, node/dpsgd/persons.py): per-person clipped
gradients equal each person's own autograd gradient, Poisson sampling at the public rate, and the field vector
decodes to the clipped sum and the count plus noise of the planned scale (statistical checks)."""

import numpy as np
import pytest
import torch

from model.reward_model import RewardHead, state_to_vector
from node.distributed import DdgPlan, noisy_integer_sum, poisson_sample
from node.dpsgd.data import contributor_tensors_from_arrays
from node.dpsgd.loss import ContributorBTLoss
from node.dpsgd.persons import clipped_person_gradients
from privacy.distributed_dp import decode, gradient_and_count
from privacy.samplers import SecureUniform


def _data(n: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(3 * n + 3, 8)).astype(np.float32)
    rows = [[(3 * i, 3 * i + 1, 3 * i + 2, float(i % 2), 1.0)] * (1 + i % 3) for i in range(n)] + [[]]  # last: no pairs
    return contributor_tensors_from_arrays(feats, rows, 4)


def test_person_gradients_are_each_persons_own_clipped():
    torch.manual_seed(0)
    data, head = _data(), RewardHead(8, hidden=4)
    n = data.n_contributors
    raw = np.concatenate(list(clipped_person_gradients(head, data, range(n), 1e9, chunk=5)))
    for i in range(n):
        head.zero_grad()
        loss = ContributorBTLoss("sum")(head(data.inputs(torch.tensor([i]), head.combine)), data.target[[i]], data.weight[[i]])
        if loss.requires_grad:
            loss.backward()
        ref = np.concatenate([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).numpy()
                              for p in head.parameters()])
        assert np.allclose(raw[i], ref, atol=1e-6)
    assert not raw[-1].any()  # a person with no pair adds nothing
    clipped = np.concatenate(list(clipped_person_gradients(head, data, range(n), 0.05)))
    norms = np.linalg.norm(clipped, axis=1)
    assert norms.max() <= 0.05 * (1 + 1e-9) and np.allclose(norms[:-1], np.minimum(0.05, np.linalg.norm(raw[:-1], axis=1)))


def test_poisson_sample_rate_is_the_public_q():
    rng, n, q = SecureUniform(), 40_000, 0.2
    counts = [len(poisson_sample(n, q, rng)) for _ in range(5)]
    sd = (n * q * (1 - q)) ** 0.5
    assert all(abs(c - n * q) < 5 * sd for c in counts), counts
    assert len(poisson_sample(0, q, rng)) == 0 and len(poisson_sample(100, 1.0, rng)) == 100


@pytest.mark.parametrize("z,h", [(0.5, 1), (2.0, 1), (1.0, 2), (1.0, 3)])
def test_field_vectors_decode_to_clipped_sum_and_count_plus_the_target_noise(z, h):
    """h nodes' field vectors (each one share of sigma/sqrt(h)) summed mod 2^32 decode to the clipped gradient sum
    and the count plus noise of the central scale z * clip: the h honest shares alone reach the target."""
    torch.manual_seed(1)
    data = _data(40, seed=1)
    head = RewardHead(8, hidden=16)
    vec = state_to_vector(head)
    clip = 0.5
    plan = DdgPlan("f", 1, 1.0, z, clip, h, h, int(vec.size))  # q = 1: everyone is sampled
    p = plan.params()
    exact = h * np.concatenate(list(clipped_person_gradients(head, data, range(data.n_contributors), clip))).sum(axis=0)
    total = sum(noisy_integer_sum(head.arch(), vec, data, plan, p, SecureUniform()) for _ in range(h)) % (1 << 32)
    grad, count = gradient_and_count(decode(total, p), p)
    err = grad - exact
    sigma = z * clip  # real units: h shares of z * clip / sqrt(h) each
    assert abs(err.mean()) < 5 * sigma / np.sqrt(err.size)
    assert 0.8 < err.std() / sigma < 1.2, err.std() / sigma  # rounding adds ~gamma, negligible beside sigma
    assert abs(count - h * data.n_contributors) < 5 * sigma / p.count_weight


def test_gate_holds_a_distributed_train_event_to_the_policy_floors():
    """The release gate reads a distributed step's central noise multiplier (sqrt(h) shares of sigma, in real
    units over the clip) and its sampling rate, and refuses below the floor or above the ceiling by rule."""
    from privacy.distributed_dp import ddg_event, plan_ddg
    from privacy.policy import Policy
    from privacy.release import PolicyViolation, ReleaseGate, ddg_params_of

    gate = ReleaseGate(None, Policy(community="c"))  # type: ignore[arg-type]  (check_event reads only the policy)
    p = plan_ddg(0.1, 1.5, 50, 3, 2)
    z, q = ddg_params_of(ddg_event(p, 0.2, 1))
    assert abs(z - 1.5) < 1e-9 and q == 0.2
    gate.check_event("train", ddg_event(p, 0.2, 1))
    with pytest.raises(PolicyViolation, match="min_noise_multiplier"):
        gate.check_event("train", ddg_event(plan_ddg(0.1, 0.3, 50, 3, 2), 0.2, 1))
    with pytest.raises(PolicyViolation, match="max_sampling_rate"):
        gate.check_event("train", ddg_event(p, 0.5, 1))
    # defence in depth beside node/distributed.py `check_request`: shares sized for more honest nodes than the
    # policy counts on (each share too small) are refused by the gate itself, naming the rule
    with pytest.raises(PolicyViolation, match="trust.min_honest_nodes"):
        gate.check_event("train", ddg_event(plan_ddg(0.1, 1.5, 50, 3, 3), 0.2, 1))


def test_one_persons_whole_contribution_is_bounded_and_moves_no_one_else():
    """Add/remove one person (the unit of privacy) who brings many pairs with large gradients: the node's
    quantised sum (before noise; the same rounding draws for everyone else) moves by that person's vector
    alone, whose L2 norm is within p.l2_bound however many pairs they have, and every other person's clipped
    gradient is unchanged by their presence (their pairs set the padding width P, never anyone's data)."""
    from node.distributed import quantised_sum

    torch.manual_seed(2)
    rng = np.random.default_rng(3)
    n, heavy_pairs = 10, 40
    feats = (rng.normal(size=(3 * (n + heavy_pairs), 8)) * 5).astype(np.float32)
    rows = [[(3 * i, 3 * i + 1, 3 * i + 2, float(i % 2), 1.0)] * (1 + i % 2) for i in range(n)]
    heavy = [(3 * (n + k), 3 * (n + k) + 1, 3 * (n + k) + 2, 1.0, 1.0) for k in range(heavy_pairs)]
    with_p = contributor_tensors_from_arrays(feats, rows + [heavy], heavy_pairs)  # the heavy person last
    without = contributor_tensors_from_arrays(feats, rows, 2)  # P: the most pairs anyone kept
    assert with_p.max_pairs > without.max_pairs  # their presence changes the padding width
    head = RewardHead(8, hidden=4)
    vec, clip = state_to_vector(head), 0.05
    p = DdgPlan("f", 1, 1.0, 1.0, clip, 3, 2, int(vec.size)).params()
    a = quantised_sum(head.arch(), vec, with_p, np.arange(n + 1), p, np.random.default_rng(7))
    b = quantised_sum(head.arch(), vec, without, np.arange(n), p, np.random.default_rng(7))
    diff = (a - b).astype(np.float64)
    assert 0 < np.linalg.norm(diff) <= p.l2_bound and diff[-1] == p.count_units
    assert np.linalg.norm(diff[:-1]) * p.gamma > 0.9 * clip  # the heavy person is clipped to C, not let through
    g_with = np.concatenate(list(clipped_person_gradients(head, with_p, range(n), clip)))
    g_without = np.concatenate(list(clipped_person_gradients(head, without, range(n), clip)))
    assert np.allclose(g_with, g_without, rtol=1e-5, atol=1e-9)  # float32 summation order only (far below gamma)


def test_coordinator_never_divides_by_a_noisy_count_near_or_below_zero():
    """The noisy count can be <= 0 or tiny (few sampled people beside the count's noise): the mean divides by at
    least COUNT_FLOOR_SIGMAS of the count noise's deviation, so a step stays bounded (post-processing)."""
    from coordinator.distributed import count_floor, noisy_mean
    from privacy.distributed_dp import plan_ddg, to_field

    p = plan_ddg(0.1, 1.0, 20, 3, 2)
    floor = count_floor(p, 3)
    assert floor >= 1.0 and abs(floor - 2 * 1.0 * 0.1 * np.sqrt(3 / 2) / p.count_weight) < 1e-6 * floor
    for count in (-5, 0, 1):  # in units of people: the count coordinate carries count * count_units
        v = np.zeros(21, dtype=np.int64)
        v[0], v[-1] = round(0.1 / p.gamma), count * p.count_units
        mean, noisy = noisy_mean(to_field(v), p, 3)
        assert abs(noisy - count) < 1e-9 and np.isfinite(mean).all()
        assert abs(mean[0] - 0.1 / floor) < 1e-4 * (0.1 / floor)
    v = np.zeros(21, dtype=np.int64)
    v[0], v[-1] = round(0.1 / p.gamma), 1000 * p.count_units  # a count well above its noise: the plain mean
    assert abs(noisy_mean(to_field(v), p, 3)[0][0] - 0.1 / 1000) < 1e-3 * 0.1 / 1000


def test_auditor_flags_a_distributed_entry_sized_for_more_honest_nodes_than_the_policy():
    """The auditor's per-entry policy rules (privacy/audit/policy.py) read a distributed step's shares: an entry
    whose noise counts on more honest nodes than the node's trust.min_honest_nodes is a policy problem."""
    from privacy.audit.policy import _entry_problems, _Thresholds
    from privacy.distributed_dp import ddg_event, plan_ddg
    from privacy.events import event_to_proto
    from privacy.policy import Policy
    from protos import ledger_pb2

    policy = Policy(community="c", min_contributors_noise=0.0)
    problems = {}
    for h in (2, 3):
        e = ledger_pb2.LedgerEntry()
        e.body.seq, e.body.release_kind, e.body.policy_hash, e.body.claimed_epsilon = 0, "train", policy.sha256(), 0.1
        e.body.event.CopyFrom(event_to_proto(ddg_event(plan_ddg(0.1, 1.5, 50, 3, h), 0.2, 1)))
        pp: list[str] = []
        _entry_problems(e, policy, policy.sha256(), last=True, pp=pp, warns=[], thresholds=_Thresholds(), cache={})
        problems[h] = [p for p in pp if "honest" in p]
    assert problems[2] == [] and "trust.min_honest_nodes 2" in problems[3][0], problems
