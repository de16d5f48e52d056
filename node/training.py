"""One node's part in a federated training round: user-level DP-SGD on its eligible contributors.

The node, not the coordinator, sets the privacy parameters (ARCHITECTURE.md invariant 3). At a federation's
first round it runs the policy's noisy min_contributors test (privacy/release.py `check_contributors`,
its own ledger entry) and fixes a plan: Poisson rate q over contributors, the rate the coordinator asks
for capped by the policy's max_sampling_rate, a function of public values only, never of the number of
eligible contributors N (q = batch/N would publish N = batch/q; issue 10, finding 2), and the noise
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
from typing import Sequence

import numpy as np

from model.features import BatchCachedEncoder, CachedEncoder, cache_name
from model.reward_model import head_from_config, state_to_vector, vector_to_state
from model.training_config import TRAINING
from node.consent import eligible_contributors
from node.dpsgd import ContributorTensors, train_dp
from node.dpsgd.data import stream_contributor_tensors
from node.request_bounds import TrainingRefused, request_problem  # noqa: F401  (re-exported: one definition each)
from privacy.accounting import AccountingError
from privacy.accounting.calibration import noise_multiplier_for, noise_multiplier_within_filter
from privacy.events import DpEvent, SelfComposedEvent, dpsgd_event


@dataclass(frozen=True)
class TrainRequest:
    """What the coordinator asks for (it can ask; the node decides). Defaults: model.training_config."""

    federation_id: str
    round: int
    rounds: int  # planned rounds of the whole federation
    local_steps: int = TRAINING.local_steps
    epsilon: float = TRAINING.epsilon  # epsilon the coordinator would like the training to spend in total
    sampling_rate: float = TRAINING.sampling_rate  # Poisson rate per step the coordinator would like (policy caps it)
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

    @property
    def plan_id(self) -> str:
        """The id under which the ledger commits this plan (privacy/ledger.py `plan`)."""
        return f"train:{self.federation_id}"

    def plan_event(self) -> DpEvent:
        """The whole plan, every planned round: what is fixed in advance and committed at round one."""
        return SelfComposedEvent(self.event(), self.rounds)

    def event(self) -> DpEvent:
        """The ledger event of one round: SelfComposed(PoissonSampled(q, Gaussian(z*C, C)), local_steps)."""
        return dpsgd_event(self.sampling_probability, self.noise_multiplier, self.local_steps, self.max_grad_norm)


def check_trains(policy) -> None:
    """Refuse at once (before any featurizing) when the community does not release model updates."""
    if "train" not in policy.allowed_releases:
        raise TrainingRefused("policy rule allowed_releases: this community does not release model updates")


def check_round(plan: TrainPlan, round_number: int) -> None:
    """Refuse a round outside the committed plan: its PLD figure (labelled fixed in advance) covers
    rounds 1..plan.rounds only, so a coordinator asking for more would spend past what was planned."""
    if isinstance(round_number, bool) or not isinstance(round_number, int) or not 1 <= round_number <= plan.rounds:
        raise TrainingRefused(f"policy rule plan: round {round_number!r} is outside the committed plan of "
                              f"{plan.rounds} round(s) for federation {plan.federation_id}")


def make_plan(policy, request: TrainRequest, spent_epsilon: float, history: Sequence[DpEvent] = ()) -> TrainPlan:
    """The node's plan for `request` under `policy` (see the module docstring), or TrainingRefused.
    Nothing in it depends on the number of eligible contributors; the min_contributors test is the
    release gate's (`ReleaseGate.check_contributors`), run before the plan is made."""
    check_trains(policy)
    problem = request_problem(request, policy)
    if problem:
        raise TrainingRefused(f"training request: {problem}")
    remaining = policy.epsilon_cap - spent_epsilon
    target = min(request.epsilon, remaining)
    if target <= 0:
        raise TrainingRefused(f"policy rule epsilon_cap: budget exhausted ({spent_epsilon:.3f} of {policy.epsilon_cap} spent)")
    q = min(policy.max_sampling_rate, float(request.sampling_rate))
    steps = request.rounds * request.local_steps
    try:  # the cap is a privacy filter (privacy/accounting/filter.py): the whole plan must fit under it
        z = max(noise_multiplier_for(target, policy.delta, q, steps), policy.min_noise_multiplier)
        z = noise_multiplier_within_filter(history, q, steps, policy.epsilon_cap, policy.delta, at_least=z)
    except AccountingError:
        raise TrainingRefused("policy rule epsilon_cap: no noise level keeps this training within the cap") from None
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


def pair_subset_key(store, plan_id: str) -> bytes:
    """The node's secret key for choosing each contributor's pairs (node/dpsgd/data.py `select_pairs`):
    HMAC(store HMAC key, plan id), so a person's subset is fixed for a plan and depends on nobody else."""
    return bytes.fromhex(store.cipher.ident("dpsgd-pair-subset", plan_id))


