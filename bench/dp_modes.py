"""The four training modes that bench/reward_model.py compares (issue 11), on the same head and data.

- non-private: plain minibatch training over the union of all communities (no clipping, no noise).
- central DP: one trusted curator runs user-level DP-SGD over the union, one noise draw per step
  (node/dpsgd `train_dp`, Abadi et al. 2016, https://arxiv.org/abs/1607.00133): the bound.
- local DP: each community runs DP-SGD on its own members with its own noise (the same local round
  as node/training.py) and the coordinator averages the updates (FedAvg, coordinator/aggregation.py).
- distributed DP: every step is ONE DP-SGD step over the union, as `cairn federate --dp distributed`
  runs it: each community Poisson-samples its members at q, clips each person's gradient, quantises
  it by conditional randomised rounding, sums, adds its discrete Gaussian share, and only the modular
  sum is decoded (privacy/distributed_dp.py; Kairouz, Liu & Steinke 2021, "The Distributed Discrete
  Gaussian Mechanism for Federated Learning with Secure Aggregation", https://arxiv.org/abs/2102.06387).
  The real quantisation and noise functions run in-process, not Flower. SecAgg+ is skipped: its
  pairwise masks cancel exactly in the modular sum (Bonawitz et al. 2017, https://eprint.iacr.org/2017/281),
  so the coordinator decodes the same integers with or without it.

Every DP mode's noise multiplier is calibrated for its target epsilon at the policy delta by the
project's calibration (privacy/accounting/calibration.py `calibrate_noise`, the ledger's accountant);
distributed DP on the trust-assumption event (`ddg_event`) with `min_honest` honest communities.
"""

from __future__ import annotations

import numpy as np
import torch

from model.reward_model import RewardHead, state_to_vector, vector_to_state
from node.dpsgd import ContributorTensors, pair_accuracy, train_dp, train_nonprivate
from privacy.accounting.calibration import calibrate_noise, noise_multiplier_for
from privacy.policy import Policy
from privacy.samplers import SecureUniform

DELTA = Policy("bench").delta  # the default policy delta every node reports at (1e-6)


def accuracy(head: RewardHead, tests: list[ContributorTensors]) -> float:
    """Mean pair accuracy over the communities' held-out rule-labelled pairs."""
    return float(np.mean([pair_accuracy(head, t) for t in tests]))


def n_params(head: RewardHead) -> int:
    """Trainable parameters of the head (the dimension every update lives in)."""
    return int(sum(p.numel() for p in head.parameters() if p.requires_grad))


def non_private(nodes, *, steps, q, lr, hidden, seed=0) -> RewardHead:
    """Plain training over the union with the DP modes' expected batch and steps."""
    torch.manual_seed(seed)
    pooled = ContributorTensors.concat(nodes)
    head = RewardHead(pooled.dim, hidden)
    train_nonprivate(head, pooled, steps=steps, batch_size=max(1, round(q * pooled.n_contributors)), lr=lr, seed=seed)
    return head


def central(nodes, *, epsilon, steps, q, C, lr, hidden, seed=0) -> tuple[RewardHead, float]:
    """(head, z): user-level DP-SGD over the union of all communities (a trusted curator)."""
    torch.manual_seed(seed)
    pooled = ContributorTensors.concat(nodes)
    head = RewardHead(pooled.dim, hidden)
    z = noise_multiplier_for(epsilon, DELTA, q, steps)
    train_dp(head, pooled, noise_multiplier=z, max_grad_norm=C, sampling_probability=q, steps=steps, lr=lr,
             sampling_seed=seed, noise_seed=seed + 1)
    return head, z


def local(nodes, *, epsilon, rounds, local_steps, q, C, lr, hidden, seed=0) -> tuple[RewardHead, float]:
    """(head, z): FedAvg over communities, each round each community's own DP-SGD with its own noise."""
    torch.manual_seed(seed)
    head = RewardHead(nodes[0].dim, hidden)
    g = state_to_vector(head)
    z = noise_multiplier_for(epsilon, DELTA, q, rounds * local_steps)  # the same plan for every community
    for r in range(rounds):
        updates = []
        for i, data in enumerate(nodes):
            h = RewardHead(data.dim, hidden)
            h.load_state_dict(vector_to_state(g, h))
            s = seed * 100_000 + r * 1000 + i
            train_dp(h, data, noise_multiplier=z, max_grad_norm=C, sampling_probability=q, steps=local_steps, lr=lr,
                     sampling_seed=s, noise_seed=s + 500)
            updates.append(state_to_vector(h) - g)
        g = g + np.mean(updates, axis=0)
    head.load_state_dict(vector_to_state(g, head))
    return head, z


