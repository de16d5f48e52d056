"""The non-private baseline: the same data layout and loss as DP-SGD, without clipping, noise or Poisson sampling.

Not a release path: nothing trained here leaves a node. It exists so benchmarks and tests can measure
what the privacy costs (accuracy and throughput) on the same head and data.
"""

from __future__ import annotations

import time

import torch

from model.reward_model import RewardHead
from model.training_config import TRAINING
from node.dpsgd.data import ContributorTensors
from node.dpsgd.loss import ContributorBTLoss
from node.dpsgd.result import TrainResult, make_optimizer, seeded_generator

__all__ = ["train_nonprivate"]


def train_nonprivate(
    head: RewardHead,
    data: ContributorTensors,
    *,
    steps: int,
    batch_size: int = TRAINING.expected_batch,
    lr: float = TRAINING.lr,
    optimizer: str = TRAINING.optimizer,
    weight_decay: float = 0.0,
    seed: int | None = 0,
    progress: bool = False,
    step_times: list[float] | None = None,
) -> TrainResult:
    """Baseline: same data layout and loss, plain minibatches of contributors, no clipping or noise."""
    N = data.n_contributors
    if N == 0:
        raise ValueError("no contributors to train on")
    head.train()
    opt = make_optimizer(optimizer, head.parameters(), lr, weight_decay)
    crit = ContributorBTLoss(reduction="mean")
    g = seeded_generator(seed)
    bs = min(int(batch_size), N)
    n_pairs = n_contrib = 0
    last = float("nan")
    perm = torch.randperm(N, generator=g)
    pos = 0
    rng = range(steps)
    if progress:
        from tqdm.auto import tqdm

        rng = tqdm(rng, desc="training", unit="step")
    t0 = time.perf_counter()
    for _ in rng:
        ts = time.perf_counter()
        if pos + bs > N:
            perm, pos = torch.randperm(N, generator=g), 0
        idx = perm[pos : pos + bs]
        pos += bs
        opt.zero_grad(set_to_none=True)
        loss = crit(head(data.inputs(idx, head.combine)), data.target[idx], data.weight[idx])
        loss.backward()
        opt.step()
        last = float(loss.item())
        n_pairs += int((data.weight[idx] > 0).sum())
        n_contrib += len(idx)
        if step_times is not None:
            step_times.append(time.perf_counter() - ts)
    secs = time.perf_counter() - t0
    head.eval()
    return TrainResult(
        steps=int(steps), noise_multiplier=0.0, sampling_probability=bs / N, max_grad_norm=float("inf"),
        examples_per_sec=n_pairs / secs if secs > 0 else float("nan"), contributors_per_sec=n_contrib / secs if secs > 0 else float("nan"),
        seconds=secs, private=False, n_contributors=N, max_pairs_per_contributor=data.max_pairs, lr=float(lr), optimizer=optimizer,
        final_loss=last, grad_sample_mode="none",
    )
