"""The user-level DP-SGD loop: Poisson-sample contributors, clip each one's gradient, add Gaussian noise.

Protects ARCHITECTURE.md invariant 4 (one clipped gradient per contributor, not per pair). The
algorithm is DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy", Algorithm 1;
https://arxiv.org/abs/1607.00133) with the contributor as the sampled unit (McMahan et al. 2018,
https://arxiv.org/abs/1710.06963; the tensor layout is in node/dpsgd/data.py):

- Contributors are Poisson-sampled with probability q = `sampling_probability` each step
  (Opacus' `UniformWithReplacementSampler`, the sampler of its `DPDataLoader`).
- Each contributor's gradient is clipped to L2 norm C = `max_grad_norm`. Opacus computes the
  norms by ghost clipping without materialising per-sample gradients (Li et al. 2022, "Large
  Language Models Can Be Strong Differentially Private Learners", Section 4;
  https://arxiv.org/abs/2110.05679).
- `add_noise` then adds discrete Gaussian noise of scale z*C' (C' = 1.01 C, see below) to the SUM
  of clipped gradients, z = `noise_multiplier`
  (loss_reduction="sum"; for SGD the learning rate is divided by the expected batch size q*N, so
  `lr` means the usual step size on the mean gradient). Opacus runs with noise multiplier 0: it
  only clips, and `add_noise` is the single place the privacy noise is drawn.

One call = `steps` applications of the subsampled Gaussian mechanism, accounted as
    SelfComposed(PoissonSampled(q, Gaussian(sigma=z*C, sensitivity=C)), steps)
(`TrainResult.dp_event()`). Replacing one contributor's data changes one clipped summand, so this is
user-level (add/remove-one-person) DP.

Noise source (ARCHITECTURE.md invariant 6): the summed clipped gradient is quantised to a grid
gamma*Z^d and integer discrete-Gaussian noise is added (`privacy.samplers.gaussian_on_lattice`: exact
sampler, AES-256-CTR keystream under an os.urandom key). No float noise, no Mersenne Twister, so the
floating-point attacks on this path (Mironov 2012, CCS; Jin et al. 2022, "Are We There Yet?
Timing and Floating-Point Attacks on Differential Privacy Systems", S&P, https://arxiv.org/abs/2112.05307)
have no low-order bits to read. The rounding raises the sensitivity to C' = 1.01 C and the noise to
z*C', so the noise multiplier, and the accounted event, are unchanged.
"""

from __future__ import annotations

import time
import warnings
from typing import Iterable

import numpy as np
import torch
from torch import nn

from model.reward_model import RewardHead
from model.training_config import TRAINING
from node.dpsgd.data import ContributorTensors
from node.dpsgd.loss import ContributorBTLoss
from node.dpsgd.result import TrainResult, make_optimizer, seeded_generator
from privacy.samplers import SecureUniform, gaussian_on_lattice

__all__ = ["add_noise", "train_dp"]

CHUNK_FLOATS = 1 << 24  # head-input floats per physical chunk of a Poisson batch (64 MB in float32)


def add_noise(params: Iterable[nn.Parameter], noise_multiplier: float, max_grad_norm: float, rng: SecureUniform) -> None:
    """Replace each parameter's gradient (the SUM of clipped gradients) by its noised lattice release.

    THE place DP-SGD draws its privacy noise (Abadi et al. 2016, Algorithm 1, line "Add noise"): the
    whole gradient vector goes through `privacy.samplers.gaussian_on_lattice` (sensitivity C, noise
    multiplier z; discrete Gaussian noise from a CSPRNG, see the module docstring).
    """
    if noise_multiplier == 0:
        return
    params = list(params)
    grads = []
    for p in params:
        if p.grad is None:
            raise ValueError("add_noise needs every parameter's gradient (the sum of clipped gradients)")
        grads.append(p.grad)
    flat = np.empty(sum(g.numel() for g in grads), dtype=np.float64)
    pos = 0
    for g in grads:
        flat[pos:pos + g.numel()] = g.detach().reshape(-1).cpu().numpy()
        pos += g.numel()
    noisy, _ = gaussian_on_lattice(flat, noise_multiplier, max_grad_norm, rng)
    pos = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = torch.from_numpy(noisy[pos:pos + n]).to(device=g.device, dtype=g.dtype).view_as(p)
        pos += n


