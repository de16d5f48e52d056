"""User-level DP-SGD: one clipped gradient per contributor, discrete Gaussian noise of scale z*C' on the sum (C' = 1.01 C:
the lattice's rounding slack), drawn in add_noise from a CSPRNG."""

import math

import numpy as np
import pytest
import torch

import node.dpsgd.train as dp_train
from model.reward_model import RewardHead, state_to_vector
from node.dpsgd import ContributorBTLoss, pair_accuracy, train_dp
from privacy.events import DpSgdParams, dpsgd_params
from tests.node.dpsgd.synthetic import random_data


def manual_clipped_sum(head, data, C):
    """Reference: sum over contributors of their own gradient clipped to norm C (plain autograd)."""
    crit = ContributorBTLoss("none")
    total = None
    norms = []
    for i in range(data.n_contributors):
        head.zero_grad()
        idx = torch.tensor([i])
        crit(head(data.inputs(idx, head.combine)), data.target[idx], data.weight[idx]).sum().backward()
        g = torch.cat([p.grad.reshape(-1) for p in head.parameters()])
        norms.append(float(g.norm()))
        g = g * min(1.0, C / (float(g.norm()) + 1e-6))
        total = g if total is None else total + g
    head.zero_grad()
    return total, norms


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_one_clipped_gradient_per_contributor(mode):
    torch.manual_seed(0)
    data = random_data(4, [50, 1, 3, 20], dim=16)
    head = RewardHead(16, hidden=8)
    C, lr = 0.05, 1.0
    ref, norms = manual_clipped_sum(head, data, C)
    assert max(norms) > C  # clipping binds for some contributors
    before = torch.from_numpy(state_to_vector(head))
    r = train_dp(head, data, noise_multiplier=0.0, max_grad_norm=C, sampling_probability=1.0, steps=1, lr=lr,
                 optimizer="sgd", grad_sample_mode=mode, sampling_seed=0)
    delta = torch.from_numpy(state_to_vector(head)) - before
    # SGD on (sum of clipped per-contributor gradients) / (q*N)
    torch.testing.assert_close(delta, -lr * ref / 4, rtol=1e-4, atol=1e-6)
    assert r.steps == 1 and r.private


def test_heavy_contributor_cannot_move_model_more_than_light_one():
    C, lr = 0.002, 1.0  # below both contributors' gradient norms: clipping binds for both
    moves = {}
    for k in (50, 1):
        torch.manual_seed(0)
        data = random_data(1, k, dim=16, seed=3)
        head = RewardHead(16, hidden=8)
        before = state_to_vector(head)
        train_dp(head, data, noise_multiplier=0.0, max_grad_norm=C, sampling_probability=1.0, steps=1, lr=lr, optimizer="sgd")
        moves[k] = float(np.linalg.norm(state_to_vector(head) - before))
    assert moves[50] <= lr * C * (1 + 1e-4)
    assert moves[1] <= lr * C * (1 + 1e-4)
    # 50 pairs move the model exactly as far as 1 pair: one clipped gradient per person
    assert moves[50] == pytest.approx(lr * C, rel=1e-3) and moves[1] == pytest.approx(lr * C, rel=1e-3)


def _noise_update(q, n, sigma, C, lr, seed):
    data = random_data(n, 2, dim=64, seed=1)
    data.weight.zero_()  # no signal: every update is pure noise
    head = RewardHead(64, hidden=32)
    before = state_to_vector(head)
    train_dp(head, data, noise_multiplier=sigma, max_grad_norm=C, sampling_probability=q, steps=1, lr=lr,
             optimizer="sgd", noise_seed=seed, sampling_seed=seed)
    return (state_to_vector(head) - before).astype(np.float64)


@pytest.mark.parametrize("sigma,C", [(1.0, 1.0), (2.5, 0.3)])
def test_noise_scale_matches_sigma_times_C(sigma, C):
    q, n, lr = 1.0, 5, 0.7
    d = _noise_update(q, n, sigma, C, lr, seed=int(sigma * 10))
    expected = lr * sigma * C * 1.01 / (q * n)  # noise of std sigma*C' on the sum (C' = 1.01 C), lr divided by q*N
    m = d.size  # 4161 parameters: relative s.e. of the std estimate ~ 1/sqrt(2m) ~ 1.1%
    assert d.std() == pytest.approx(expected, rel=6 / math.sqrt(2 * m))
    assert abs(d.mean()) < 6 * expected / math.sqrt(m)
    z = d / expected
    assert abs(np.mean(z**4) - 3) < 0.5  # Gaussian kurtosis


