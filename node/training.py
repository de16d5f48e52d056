"""One node's part in a federated training round: user-level DP-SGD on its eligible contributors.

The node, not the coordinator, sets the privacy parameters (ARCHITECTURE.md invariant 3). At a federation's
first round it fixes a plan: Poisson rate q over contributors (capped by policy), and the noise
multiplier z that makes all planned rounds x local steps spend at most the epsilon the coordinator
asked for, itself capped by what remains of the community's budget; z never goes below the
policy's floor. Each round is one ledger event,
    SelfComposed(PoissonSampled(q, Gaussian(z*C, sensitivity C)), steps),
committed through the release gate before the update is handed to the network.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from model.features import CachedEncoder
from model.reward_model import head_from_config, state_to_vector, vector_to_state
from model.training_config import TRAINING
from node.consent import eligible_contributors
from node.dpsgd import build_contributor_tensors, train_dp
from node.pairs import pairs_from_records
from privacy.accounting.calibration import noise_multiplier_for
from privacy.events import DpEvent, dpsgd_event


class TrainingRefused(Exception):
    """The node will not train this round; the message names the rule."""


@dataclass(frozen=True)
class TrainRequest:
    """What the coordinator asks for (it can ask; the node decides). Defaults: model.training_config."""

    federation_id: str
    round: int
    rounds: int  # planned rounds of the whole federation
    local_steps: int = TRAINING.local_steps
    epsilon: float = TRAINING.epsilon  # epsilon the coordinator would like the training to spend in total
    expected_batch: int = TRAINING.expected_batch  # contributors per step the coordinator would like
    lr: float = TRAINING.lr
    max_grad_norm: float = TRAINING.max_grad_norm
    max_pairs_per_contributor: int = TRAINING.max_pairs_per_contributor

    @classmethod
    def from_config(cls, cfg: dict) -> "TrainRequest":
        """The request from a train message's config record (unknown keys ignored)."""
        known = cls.__dataclass_fields__
        return cls(**{k: cfg[k] for k in known if k in cfg})


@dataclass(frozen=True)
class TrainPlan:
    """The privacy parameters a node fixed at a federation's first round and keeps for every round."""

    federation_id: str
    rounds: int
    local_steps: int
    sampling_probability: float
    noise_multiplier: float
    max_grad_norm: float
    epsilon: float  # the training's own target, at delta
    delta: float
    lr: float
    max_pairs_per_contributor: int

    def event(self) -> DpEvent:
        """The ledger event of one round: SelfComposed(PoissonSampled(q, Gaussian(z*C, C)), local_steps)."""
        return dpsgd_event(self.sampling_probability, self.noise_multiplier, self.local_steps, self.max_grad_norm)


def check_trains(policy) -> None:
    """Refuse at once (before any featurizing) when the community does not release model updates."""
    if "train" not in policy.allowed_releases:
        raise TrainingRefused("policy rule allowed_releases: this community does not release model updates")


def make_plan(policy, request: TrainRequest, n_contributors: int, spent_epsilon: float) -> TrainPlan:
    """The node's plan for `request` under `policy` (see the module docstring), or TrainingRefused."""
    check_trains(policy)
    if n_contributors < policy.min_contributors:
        raise TrainingRefused(
            f"policy rule min_contributors: {n_contributors} eligible contributors, the policy needs {policy.min_contributors}"
        )
    remaining = policy.epsilon_cap - spent_epsilon
    target = min(request.epsilon, remaining)
    if target <= 0:
        raise TrainingRefused(f"policy rule epsilon_cap: budget exhausted ({spent_epsilon:.3f} of {policy.epsilon_cap} spent)")
    q = min(policy.max_sampling_rate, request.expected_batch / n_contributors, 1.0)
    steps = request.rounds * request.local_steps
    z = max(noise_multiplier_for(target, policy.delta, q, steps), policy.min_noise_multiplier)
    return TrainPlan(
        federation_id=request.federation_id,
        rounds=request.rounds,
        local_steps=request.local_steps,
        sampling_probability=q,
        noise_multiplier=z,
        max_grad_norm=request.max_grad_norm,
        epsilon=target,
        delta=policy.delta,
        lr=request.lr,
        max_pairs_per_contributor=request.max_pairs_per_contributor,
    )


_DATA_CACHE: dict[tuple, object] = {}  # per process: (node, featurizer, eligible set) -> tensors


def contributor_data(store, policy, featurizer, max_pairs: int):
    """Training tensors of the eligible contributors, featurized through the store's cache."""
    eligible = eligible_contributors(store, policy)
    digest = hashlib.sha256("\x1f".join(sorted(eligible)).encode()).hexdigest()
    key = (str(store.path), json.dumps(featurizer.config(), sort_keys=True), digest, max_pairs)
    if key not in _DATA_CACHE:
        pairs = pairs_from_records(store.records(contributors=eligible))
        encoder = CachedEncoder(featurizer, store.embedding_cache(featurizer.name))
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = build_contributor_tensors(pairs, encoder, max_pairs)
    return _DATA_CACHE[key]


def load_plan(store, federation_id: str) -> TrainPlan | None:
    """The plan saved for `federation_id`, or None before its first round."""
    raw = store.meta_get(f"train-plan:{federation_id}")
    return TrainPlan(**json.loads(raw)) if raw else None


def save_plan(store, plan: TrainPlan) -> None:
    """Persist `plan` so later rounds of the federation reuse it."""
    with store.transaction():
        store.meta_set(f"train-plan:{plan.federation_id}", json.dumps(asdict(plan)))


def local_update(head_arch: dict, global_vec: np.ndarray, data, plan: TrainPlan) -> tuple[np.ndarray, dict]:
    """Run one round of user-level DP-SGD from the global model; returns (update, training info)."""
    head = head_from_config(head_arch)
    head.load_state_dict(vector_to_state(global_vec, head))
    res = train_dp(
        head,
        data,
        noise_multiplier=plan.noise_multiplier,
        max_grad_norm=plan.max_grad_norm,
        sampling_probability=plan.sampling_probability,
        steps=plan.local_steps,
        lr=plan.lr,
    )
    return state_to_vector(head) - global_vec, res.to_dict()
