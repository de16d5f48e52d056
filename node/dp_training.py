"""Local reward-model training with USER-LEVEL DP-SGD (Opacus, ghost clipping).

The privacy unit is the contributor (a person), not a pair (DESIGN invariant 4). Following
McMahan et al. 2018 ("Learning differentially private recurrent language models", user-level
DP-FedAvg/DP-SGD), every example the DP-SGD algorithm of Abadi et al. 2016 sees is ONE contributor:

- `ContributorTensors` holds, per contributor, up to `max_pairs_per_contributor` of their pairs
  (a random subset chosen with a seed, independent of the labels; the rest are dropped, so each
  person's influence is bounded whatever they submitted), padded with zero weight.
- The head runs over all of a contributor's pairs at once: input [B, 2P, features] (P chosen then
  P rejected responses), so the "sample" Opacus clips is the contributor. The per-contributor loss
  is the weighted Bradley-Terry loss averaged over that contributor's real (unpadded) pairs.
- Contributors are Poisson-sampled with probability q = `sampling_probability` each step
  (Opacus' `UniformWithReplacementSampler`, the sampler of its `DPDataLoader`).
- Each contributor's gradient is clipped to L2 norm C = `max_grad_norm`; Opacus ghost clipping
  (Li et al. 2022; Bu et al. 2023) computes those norms without materialising per-sample
  gradients. Then Gaussian noise N(0, (sigma*C)^2) is added to the SUM of clipped gradients, with
  sigma = `noise_multiplier` (loss_reduction="sum"; the learning rate is divided by the expected
  batch size q*N, so `lr` means the usual step size on the mean gradient).

One call = `steps` applications of the subsampled Gaussian mechanism. The caller accounts for it as
    SelfComposed(PoissonSampled(q, Gaussian(sigma=noise_multiplier*C, sensitivity=C)), steps)
(`TrainResult.dp_event_params()` gives exactly those numbers). Replacing one contributor's data
changes one clipped summand, so this is user-level (add/remove-one-person) DP.

Noise: Opacus' Gaussian noise on the gradient sum (the standard DP-SGD path). Its `secure_mode`
needs `torchcsprng`, which does not install with this torch, so it is off; the noise generator is
a torch Generator seeded from `secrets` (unpredictable, but not a CSPRNG and not hardened against
floating-point attacks). Aggregate queries use the integer secure samplers in privacy/ instead.
"""

from __future__ import annotations

import math
import secrets
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from node.pairs import Pair, group_by_contributor
from node.reward_model import RewardHead, combine_features

__all__ = [
    "ContributorTensors",
    "TrainResult",
    "ContributorBTLoss",
    "build_contributor_tensors",
    "contributor_tensors_from_arrays",
    "train_dp",
    "train_nonprivate",
    "pair_accuracy",
    "DEFAULTS",
    "noise_multiplier_for_epsilon",
]

# Defaults tuned on synthetic communities (see node/synth.py, bench/): a small head, DP-Adam,
# large Poisson batches (noise on the mean gradient is sigma*C/(q*N)), C well below typical
# per-contributor gradient norms early in training.
DEFAULTS: dict[str, Any] = {
    "max_pairs_per_contributor": 8,
    "max_grad_norm": 1.0,
    "lr": 3e-3,
    "optimizer": "adam",
    "expected_batch_size": 512,
    "steps": 300,
}