def test_empty_poisson_batch_still_adds_noise():
    # q*N = 0.01: the batch is almost surely empty, the step is pure noise on the mean estimate
    d = _noise_update(0.01, 1, 1.0, 1.0, 0.01, seed=5)
    assert d.std() == pytest.approx(0.01 * 1.01 / 0.01, rel=0.1)


def test_add_noise_is_the_one_place_noise_is_drawn(monkeypatch):
    """Every step, empty or not, draws its noise through add_noise with (z, C)."""
    calls = []
    real = dp_train.add_noise
    monkeypatch.setattr(dp_train, "add_noise", lambda params, z, C, rng: (calls.append(z * C), real(params, z, C, rng)))
    data = random_data(20, 2)
    train_dp(RewardHead(16, 8), data, noise_multiplier=1.5, max_grad_norm=0.2, sampling_probability=0.05, steps=12,
             lr=0.1, sampling_seed=0, noise_seed=0)
    assert calls == [pytest.approx(0.3)] * 12
    # and nothing else draws noise: with add_noise off, two runs with fresh noise seeds are identical
    monkeypatch.setattr(dp_train, "add_noise", lambda params, z, C, rng: None)
    heads = []
    for _ in range(2):
        torch.manual_seed(0)
        h = RewardHead(16, 8)
        train_dp(h, data, noise_multiplier=1.5, max_grad_norm=0.2, sampling_probability=0.5, steps=5, lr=0.1, sampling_seed=0)
        heads.append(state_to_vector(h))
    np.testing.assert_array_equal(*heads)


def test_dp_learns_and_head_is_reusable():
    torch.manual_seed(0)
    data = random_data(600, 8, dim=16, seed=2, U=400)
    head = RewardHead(16, hidden=16)
    r1 = train_dp(head, data, noise_multiplier=0.5, max_grad_norm=1.0, sampling_probability=0.2, steps=60, lr=1e-2,
                  sampling_seed=1, noise_seed=1)
    assert pair_accuracy(head, data) > 0.75
    assert not any(hasattr(p, "grad_sample") or hasattr(p, "_norm_sample") for p in head.parameters())
    assert all(type(m) in (torch.nn.Linear, torch.nn.ReLU) for m in head.children())
    r2 = train_dp(head, data, noise_multiplier=0.5, max_grad_norm=1.0, sampling_probability=0.2, steps=5, lr=1e-3)
    assert r2.examples_per_sec > 0
    assert dpsgd_params(r1.dp_event()) == DpSgdParams(sampling_probability=0.2, noise_multiplier=0.5, steps=60, clip_norm=1.0)


def test_rejects_bad_parameters():
    data = random_data(3, 2)
    with pytest.raises(ValueError):
        train_dp(RewardHead(16, 8), data, noise_multiplier=1.0, sampling_probability=0.0, steps=1)
    with pytest.raises(ValueError):
        train_dp(RewardHead(16, 8), data, noise_multiplier=-1.0, sampling_probability=0.5, steps=1)


def test_noise_never_comes_from_torch_generators(monkeypatch):
    """Finding 5 of issue 10: DP-SGD noise used to be float32 torch.normal (Mersenne Twister). Any torch
    sampling call now fails the run; noise comes from privacy.samplers (AES-CTR, discrete Gaussian)."""
    def refuse(*a, **k):
        raise AssertionError("privacy noise drawn from a torch generator")

    for name in ("normal", "randn", "randn_like", "normal_"):
        if hasattr(torch, name):
            monkeypatch.setattr(torch, name, refuse)
    monkeypatch.setattr(torch.Tensor, "normal_", refuse)
    data = random_data(20, 2)
    h = RewardHead(16, 8)
    before = state_to_vector(h)
    train_dp(h, data, noise_multiplier=1.0, max_grad_norm=0.5, sampling_probability=0.5, steps=3, lr=0.1, sampling_seed=0)
    assert np.linalg.norm(state_to_vector(h) - before) > 0