def ddg_noise_multiplier(epsilon: float, *, q: float, steps: int, C: float, dim: int, participants: int,
                         min_honest: int) -> float:
    """Central-equivalent z whose distributed event (trust assumption: `min_honest` honest shares) costs
    at most `epsilon` at the policy delta, by the project's calibration."""
    from privacy.distributed_dp import ddg_event, plan_ddg

    return calibrate_noise(lambda z: ddg_event(plan_ddg(C, z, dim, participants, min_honest), q, steps), epsilon, DELTA)


def distributed(nodes, *, epsilon, steps, q, C, lr, hidden, min_honest, seed=0, tick=None,
                z: float | None = None) -> tuple[RewardHead, float]:
    """(head, z): `steps` distributed-DP steps over the union (module docstring). `tick()` after each step.
    `z`: run the mechanism at this noise multiplier instead of the calibrated one (a diagnostic, no release).
    Each community's part is what node/distributed.py `noisy_integer_sum` computes: Poisson sample
    (`poisson_sample`), per-person clipped gradients (node/dpsgd/persons.py), `quantize_person`, sum,
    `noise_share`, `to_field`; the coordinator adds the field vectors mod 2^bits and decodes."""
    from node.distributed import poisson_sample
    from node.dpsgd.persons import clipped_person_gradients
    from privacy.distributed_dp import decode, gradient_and_count, noise_share, plan_ddg, quantize_person, to_field

    torch.manual_seed(seed)
    head = RewardHead(nodes[0].dim, hidden)
    d = n_params(head)
    n = len(nodes)
    if z is None:
        z = ddg_noise_multiplier(epsilon, q=q, steps=steps, C=C, dim=d, participants=n, min_honest=min_honest)
    p = plan_ddg(C, z, d, n, min_honest)
    mod = np.uint64(1 << int(p.bits))
    params = [x for x in head.parameters() if x.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    rngs = [SecureUniform(seed * 1000 + i) for i in range(n)]  # sampling and noise: AES-CTR, as on a node
    rounding = [np.random.default_rng([seed, i]) for i in range(n)]  # conditional rounding (not privacy noise)
    for _ in range(steps):
        total = np.zeros(d + 1, dtype=np.uint64)
        for data, rng, rr in zip(nodes, rngs, rounding):
            s = np.zeros(d + 1, dtype=np.int64)
            sample = poisson_sample(data.n_contributors, q, rng)
            if len(sample):
                for grads in clipped_person_gradients(head, data, torch.from_numpy(sample), C):
                    for g in grads:
                        s += quantize_person(g, p, rr)
            s += noise_share(p, rng)
            total = (total + to_field(s, p.bits)) % mod  # the modular sum SecAgg+ unmasks
        grad_sum, count = gradient_and_count(decode(total, p), p)  # a noisy count: no exact count is used
        flat = torch.as_tensor(grad_sum / max(1.0, count), dtype=torch.float32)
        head.train()
        pos = 0
        for x in params:
            x.grad = flat[pos:pos + x.numel()].view_as(x).clone()
            pos += x.numel()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if tick:
            tick()
    head.eval()
    return head, z


def specialise(head: RewardHead, data: ContributorTensors, *, epsilon, steps, q, C, lr, hidden, seed=0) -> RewardHead:
    """The global head fine-tuned on one community's own data by its own DP-SGD, as `cairn node specialize`
    (node/specialize.py) does on a node: train_dp from the global weights. A fresh copy; the global head is
    untouched."""
    h = RewardHead(head.in_dim, hidden)
    h.load_state_dict(head.state_dict())
    z = noise_multiplier_for(epsilon, DELTA, q, steps)
    train_dp(h, data, noise_multiplier=z, max_grad_norm=C, sampling_probability=q, steps=steps, lr=lr,
             sampling_seed=seed, noise_seed=seed + 1)
    return h