@dataclass
class ContributorTensors:
    """Per-contributor training tensors over a table of unique text features.

    features: [U, d] float32 (prompts and responses share the table)
    prompt, chosen, rejected: [N, P] int64 row indices into `features`
    target: [N, P] float32, P(chosen beats rejected)
    weight: [N, P] float32, 0 for padding
    """

    features: torch.Tensor
    prompt: torch.Tensor
    chosen: torch.Tensor
    rejected: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor
    contributors: list[str] = field(default_factory=list)
    dropped_pairs: int = 0  # pairs beyond the per-contributor cap

    @property
    def n_contributors(self) -> int:
        return int(self.prompt.shape[0])

    @property
    def max_pairs(self) -> int:
        return int(self.prompt.shape[1])

    @property
    def n_pairs(self) -> int:
        return int((self.weight > 0).sum())

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def inputs(self, idx: torch.Tensor, combine: str) -> torch.Tensor:
        """Head inputs [B, 2P, input_dim] for contributors `idx`: P chosen, then P rejected."""
        X = self.features
        r = X[torch.cat([self.chosen[idx], self.rejected[idx]], dim=1)]
        if combine == "r":
            return r
        p = X[self.prompt[idx]]
        return combine_features(torch.cat([p, p], dim=1), r, combine)

    def subset(self, idx) -> "ContributorTensors":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ContributorTensors(
            self.features, self.prompt[idx], self.chosen[idx], self.rejected[idx], self.target[idx], self.weight[idx],
            [self.contributors[i] for i in idx.tolist()] if self.contributors else [], self.dropped_pairs,
        )

    @staticmethod
    def concat(parts: Sequence["ContributorTensors"]) -> "ContributorTensors":
        """Pool several sets (e.g. communities) into one; feature tables are stacked."""
        P = max(p.max_pairs for p in parts)
        feats, off, cols = [], 0, {k: [] for k in ("prompt", "chosen", "rejected", "target", "weight")}
        names: list[str] = []
        for part in parts:
            pad = P - part.max_pairs
            for k in cols:
                t = getattr(part, k)
                if k in ("prompt", "chosen", "rejected"):
                    t = t + off
                cols[k].append(F.pad(t, (0, pad)))
            feats.append(part.features)
            off += part.features.shape[0]
            names += part.contributors
        return ContributorTensors(torch.cat(feats), *(torch.cat(cols[k]) for k in cols), names, sum(p.dropped_pairs for p in parts))


def contributor_tensors_from_arrays(
    features: np.ndarray, pair_rows: Sequence[Sequence[tuple[int, int, int, float, float]]], max_pairs_per_contributor: int,
    contributors: Sequence[str] | None = None, seed: int = 0,
) -> ContributorTensors:
    """Build from a feature table and, per contributor, a list of (prompt, chosen, rejected, target, weight).

    Contributors with more than `max_pairs_per_contributor` pairs keep a uniformly random subset
    (a seeded permutation that does not look at the data).
    """
    P = int(max_pairs_per_contributor)
    if P < 1:
        raise ValueError("max_pairs_per_contributor must be >= 1")
    N = len(pair_rows)
    rng = np.random.default_rng(seed)
    idx = np.zeros((N, 3, P), dtype=np.int64)
    tw = np.zeros((N, 2, P), dtype=np.float32)
    dropped = 0
    for i, rows in enumerate(pair_rows):
        rows = list(rows)
        if len(rows) > P:
            dropped += len(rows) - P
            rows = [rows[j] for j in sorted(rng.choice(len(rows), size=P, replace=False))]
        for j, (pr, c, r, t, w) in enumerate(rows):
            idx[i, :, j] = (pr, c, r)
            tw[i, :, j] = (t, w)
    return ContributorTensors(
        torch.as_tensor(np.asarray(features, dtype=np.float32)),
        torch.from_numpy(idx[:, 0]), torch.from_numpy(idx[:, 1]), torch.from_numpy(idx[:, 2]),
        torch.from_numpy(tw[:, 0]), torch.from_numpy(tw[:, 1]),
        list(contributors) if contributors is not None else [str(i) for i in range(N)], dropped,
    )


def build_contributor_tensors(
    pairs: Sequence[Pair], featurizer, max_pairs_per_contributor: int = DEFAULTS["max_pairs_per_contributor"], *,
    seed: int = 0, cache=None, key_fn: Callable[[str], str] | None = None,
) -> ContributorTensors:
    """Group `pairs` by contributor, encode every distinct text once, and build the tensors.

    `cache` and `key_fn` (text -> opaque cache key) are passed to the featurizer.
    """
    groups = group_by_contributor(pairs)
    texts: dict[str, int] = {}

    def row(t: str) -> int:
        if t not in texts:
            texts[t] = len(texts)
        return texts[t]

    rows = [[(row(p.prompt), row(p.chosen), row(p.rejected), p.target, p.weight) for p in ps] for ps in groups.values()]
    tl = list(texts)
    if cache is not None:
        if key_fn is None:
            raise ValueError("a feature cache needs key_fn (text -> cache key)")
        feats = featurizer.encode(tl, keys=[key_fn(t) for t in tl], cache=cache)
    else:
        feats = featurizer.encode(tl) if tl else np.zeros((0, featurizer.dim), dtype=np.float32)
    return contributor_tensors_from_arrays(feats, rows, max_pairs_per_contributor, list(groups), seed=seed)