def test_noised_gradient_lies_on_the_lattice():
    """add_noise returns (round(S/gamma) + integer noise) * gamma: an integer multiple of gamma per coordinate."""
    from privacy.samplers import SecureUniform

    h = RewardHead(16, 8)
    params = list(h.parameters())
    for p in params:
        p.grad = torch.full_like(p, 0.0123)
    d = sum(p.numel() for p in params)
    dp_train.add_noise(params, 2.0, 0.5, SecureUniform(3))
    gamma = 0.01 * 0.5 / math.sqrt(d)
    k = torch.cat([p.grad.reshape(-1).double() for p in params]).numpy() / gamma
    assert np.max(np.abs(k - np.rint(k))) < 1e-3  # on the grid up to float32 storage of the result
    noise = np.rint(k) - np.rint(0.0123 / gamma)
    s = 2.0 * (0.5 / gamma + math.sqrt(d))
    assert noise.std() == pytest.approx(s, rel=6 / math.sqrt(2 * d))


def test_frozen_parameters_get_no_noise_and_never_move():
    data = random_data(20, 2, dim=16, seed=2)
    head = RewardHead(16, hidden=8)
    head.fc1.weight.requires_grad_(False)
    frozen = head.fc1.weight.detach().clone()
    for q in (0.01, 0.5):  # q=0.01: mostly empty Poisson batches (pure-noise steps); q=0.5: real ones
        train_dp(head, data, noise_multiplier=1.0, max_grad_norm=0.1, sampling_probability=q, steps=5, lr=0.1,
                 optimizer="sgd", noise_seed=1, sampling_seed=1)
        assert torch.equal(head.fc1.weight, frozen)


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_a_poisson_batch_in_physical_chunks_is_one_step(monkeypatch, mode):
    """A large Poisson batch is processed in bounded chunks (node/dpsgd/train.py CHUNK_FLOATS): each person
    still clipped once, the clipped sums accumulated, one noise draw: the same update as one chunk."""
    import node.dpsgd.train as train_mod

    torch.manual_seed(0)
    data = random_data(7, [50, 1, 3, 20, 2, 9, 4], dim=16)
    head = RewardHead(16, hidden=8)
    C, lr = 0.05, 1.0
    ref, _ = manual_clipped_sum(head, data, C)
    before = torch.from_numpy(state_to_vector(head))
    monkeypatch.setattr(train_mod, "CHUNK_FLOATS", 1)  # one person per chunk
    train_dp(head, data, noise_multiplier=0.0, max_grad_norm=C, sampling_probability=1.0, steps=1, lr=lr,
             optimizer="sgd", grad_sample_mode=mode, sampling_seed=0)
    delta = torch.from_numpy(state_to_vector(head)) - before
    torch.testing.assert_close(delta, -lr * ref / 7, rtol=1e-4, atol=1e-6)
    noisy = RewardHead(16, hidden=8)  # and with noise: one draw per step, whatever the chunking
    calls = []
    real = train_mod.add_noise
    monkeypatch.setattr(train_mod, "add_noise", lambda *a: calls.append(1) or real(*a))
    train_dp(noisy, data, noise_multiplier=1.0, max_grad_norm=C, sampling_probability=1.0, steps=3, lr=lr,
             grad_sample_mode=mode, sampling_seed=0, noise_seed=0)
    assert len(calls) == 3


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_chunking_never_changes_a_multi_step_poisson_run(monkeypatch, mode):
    """Review 15: over several steps at q < 1 (batches of varying size, some split, one possibly
    empty), the chunked run takes exactly the steps of the unchunked one: the same Poisson batches
    (sampling independent per person at rate q, untouched by chunking), each person's clipped gradient
    summed once per step (a chunk's sum never carried into the next step, never counted twice)."""
    import copy

    import node.dpsgd.train as train_mod

    torch.manual_seed(1)
    data = random_data(9, [5, 1, 3, 8, 2, 9, 4, 6, 1], dim=16)
    start = RewardHead(16, hidden=8)
    runs = []
    for chunk_floats in (1 << 30, 1, 2 * data.max_pairs * start.input_dim * 2):  # one chunk, one person, two people
        monkeypatch.setattr(train_mod, "CHUNK_FLOATS", chunk_floats)
        head = copy.deepcopy(start)
        train_dp(head, data, noise_multiplier=0.0, max_grad_norm=0.05, sampling_probability=0.5, steps=6, lr=0.5,
                 optimizer="sgd", grad_sample_mode=mode, sampling_seed=3)
        runs.append(torch.from_numpy(state_to_vector(head)))
    assert not torch.equal(runs[0], torch.from_numpy(state_to_vector(start)))
    torch.testing.assert_close(runs[1], runs[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(runs[2], runs[0], rtol=1e-5, atol=1e-7)