def train_dp(
    head: RewardHead,
    data: ContributorTensors,
    *,
    noise_multiplier: float,
    max_grad_norm: float = TRAINING.max_grad_norm,
    sampling_probability: float,
    steps: int,
    lr: float = TRAINING.lr,
    optimizer: str = TRAINING.optimizer,
    grad_sample_mode: str = "ghost",
    sampling_seed: int | None = None,
    noise_seed: int | None = None,
    progress: bool = False,
    step_times: list[float] | None = None,
) -> TrainResult:
    """User-level DP-SGD on `head` (trained in place). See the module docstring for the algorithm.

    `grad_sample_mode`: Opacus' "ghost" (ghost clipping, the default) or "hooks" (per-sample gradients).
    `sampling_seed` / `noise_seed`: fix only in tests and benchmarks (None: fresh secret seeds; a fixed
    `noise_seed` keys the AES-CTR noise stream by its SHA-256).
    Poisson batches can be empty; a step on an empty batch still adds noise (and still counts).
    `step_times`: if given, each non-empty step's wall time (s) is appended (benchmarks).
    """
    from opacus import PrivacyEngine
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler

    N = data.n_contributors
    if N == 0:
        raise ValueError("no contributors to train on")
    if not 0 < sampling_probability <= 1:
        raise ValueError(f"sampling_probability must be in (0, 1], got {sampling_probability}")
    if noise_multiplier < 0 or max_grad_norm <= 0 or steps < 0:
        raise ValueError("need noise_multiplier >= 0, max_grad_norm > 0, steps >= 0")
    q = float(sampling_probability)
    expected = q * N
    z, C = float(noise_multiplier), float(max_grad_norm)
    noise_rng = SecureUniform(noise_seed)
    head.train()
    # The optimizer sees the SUM of clipped gradients + noise. SGD: divide lr by the expected
    # batch size q*N (so `lr` is the step on the mean gradient). Adam is invariant to that scale.
    opt = make_optimizer(optimizer, head.parameters(), lr / expected if optimizer.startswith("sgd") else lr)
    criterion = ContributorBTLoss(reduction="sum")
    model = None
    n_pairs = n_contrib = 0
    last = float("nan")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # Opacus' hooks on the first layer fire "Full backward hook ... no inputs require gradients"
        # every step: expected here (inputs are frozen features).
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
        warnings.filterwarnings("ignore", message=".*Optimal order is the largest alpha.*")
        try:
            # Opacus wants a DataLoader to derive q; we pass a dummy one and sample with q ourselves
            # (same sampler as its DPDataLoader), so q is exact rather than 1/len(loader). Its
            # optimizer never divides by a batch size here (loss_reduction="sum") and adds no noise
            # (noise_multiplier=0): it clips; `add_noise` adds the noise.
            dummy = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(N)), batch_size=max(1, round(expected)))
            made = PrivacyEngine(secure_mode=False).make_private(
                module=head, optimizer=opt, data_loader=dummy, criterion=criterion,
                noise_multiplier=0.0, max_grad_norm=float(max_grad_norm),
                loss_reduction="sum", grad_sample_mode=grad_sample_mode, poisson_sampling=True,
            )
            if "ghost" in grad_sample_mode:
                model, dp_opt, dp_crit, _ = made
            else:
                model, dp_opt, _ = made
                dp_crit = criterion
            sampler = UniformWithReplacementSampler(num_samples=N, sample_rate=q, generator=seeded_generator(sampling_seed), steps=steps)
            it = sampler
            if progress:
                from tqdm.auto import tqdm

                it = tqdm(sampler, total=steps, desc="DP-SGD", unit="step")
            params = [p for p in head.parameters() if p.requires_grad]  # frozen weights get no noise and never move
            chunk = max(1, CHUNK_FLOATS // max(1, 2 * data.max_pairs * head.input_dim))
            t0 = time.perf_counter()
            for batch in it:
                ts = time.perf_counter()
                idx = torch.as_tensor(batch, dtype=torch.long)
                dp_opt.zero_grad(set_to_none=True)
                if len(idx) == 0:
                    # Empty Poisson batch: the sum of clipped gradients is 0, the update is pure noise.
                    for p in params:
                        p.grad = torch.zeros_like(p)
                    add_noise(params, z, C, noise_rng)
                    dp_opt.original_optimizer.step()
                    dp_opt.original_optimizer.zero_grad(set_to_none=True)
                    continue
                # the Poisson batch in physical chunks of bounded memory (a million members at q = 0.2 is
                # 200,000 people a step): each person's gradient is clipped within its chunk and the
                # clipped sums accumulate (Opacus' skip-step accumulation), then ONE noise draw per step
                chunks = idx.split(chunk)
                total = 0.0
                for k, part in enumerate(chunks):
                    if k < len(chunks) - 1:
                        dp_opt.signal_skip_step(do_skip=True)
                    loss = dp_crit(model(data.inputs(part, head.combine)), data.target[part], data.weight[part])
                    loss.backward()
                    total += float(loss.item())
                    if k < len(chunks) - 1:
                        dp_opt.pre_step()  # accumulates this chunk's clipped sum, skips the step
                        dp_opt.zero_grad(set_to_none=True)  # keeps the accumulated sum
                if dp_opt.pre_step():  # clip and sum (p.grad = sum of clipped gradients)
                    add_noise(params, z, C, noise_rng)
                    dp_opt.original_optimizer.step()
                last = total / len(idx)
                n_pairs += int((data.weight[idx] > 0).sum())
                n_contrib += len(idx)
                if step_times is not None:
                    step_times.append(time.perf_counter() - ts)
        finally:
            secs = time.perf_counter() - t0
            if model is not None:
                model.remove_hooks()
            _strip_opacus_attrs(head)
    head.eval()
    return TrainResult(
        steps=int(steps), noise_multiplier=float(noise_multiplier), sampling_probability=q, max_grad_norm=float(max_grad_norm),
        examples_per_sec=n_pairs / secs if secs > 0 else float("nan"), contributors_per_sec=n_contrib / secs if secs > 0 else float("nan"),
        seconds=secs, private=True, n_contributors=N, max_pairs_per_contributor=data.max_pairs, lr=float(lr), optimizer=optimizer,
        final_loss=last, grad_sample_mode=grad_sample_mode,
    )


def _strip_opacus_attrs(head: nn.Module) -> None:
    """Leave `head` a plain module again: no per-sample state on its parameters or layers."""
    for p in head.parameters():
        for a in ("grad_sample", "_norm_sample", "_forward_counter", "summed_grad", "_processed"):
            if hasattr(p, a):
                try:
                    delattr(p, a)
                except AttributeError:
                    pass
        p.grad = None
    for m in head.modules():
        for a in ("activations", "max_batch_len"):
            if hasattr(m, a):
                try:
                    delattr(m, a)
                except AttributeError:
                    pass