class _GhostLinear(nn.Linear):
    """Marker subclass of nn.Linear used only while Opacus trains a head (see `_fast_linear_norm`).

    Swapped in with `__class__` for the duration of `train_dp` (identical forward), so that the
    norm sampler below applies to our heads only and Opacus' global registry for nn.Linear is left
    untouched.
    """


def _fast_linear_norm(layer: nn.Linear, activations, backprops) -> dict:
    """Per-sample (per-contributor) gradient norms of a Linear layer, exact, for inputs [B, ..., in].

    For one sample with activations A [T, in] and output gradients G [T, out], the weight gradient
    is G^T A, so ||G^T A||_F^2 = <G G^T, A A^T>_F (ghost clipping, Li et al. 2022) and the bias
    gradient is sum_t G[t]. This computes G G^T once for weight and bias (Opacus' sampler computes
    it twice) and, when it is cheaper (small `out`, e.g. the final 256 -> 1 layer), forms the
    per-sample weight gradient directly instead. Same values as Opacus' `compute_linear_norm_sample`.
    """
    A = activations[0].to(backprops.dtype)
    G = backprops
    B = G.shape[0]
    A = A.reshape(B, -1, A.shape[-1])
    G = G.reshape(B, -1, G.shape[-1])
    T, d_in, d_out = A.shape[1], A.shape[2], G.shape[2]
    ret = {}
    direct = T * d_in * d_out <= T * T * (d_in + d_out)
    ggT = None
    if layer.weight.requires_grad:
        if direct:
            gs = torch.bmm(G.transpose(1, 2), A)  # [B, out, in]
            ret[layer.weight] = gs.reshape(B, -1).norm(2, dim=1)
        else:
            ggT = torch.bmm(G, G.transpose(1, 2))
            aaT = torch.bmm(A, A.transpose(1, 2))
            ret[layer.weight] = (ggT * aaT).sum(dim=(1, 2)).clamp(min=0).sqrt()
    if layer.bias is not None and layer.bias.requires_grad:
        ret[layer.bias] = G.sum(dim=1).norm(2, dim=1)
    return ret


def _register_fast_norm() -> None:
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.grad_sample.linear import compute_linear_grad_sample

    GradSampleModuleFastGradientClipping.NORM_SAMPLERS.setdefault(_GhostLinear, _fast_linear_norm)
    GradSampleModuleFastGradientClipping.GRAD_SAMPLERS.setdefault(_GhostLinear, compute_linear_grad_sample)


class ContributorBTLoss(nn.Module):
    """Bradley-Terry loss per contributor: mean over their real pairs of weight * BCE(s_c - s_r, target).

    Input scores [B, 2P] (P chosen then P rejected); returns [B] for reduction="none", else the
    sum/mean over contributors. A contributor with no real pairs contributes 0 (and no gradient).
    """

    def __init__(self, reduction: str = "sum"):
        super().__init__()
        self.reduction = reduction

    def forward(self, scores: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        P = target.shape[1]
        d = scores[:, :P] - scores[:, P:]
        per_pair = F.binary_cross_entropy_with_logits(d, target, reduction="none")
        n = (weight > 0).sum(dim=1).clamp(min=1).to(d.dtype)
        per = (per_pair * weight).sum(dim=1) / n
        if self.reduction == "none":
            return per
        if self.reduction == "sum":
            return per.sum()
        if self.reduction == "mean":
            return per.mean()
        raise ValueError(f"unknown reduction {self.reduction!r}")


@dataclass
class TrainResult:
    steps: int
    noise_multiplier: float
    sampling_probability: float
    max_grad_norm: float
    examples_per_sec: float  # real pairs processed per second (a contributor's P pairs count P)
    contributors_per_sec: float
    seconds: float
    private: bool
    n_contributors: int
    max_pairs_per_contributor: int
    lr: float
    optimizer: str
    final_loss: float = float("nan")
    grad_sample_mode: str = "ghost"

    def dp_event_params(self) -> dict[str, float]:
        """Parameters of SelfComposed(PoissonSampled(q, Gaussian(sigma*C, sensitivity C)), steps)."""
        return {
            "sampling_probability": self.sampling_probability,
            "noise_multiplier": self.noise_multiplier,
            "noise_stddev": self.noise_multiplier * self.max_grad_norm,
            "sensitivity": self.max_grad_norm,
            "steps": self.steps,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.0, weight_decay=weight_decay)
    if name == "sgdm":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r} (adam, sgd, sgdm)")


