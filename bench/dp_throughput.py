"""Throughput of user-level DP-SGD (Opacus ghost clipping) vs non-private training, side by side.

Same head, same data (every contributor brings exactly --pairs pairs), same loss, batch of --batch
contributors (Poisson-sampled with q = batch/N for DP, fixed-size for non-private); the only
differences are per-contributor clipping, the privacy noise (the summed gradient rounded to a lattice plus
exact discrete Gaussian noise from an AES-CTR CSPRNG: privacy/samplers.py) and Poisson sampling. Runs alternate
(non-private, DP, non-private, DP, ...) in several rounds, every step is timed on its own, and the
table reports pairs/s at the MEDIAN step time, which is robust to the bursts of CPU contention of
shared machines.

    .venv/bin/python bench/dp_throughput.py [--quick] [--contributors 4096] [--pairs 8] [--batch 256]
        [--steps 25] [--rounds 6] [--combine r|r_pr] [--modes ghost,hooks]

Examples = (chosen, rejected) pairs. Default head: 384 -> 256 -> 1 (combine="r"; hidden width, pairs per
contributor and clipping norm from model.training_config); --combine r_pr uses the default reward-model
input [r, p*r] (768 -> 256 -> 1). Modes: ghost = Opacus ghost clipping (train_dp's default);
hooks = per-sample gradients; ghost-floatnoise = ghost with the pre-issue-10 float torch.normal noise (a
speed control, never used for training). --quick: a smoke run (1,024 contributors, 2 rounds x 10 steps).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from model.reward_model import RewardHead
from model.training_config import TRAINING
from node.dpsgd import add_noise, contributor_tensors_from_arrays, train_dp, train_nonprivate
from privacy.samplers import SecureUniform


def make_data(n: int, pairs: int, dim: int, seed: int = 0):
    """`n` contributors with `pairs` random pairs each over 4n random unit feature vectors."""
    rng = np.random.default_rng(seed)
    U = 4 * n
    X = rng.normal(size=(U, dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    rows = [[(int(a), int(b), int(c), 1.0, 1.0) for a, b, c in rng.integers(0, U, size=(pairs, 3))] for _ in range(n)]
    return contributor_tensors_from_arrays(X, rows, pairs)


def _float_noise(params, z: float, C: float, rng) -> None:
    """The noise DP-SGD drew before issue 10 (float32 torch.normal, Mersenne Twister): a speed control only."""
    for p in params:
        p.grad = p.grad + torch.normal(0.0, z * C, size=p.grad.shape, dtype=p.grad.dtype)


def main(argv=None) -> int:
    """Run the interleaved timings and print the table (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--contributors", type=int, default=4096)
    ap.add_argument("--pairs", type=int, default=TRAINING.max_pairs_per_contributor)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--hidden", type=int, default=TRAINING.hidden)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=25, help="steps per timed run")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--combine", default="r", choices=["r", "r_pr"])
    ap.add_argument("--modes", default="ghost,hooks",
                    help="comma-separated DP modes: ghost, hooks, ghost-floatnoise (control: ghost with the old insecure "
                         "float torch.normal noise, to isolate the secure sampler's cost)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1,024 contributors, 2 rounds x 10 steps")
    a = ap.parse_args(argv)
    if a.quick:
        a.contributors, a.rounds, a.steps = 1024, 2, 10
    warnings.filterwarnings("ignore")
    if a.threads:
        torch.set_num_threads(a.threads)
    data = make_data(a.contributors, a.pairs, a.dim)
    q = a.batch / a.contributors
    modes = [m for m in a.modes.split(",") if m]
    names = ["non-private", *modes]
    heads = {k: RewardHead(a.dim, a.hidden, a.combine) for k in names}
    times: dict[str, list[float]] = {k: [] for k in names}

    def run(name: str, steps: int, sink: list[float]) -> None:
        h = heads[name]
        if name == "non-private":
            train_nonprivate(h, data, steps=steps, batch_size=a.batch, seed=None, step_times=sink)
            return
        if name == "ghost-floatnoise":  # control only: the old, insecure float32 torch.normal noise
            import node.dpsgd.train as dp_train

            secure = dp_train.add_noise
            dp_train.add_noise = _float_noise
            try:
                train_dp(h, data, noise_multiplier=1.0, max_grad_norm=TRAINING.max_grad_norm, sampling_probability=q,
                         steps=steps, grad_sample_mode="ghost", step_times=sink)
            finally:
                dp_train.add_noise = secure
            return
        train_dp(h, data, noise_multiplier=1.0, max_grad_norm=TRAINING.max_grad_norm, sampling_probability=q, steps=steps,
                 grad_sample_mode=name, step_times=sink)

    for name in names:  # warm-up, untimed
        run(name, 3, [])
    for _ in range(a.rounds):
        for name in names:
            run(name, a.steps, times[name])
    # Non-private batches hold exactly `batch` contributors; DP (Poisson) batches hold `batch` in
    # expectation. Rate = pairs per expected batch / median step time.
    per_step = a.batch * a.pairs
    rate = {k: per_step / statistics.median(v) for k, v in times.items()}
    p90 = {k: per_step / statistics.quantiles(v, n=10)[-1] for k, v in times.items()}
    base = rate["non-private"]
    h = heads["non-private"]
    print(f"head {h.input_dim}->{a.hidden}->1 (combine={a.combine}), batch {a.batch} contributors x {a.pairs} pairs, "
          f"{a.contributors} contributors, torch threads {torch.get_num_threads()}, "
          f"{a.rounds} interleaved rounds x {a.steps} steps")
    print(f"{'training':<34}{'pairs/s (median step)':>22}{'(p90 step)':>12}{'vs non-private':>16}")
    for k in names:
        label = k if k == "non-private" else f"user-level DP-SGD ({k})"
        print(f"{label:<34}{rate[k]:>22,.0f}{p90[k]:>12,.0f}{rate[k] / base:>15.0%}")
    if modes:
        # the secure noise's share of a DP step (node/dpsgd/train.py add_noise: lattice + discrete Gaussian)
        params = list(heads[modes[0]].parameters())
        for p in params:
            p.grad = torch.zeros_like(p)
        rng = SecureUniform()
        noise_s = []
        for _ in range(15):
            t = time.perf_counter()
            add_noise(params, 1.0, TRAINING.max_grad_norm, rng)
            noise_s.append(time.perf_counter() - t)
        step_s = statistics.median(times[modes[0]])
        d = sum(p.numel() for p in params)
        print(f"privacy noise per step ({d:,} discrete Gaussian draws, AES-CTR): {statistics.median(noise_s) * 1e3:.1f} ms "
              f"= {statistics.median(noise_s) / step_s:.0%} of the median DP step")
        ok = rate[modes[0]] >= 0.5 * base
        print(f"target: DP ({modes[0]}) throughput >= 50% of non-private: {'met' if ok else 'NOT met'} ({rate[modes[0]] / base:.0%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
