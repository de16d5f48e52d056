"""The empirical privacy probe (the experiment; the statistics are in privacy/probe.py).

An empirical check of ARCHITECTURE.md invariant 5 (epsilon is never under-reported): the lower bound
it proves must stay below what the accountant claims for the same training.

One training run (Steinke, Nasr & Jagielski 2023, "Privacy Auditing with One (1) Training Run",
NeurIPS 2023, Algorithm 1; https://arxiv.org/abs/2305.08846): take a node's training data (a SHADOW copy in
memory: nothing is written to the node or sent anywhere) or a synthetic community, add m canary
contributors, each with one distinctive pair (fresh random feature vectors nobody else has, with a
random preference), include each canary independently with probability 1/2, train with the node's
own user-level DP-SGD (node/dpsgd/: same clipping, sampling and noise), and score each
canary by how much training moved its pair's margin:

    score_i = [s(chosen_i) - s(rejected_i)] after training - the same before training

Members were pushed towards their preference, non-members only by generalisation. Guess "in" for the
top k+, "out" for the bottom k-, and turn the number of correct guesses into an epsilon lower bound
(privacy/probe.py). With noise the bound must stay below the accountant's claim; with the noise off
the canaries are plainly visible and the bound is large.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from model.reward_model import RewardHead
from model.training_config import TRAINING
from node.dpsgd import ContributorTensors, contributor_tensors_from_arrays, train_dp
from privacy.accounting import epsilon_of
from privacy.accounting.calibration import noise_multiplier_for
from privacy.events import dpsgd_event
from privacy.probe import ProbeResult, best_lower_bound


@dataclass(frozen=True)
class ProbeConfig:
    """One probe experiment: canaries, the DP-SGD run they go through, and the test's level alpha."""

    canaries: int = 200
    steps: int = 60
    sampling_probability: float = 0.5
    noise_multiplier: float | None = None  # None: calibrated to `epsilon` (the claim) at `delta`
    epsilon: float = 8.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    lr: float = 0.05
    hidden: int = 32
    alpha: float = 0.05
    seed: int = 0
    optimizer: str = "sgd"
    rounds: int = 1  # successive DP-SGD runs of `steps` steps each (a federation's rounds, this node alone)
    combine: str = "r_pr"