def _seeded_generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed) if seed is not None else secrets.randbits(63))
    return g


def train_dp(
    head: RewardHead,
    data: ContributorTensors,
    *,
    noise_multiplier: float,
    max_grad_norm: float = DEFAULTS["max_grad_norm"],
    sampling_probability: float,
    steps: int,
    lr: float = DEFAULTS["lr"],
    optimizer: str = DEFAULTS["optimizer"],
    grad_sample_mode: str = "ghost",
    fast_norm: bool = False,
    sampling_seed: int | None = None,
    noise_seed: int | None = None,
    progress: bool = False,
    step_times: list[float] | None = None,
) -> TrainResult:
    """User-level DP-SGD on `head` (trained in place). See the module docstring for the algorithm.

    `fast_norm`: use `_fast_linear_norm` for the per-contributor norms in ghost mode (same values
    as Opacus' own Linear norm sampler, fewer operations; off by default: Opacus' own sampler is the
    reviewed path, and on our 2-core machines the gain was within measurement noise).
    `sampling_seed` / `noise_seed`: fix only in tests and benchmarks (None: fresh secret seeds).
    Poisson batches can be empty; a step on an empty batch still adds noise (and still counts).
    `step_times`: if given, each non-empty step's wall time (s) is appended (benchmarks).
    """
    from opacus import PrivacyEngine

    N = data.n_contributors
    if N == 0:
        raise ValueError("no contributors to train on")
    if not 0 < sampling_probability <= 1:
        raise ValueError(f"sampling_probability must be in (0, 1], got {sampling_probability}")
    if noise_multiplier < 0 or max_grad_norm <= 0 or steps < 0:
        raise ValueError("need noise_multiplier >= 0, max_grad_norm > 0, steps >= 0")
    q = float(sampling_probability)
    expected = q * N
    head.train()
    # The optimizer sees the SUM of clipped gradients + noise. SGD: divide lr by the expected
    # batch size q*N (so `lr` is the step on the mean gradient). Adam is invariant to that scale.
    opt = _make_optimizer(optimizer, head.parameters(), lr / expected if optimizer.startswith("sgd") else lr)
    criterion = ContributorBTLoss(reduction="sum")
    # Opacus wants a DataLoader to derive q; we pass a dummy one and sample with q ourselves
    # (same sampler as its DPDataLoader), so q is exact rather than 1/len(loader). Its optimizer
    # never divides by a batch size here (loss_reduction="sum").
    swapped: list[nn.Module] = []
    model = None
    n_pairs = n_contrib = 0
    last = float("nan")
    t0 = time.perf_counter()
    wctx = warnings.catch_warnings()
    wctx.__enter__()
    # Opacus' hooks on the first layer fire "Full backward hook ... no inputs require gradients"
    # every step: expected here (inputs are frozen features).
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    try:
        if fast_norm and "ghost" in grad_sample_mode:
            _register_fast_norm()
            for m in head.modules():
                if type(m) is nn.Linear:
                    m.__class__ = _GhostLinear
                    swapped.append(m)
        dummy = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(N)), batch_size=max(1, round(expected)))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
            warnings.filterwarnings("ignore", message=".*Optimal order is the largest alpha.*")
            engine = PrivacyEngine(secure_mode=False)
            made = engine.make_private(
                module=head, optimizer=opt, data_loader=dummy, criterion=criterion,
                noise_multiplier=float(noise_multiplier), max_grad_norm=float(max_grad_norm),
                loss_reduction="sum", grad_sample_mode=grad_sample_mode, poisson_sampling=True,
                noise_generator=_seeded_generator(noise_seed),
            )
        if "ghost" in grad_sample_mode:
            model, dp_opt, dp_crit, _ = made
        else:
            model, dp_opt, _ = made
            dp_crit = criterion
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler

        sampler = UniformWithReplacementSampler(num_samples=N, sample_rate=q, generator=_seeded_generator(sampling_seed), steps=steps)
        it = sampler
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(sampler, total=steps, desc="DP-SGD", unit="step")
        t0 = time.perf_counter()
        for batch in it:
            ts = time.perf_counter()
            idx = torch.as_tensor(batch, dtype=torch.long)
            dp_opt.zero_grad(set_to_none=True)
            if len(idx) == 0:
                # Empty Poisson batch: the released update is pure noise N(0, (sigma*C)^2).
                _noise_only_step(dp_opt, head)
                continue
            x = data.inputs(idx, head.combine)
            loss = dp_crit(model(x), data.target[idx], data.weight[idx])
            loss.backward()
            dp_opt.step()
            last = float(loss.item()) / len(idx)
            n_pairs += int((data.weight[idx] > 0).sum())
            n_contrib += len(idx)
            if step_times is not None:
                step_times.append(time.perf_counter() - ts)
    finally:
        secs = time.perf_counter() - t0
        if model is not None and hasattr(model, "remove_hooks"):
            model.remove_hooks()
        for m in swapped:
            m.__class__ = nn.Linear
        _strip_opacus_attrs(head)
        wctx.__exit__(None, None, None)
    head.eval()
    return TrainResult(
        steps=int(steps), noise_multiplier=float(noise_multiplier), sampling_probability=q, max_grad_norm=float(max_grad_norm),
        examples_per_sec=n_pairs / secs if secs > 0 else float("nan"), contributors_per_sec=n_contrib / secs if secs > 0 else float("nan"),
        seconds=secs, private=True, n_contributors=N, max_pairs_per_contributor=data.max_pairs, lr=float(lr), optimizer=optimizer,
        final_loss=last, grad_sample_mode=grad_sample_mode,
    )