def contributor_data(store, policy, featurizer, max_pairs: int, plan_id: str = ""):
    """Training tensors of the eligible contributors, featurized through the store's cache; each
    person's pairs are chosen with `pair_subset_key(store, plan_id)` (issue 10, finding 1). Records
    stream from the store in batches into compact arrays (node/dpsgd/data.py
    `stream_contributor_tensors`): no member's records are held beyond their batch (issue 16 item 3).
    Hashed features are cached per encode batch (node/store_cache.py `FeatureBatches`: one look-up per
    4,096 texts, where a look-up per text would cost more than hashing), so a plan's later rounds, each in
    a fresh ClientApp process on the Deployment Engine, do not featurize again (issue 16)."""
    eligible = eligible_contributors(store, policy)
    digest = hashlib.sha256("\x1f".join(sorted(eligible)).encode()).hexdigest()
    key = (str(store.path), json.dumps(featurizer.config(), sort_keys=True), digest, max_pairs, plan_id)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # free the previous tensors before building the next
        batches = store.feature_batches(cache_name(featurizer)) if featurizer.name == "hashed-ngram" else None
        encoder = BatchCachedEncoder(featurizer, batches) if batches is not None else \
            CachedEncoder(featurizer, store.embedding_cache(cache_name(featurizer)))
        _DATA_CACHE[key] = stream_contributor_tensors(store.records(contributors=eligible), encoder, max_pairs,
                                                      key=pair_subset_key(store, plan_id))
        if batches is not None:
            batches.prune()  # batches of texts this pass no longer reads (changed data, an earlier plan)
    return _DATA_CACHE[key]


def load_plan(store, federation_id: str) -> TrainPlan | None:
    """The plan saved for `federation_id`, or None before its first round."""
    raw = store.meta_get(f"train-plan:{federation_id}")
    return TrainPlan(**json.loads(raw)) if raw else None


def save_plan(store, plan: TrainPlan) -> None:
    """Persist `plan` so later rounds of the federation reuse it."""
    with store.transaction():
        store.meta_set(f"train-plan:{plan.federation_id}", json.dumps(asdict(plan)))


def train_round(nd, store, cfg: dict, arrays: list, featurizer_key: str = "featurizer", head_key: str = "head"):
    """One round for a coordinator's train message (`cfg`: its config record as a dict, `arrays`: its
    numpy arrays): every value checked against the policy's bounds before any work
    (node/request_bounds.py), a round outside the committed plan refused before the store is read, the
    noisy min_contributors test and the plan at a federation's first round, then DP-SGD and the
    release through the gate (ledger entry first). Returns (request, plan, release); raises
    TrainingRefused or PolicyViolation naming the rule."""
    from model.features import featurizer_from_config
    from node.releases import open_gate
    from node.request_bounds import validate_train

    policy = nd.policy()
    check_trains(policy)
    request, feat_cfg, head_arch, global_vec = validate_train(policy, cfg, arrays, featurizer_key, head_key)
    plan = load_plan(store, request.federation_id)
    if plan is not None:
        check_round(plan, request.round)
    gate = open_gate(nd, store)
    if plan is None and gate.budget("train").remaining_epsilon <= 0:  # before any member's data is read (review 15)
        raise TrainingRefused(f"policy rule epsilon_cap: budget exhausted ({gate.spent_epsilon():.3f} of "
                              f"{policy.epsilon_cap} spent)")
    secagg = bool(cfg.get("secagg", False))  # read as node/client_app.py reads it: such an update leaves only masked
    if plan is not None:  # a plaintext re-ask of a round released for secure aggregation: refused before any work
        gate.cached("train", round_request(request, plan), secagg)  # (PolicyViolation secagg_only, issue 11)
    featurizer = featurizer_from_config(feat_cfg)
    data = contributor_data(store, policy, featurizer, request.max_pairs_per_contributor, request.federation_id)
    if plan is None:  # the noisy min_contributors test (own ledger entry), once for the plan's rounds
        gate.check_contributors("train", data.n_contributors, f"{request.federation_id}/{request.round}")
        plan = make_plan(policy, request, gate.spent_epsilon(), gate.ledger.filter_state())
        save_plan(store, plan)
    check_round(plan, request.round)
    update, _ = local_update(head_arch, global_vec, data, plan)
    rel = gate.release(
        "train",
        round_request(request, plan),
        secagg=secagg,
        contributors=None,  # tested by check_contributors when the plan was made
        round_id=f"{request.federation_id}/{request.round}",
        event=plan.event(),
        plan=(plan.plan_id, plan.plan_event()),
        payload=update.astype(np.float32).tobytes(),
    )
    return request, plan, rel


def round_request(request: TrainRequest, plan: TrainPlan) -> dict:
    """What identifies a round for the release gate's cache: a repeated round gets its cached update."""
    return {"federation": request.federation_id, "round": request.round, "plan": plan.__dict__}


def local_update(head_arch: dict, global_vec: np.ndarray, data, plan: TrainPlan) -> tuple[np.ndarray, dict]:
    """Run one round of user-level DP-SGD from the global model; returns (update, training info).
    With nobody eligible (the noisy min_contributors test can pass at N = 0) the round still runs, on one
    all-padding contributor whose clipped gradient is 0: the update is DP-SGD's noise alone, exactly what
    DP-SGD on an empty dataset releases, so N = 0 is not told apart by an error or a refusal."""
    if data.n_contributors == 0:
        data = ContributorTensors.nobody(data.dim)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the head's ops are tiny: a second intra-op thread only waits and syncs
    try:                      # (measured: 100 steps 16.8 -> 1.8 CPU-s on 2 busy cores; issue 16)
        return _local_update(head_arch, global_vec, data, plan)
    finally:
        torch.set_num_threads(threads)


def _local_update(head_arch: dict, global_vec: np.ndarray, data, plan: TrainPlan) -> tuple[np.ndarray, dict]:
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