def synthetic_base(n_contributors: int = 200, pairs_each: int = 4, dim: int = 128, seed: int = 0) -> ContributorTensors:
    """A learnable synthetic community over random unit features (a planted linear preference)."""
    rng = np.random.default_rng(seed)
    U = max(64, n_contributors * pairs_each)
    X = rng.normal(size=(U, dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    w = rng.normal(size=dim)
    rows = []
    for _ in range(n_contributors):
        r = []
        for _ in range(pairs_each):
            p, a, b = (int(v) for v in rng.integers(0, U, 3))
            if X[a] @ w < X[b] @ w:
                a, b = b, a
            r.append((p, a, b, 1.0, 1.0))
        rows.append(r)
    return contributor_tensors_from_arrays(X, rows, pairs_each, [f"s{i}" for i in range(n_contributors)], seed=seed)


def add_canaries(base: ContributorTensors, m: int, rng: np.random.Generator, *, fresh_dims: bool = False,
                 nnz: int = 4) -> tuple[ContributorTensors, ContributorTensors]:
    """(base over the extended feature table, the m canaries over the same table).

    Each canary has ONE pair whose three texts (prompt, chosen, rejected) nobody else has, like
    distinctive tokens under the hashed featurizer: sparse unit vectors with `nnz` random +-1
    coordinates. `fresh_dims` (synthetic data): the feature space is widened instead and every
    canary text gets a coordinate of its own (one-hot), the cleanest canary for a probe.
    """
    d = base.dim
    U0 = base.features.shape[0]
    X = base.features.numpy()
    if fresh_dims:
        D = d + 3 * m
        X = np.concatenate([X, np.zeros((U0, 3 * m), dtype=np.float32)], axis=1)
        fresh = np.zeros((3 * m, D), dtype=np.float32)
        fresh[np.arange(3 * m), d + np.arange(3 * m)] = 1.0
    else:
        fresh = np.zeros((3 * m, d), dtype=np.float32)
        for t in range(3 * m):
            cols = rng.choice(d, size=min(nnz, d), replace=False)
            fresh[t, cols] = rng.choice([-1.0, 1.0], size=len(cols)) / np.sqrt(len(cols))
    feats = np.concatenate([X, fresh])
    P = base.max_pairs
    rows = [[(U0 + 3 * i, U0 + 3 * i + 1, U0 + 3 * i + 2, 1.0, 1.0)] for i in range(m)]
    canaries = contributor_tensors_from_arrays(feats, rows, P, [f"canary-{i}" for i in range(m)])
    base2 = ContributorTensors(canaries.features, base.prompt, base.chosen, base.rejected, base.target, base.weight,
                               list(base.contributors), base.dropped_pairs)
    return base2, canaries


def _margins(head: RewardHead, canaries: ContributorTensors) -> np.ndarray:
    with torch.no_grad():
        idx = torch.arange(canaries.n_contributors)
        s = head(canaries.inputs(idx, head.combine))  # [m, 2P]: P chosen then P rejected
        P = canaries.max_pairs
        return (s[:, 0] - s[:, P]).double().numpy()


def run_probe(base: ContributorTensors, cfg: ProbeConfig, source: str = "synthetic", fresh_dims: bool | None = None) -> ProbeResult:
    """Insert canaries into `base` (in memory), train once with user-level DP-SGD, bound epsilon."""
    t0 = time.perf_counter()
    if fresh_dims is None:
        fresh_dims = source == "synthetic"
    rng = np.random.default_rng(cfg.seed)
    base, canaries = add_canaries(base, cfg.canaries, rng, fresh_dims=fresh_dims)
    members = rng.random(cfg.canaries) < 0.5  # each canary in with probability 1/2 (the audit's coin)
    q, steps, C = cfg.sampling_probability, cfg.steps, cfg.max_grad_norm
    if cfg.noise_multiplier is None:
        z = noise_multiplier_for(cfg.epsilon, cfg.delta, q, steps)
    else:
        z = float(cfg.noise_multiplier)
    # the accountant's claim for exactly this training (the events a node would ledger for it)
    claimed = epsilon_of([dpsgd_event(q, z, steps, C)] * cfg.rounds, cfg.delta).epsilon if z > 0 else float("inf")
    member_idx = torch.as_tensor(np.flatnonzero(members), dtype=torch.long)
    train = ContributorTensors.concat([base, canaries.subset(member_idx)]) if len(member_idx) else base
    # concat stacks feature tables: canaries' rows are offset by base's table size; same vectors.
    torch.manual_seed(cfg.seed)
    head = RewardHead(canaries.dim, hidden=cfg.hidden, combine=cfg.combine)
    before = _margins(head, canaries)
    for r in range(cfg.rounds):
        train_dp(head, train, noise_multiplier=z, max_grad_norm=C, sampling_probability=q, steps=steps, lr=cfg.lr,
                 optimizer=cfg.optimizer, sampling_seed=cfg.seed + 1 + r, noise_seed=None)
    scores = _margins(head, canaries) - before
    best, _ = best_lower_bound(scores, members, cfg.delta, cfg.alpha)
    return ProbeResult(
        canaries=cfg.canaries, included=int(members.sum()), noise_multiplier=z, sampling_probability=q, steps=steps,
        delta=cfg.delta, alpha=cfg.alpha, claimed_epsilon=claimed, epsilon_lower_bound=best.epsilon_lower_bound,
        guesses=best.guesses, correct=best.correct, k_plus=best.k_plus, k_minus=best.k_minus,
        seconds=time.perf_counter() - t0, source=source,
    )


def node_base(node_dir, featurizer_cfg: dict | None = None,
              max_pairs: int = TRAINING.max_pairs_per_contributor) -> tuple[ContributorTensors, float]:
    """A shadow copy of a node's eligible training data (in memory) and the node's delta."""
    from model.features import featurizer_from_config
    from model.presets import preset_config
    from node.node_dir import NodeDir
    from node.training import contributor_data

    nd = NodeDir(node_dir)
    policy = nd.policy()
    with nd.open_store() as store:
        feat = featurizer_from_config(featurizer_cfg or preset_config("hashed"))
        data = contributor_data(store, policy, feat, max_pairs)
    if data.n_contributors == 0:
        raise ValueError(f"{node_dir}: no eligible contributors to probe with")
    return data, policy.delta


@dataclass(frozen=True)
class BundlePlan:
    """A node's actual DP-SGD plan, read from a release bundle (`cairn audit probe --bundle B --node-dir D`)."""

    node_id: str
    config: ProbeConfig  # q, z, C, steps, rounds, optimizer, lr, head, delta: what the node ran
    featurizer: dict
    ledger_seqs: tuple[int, ...]  # the training entries of this node that the rounds record names
    ledger_claim: float  # the node's cumulative epsilon after the last of them, as the ledger states it
    accountant: str
    plan_claim: float = 0.0  # the ledger's figure for the training plan fixed in advance (0: none stated)


def plan_from_bundle(bundle, node_id: str, canaries: int = 200, seed: int = 0) -> BundlePlan:
    """The plan node `node_id` trained with in `bundle`: DP-SGD parameters from the ledger events the
    rounds record names (`privacy.events.dpsgd_params`), optimizer, lr and head from the model config.
    ValueError when the bundle has no such training or its rounds disagree with the ledger."""
    import json
    from pathlib import Path

    from privacy.events import dpsgd_params, event_from_proto
    from protos import bundle as bundle_format
    from protos import ledger_pb2

    root = Path(bundle)
    path = root / bundle_format.ledger_pb(node_id)
    if not path.is_file():
        raise ValueError(f"{root}: no ledger for node {node_id[:16]}... (is --node-dir a node of this bundle?)")
    entries = {e.body.seq: e for e in ledger_pb2.LedgerExport.FromString(path.read_bytes()).entries}
    used = [c for r in bundle_format.read_rounds(root).rounds for c in r.contributors if c.node_id == node_id]
    if not used:
        raise ValueError(f"{root}: node {node_id[:16]}... trained in no round of this bundle")
    plans = []
    for c in used:
        e = entries.get(c.ledger_seq)
        if e is None or e.entry_hash.hex() != c.ledger_entry_hash:
            raise ValueError(f"{root / bundle_format.ROUNDS}: seq {c.ledger_seq} does not match the node's ledger; "
                             "run `cairn audit verify` first")
        params = dpsgd_params(event_from_proto(e.body.event))
        if params is None:
            raise ValueError(f"ledger seq {c.ledger_seq}: not a DP-SGD event")
        plans.append(params)
    if len(set(plans)) != 1:
        raise ValueError(f"{root}: node {node_id[:16]}...'s rounds trained with different parameters: {plans}")
    p, last = plans[0], entries[used[-1].ledger_seq].body
    model = json.loads((root / bundle_format.MODEL_CONFIG).read_text(encoding="utf-8"))
    training, head = model.get("training", {}), model.get("head", {})
    cfg = ProbeConfig(canaries=canaries, steps=p.steps, sampling_probability=p.sampling_probability,
                      noise_multiplier=p.noise_multiplier, delta=last.target_delta, max_grad_norm=p.clip_norm,
                      lr=float(training.get("lr", TRAINING.lr)), hidden=int(head.get("hidden", TRAINING.hidden)),
                      combine=str(head.get("combine", "r_pr")), optimizer=str(training.get("optimizer", TRAINING.optimizer)),
                      rounds=len(plans), seed=seed)
    plan_claim = float(getattr(last, "plan_epsilon", 0.0) or 0.0)  # ledgers written since issue 10 (finding 4)
    return BundlePlan(node_id, cfg, model.get("featurizer", {}), tuple(c.ledger_seq for c in used),
                      float(last.claimed_epsilon), last.accountant, plan_claim)