def _noise_only_step(dp_opt, head: nn.Module) -> None:
    """A DP step whose batch is empty: sum of clipped gradients is 0, only noise is added."""
    from opacus.optimizers.optimizer import _generate_noise

    std = dp_opt.noise_multiplier * dp_opt.max_grad_norm
    for p in dp_opt.params:
        noise = _generate_noise(std=std, reference=p, generator=dp_opt.generator, secure_mode=dp_opt.secure_mode)
        p.grad = noise.view_as(p)
    dp_opt.original_optimizer.step()
    dp_opt.original_optimizer.zero_grad(set_to_none=True)


def _strip_opacus_attrs(head: nn.Module) -> None:
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


def train_nonprivate(
    head: RewardHead,
    data: ContributorTensors,
    *,
    steps: int,
    batch_size: int = DEFAULTS["expected_batch_size"],
    lr: float = DEFAULTS["lr"],
    optimizer: str = DEFAULTS["optimizer"],
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
    opt = _make_optimizer(optimizer, head.parameters(), lr, weight_decay)
    crit = ContributorBTLoss(reduction="mean")
    g = _seeded_generator(seed)
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


@torch.no_grad()
def pair_accuracy(head: RewardHead, data: ContributorTensors) -> float:
    """Fraction of real strict pairs (target 1) with score(chosen) > score(rejected); ties (0.5) skipped."""
    head.eval()
    correct = total = 0
    for s in range(0, data.n_contributors, 4096):
        idx = torch.arange(s, min(s + 4096, data.n_contributors))
        sc = head(data.inputs(idx, head.combine))
        P = data.max_pairs
        d = sc[:, :P] - sc[:, P:]
        m = (data.weight[idx] > 0) & (data.target[idx] == 1.0)
        correct += int(((d > 0) & m).sum())
        total += int(m.sum())
    return correct / total if total else float("nan")


def noise_multiplier_for_epsilon(epsilon: float, delta: float, sampling_probability: float, steps: int, *, tol: float = 1e-3) -> float:
    """Smallest noise multiplier whose PLD epsilon for SelfComposed(PoissonSampled(q, Gaussian), steps) is <= `epsilon`.

    Uses dp_accounting's PLD accountant (the same event a node records). For experiments and
    tests; a node's budget decisions belong to privacy/ (its accountant and policy).
    """
    import dp_accounting
    from dp_accounting.pld import PLDAccountant

    def eps(sigma: float) -> float:
        acc = PLDAccountant(value_discretization_interval=1e-3)
        acc.compose(dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(sampling_probability, dp_accounting.GaussianDpEvent(sigma)), int(steps)))
        return acc.get_epsilon(delta)

    lo, hi = 0.05, 1.0
    while eps(hi) > epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e4:
            raise ValueError("epsilon unreachable")
    while hi - lo > tol * hi:
        mid = (lo + hi) / 2
        if eps(mid) > epsilon:
            lo = mid
        else:
            hi = mid
    return hi
