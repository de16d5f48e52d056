"""One node's part in a distributed-DP round (`cairn federate --dp distributed`, issue 11 item 3).

Each round is ONE DP-SGD step over the union of all communities' members (Abadi et al. 2016,
Algorithm 1, https://arxiv.org/abs/1607.00133, with the person as the unit, McMahan et al. 2018,
https://arxiv.org/abs/1710.06963), its noise split between the nodes by the distributed discrete
Gaussian (Kairouz, Liu & Steinke 2021, "The Distributed Discrete Gaussian Mechanism for Federated
Learning with Secure Aggregation", ICML, https://arxiv.org/abs/2102.06387, Algorithm 1):

1. every coordinator value is checked before any work: the train message's bounds
   (node/request_bounds.py), one step per round, the sampling rate q within max_sampling_rate, the
   central noise multiplier z above min_noise_multiplier, secure aggregation on (rule secagg_only),
   the same q, z, C, h and roster size at every round of a plan (rule plan), each round once (rule
   secagg_value_once), and the roster: a round with fewer nodes than the policy's
   `trust.min_honest_nodes` is refused (the shares of that many honest nodes must reach the target
   noise on their own), and so are shares sized for more honest nodes than the policy counts on;
2. the node Poisson-samples its eligible contributors at the coordinator's PUBLIC q (never a rate
   derived from its own count), with cryptographic randomness;
3. each sampled person's gradient on the global model, clipped to C (node/dpsgd/persons.py), is
   scaled and conditionally rounded to integers (privacy/distributed_dp.py `quantize_person`), with
   one extra count coordinate, and summed; the node adds its share of discrete Gaussian noise from the
   secure sampler (`noise_share`), sized so that h shares reach the target, h at most its own min_honest_nodes;
4. the ledger entry (the distributed event and this node's own guarantee, privacy/distributed_dp.py)
   is committed through the release gate BEFORE the value can leave (ARCHITECTURE.md invariant 2), as
   one round of a plan fixed in advance; the value waits in the ClientApp's context as
   `pending_integers` (mod 2^32) and leaves only masked, by SecAgg+, whose UNMASK refuses with fewer
   than min_honest_nodes survivors (`secagg_require`): a dropout after masking leaves the noise short,
   so the sum is never revealed. A round asked without secure aggregation is refused (rule
   secagg_only), and so is a repeated round (rule secagg_value_once), even in a new run whose context
   forgot what was masked: the same value summed with two rosters would give one node's value by
   difference, carrying its own noise share only.

Nothing derived from the exact number of members leaves: the count travels noised, inside the sum.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np

from node.request_bounds import TrainingRefused, _int_in, _num

MODE = "distributed"  # the train config's DP_KEY value asking for this path (coordinator/distributed.py sends it)
DP_KEY = "dp"  # train config keys of a distributed round (beside node.training.TrainRequest's fields)
NOISE_KEY = "noise_multiplier"  # z: the CENTRAL noise multiplier (target total sigma = z * clip)
PARTICIPANTS_KEY = "participants"  # the roster size of the round's secure aggregation
HONEST_KEY = "min_honest"  # h the shares are sized for (the smallest of the nodes' trust.min_honest_nodes)
SECAGG_KEY = "secagg"  # protos/wire.py Key.SECAGG
MAX_PARTICIPANTS = 100_000
MAX_NOISE = 1_000.0
REQUIRE_RULE = "trust.min_honest_nodes"
VALUE_ONCE_RULE = "secagg_value_once"  # privacy/secagg/constants.py Rule.VALUE_ONCE: a value is masked once
SECAGG_ONLY_RULE = "secagg_only"  # privacy/release.py SECAGG_ONLY: the value leaves only masked


@dataclass(frozen=True)
class DdgPlan:
    """The distributed round's public parameters, fixed at the federation's first round for every round."""

    federation_id: str
    rounds: int
    sampling_probability: float
    noise_multiplier: float
    clip: float
    participants: int
    min_honest: int
    dim: int  # gradient dimension (the model's parameter count); the field vector has dim + 1 coordinates

    @property
    def plan_id(self) -> str:
        """The id under which the ledger commits this plan (privacy/ledger.py `plan`)."""
        return f"train-ddg:{self.federation_id}"

    def params(self):
        """privacy/distributed_dp.py's DdgParams of this plan."""
        from privacy.distributed_dp import plan_ddg

        return plan_ddg(self.clip, self.noise_multiplier, self.dim, self.participants, self.min_honest)


def is_distributed(cfg: dict) -> bool:
    """Whether a train message's config asks for a distributed-DP round."""
    return cfg.get(DP_KEY) == MODE


def check_request(policy, request, cfg: dict) -> tuple[float, int, int]:
    """(z, participants, h) of a distributed round, or TrainingRefused naming the rule (module docstring).
    The shares must be sized for at most the node's own min_honest_nodes honest shares (h <= its own: more
    noise than it needs is fine, less is not)."""
    z, n, h_asked = cfg.get(NOISE_KEY), cfg.get(PARTICIPANTS_KEY), cfg.get(HONEST_KEY)
    if cfg.get(SECAGG_KEY) is not True:  # the value waits for SecAgg+ whatever is asked; say so before any work
        raise TrainingRefused(f"policy rule {SECAGG_ONLY_RULE}: a distributed DP round's value leaves this node only "
                              f"masked by secure aggregation (field {SECAGG_KEY!r} must be true)")
    if not (_num(z) and 0 < z <= MAX_NOISE):
        raise TrainingRefused(f"training request: field {NOISE_KEY!r} must be in (0, {MAX_NOISE:g}], got {z!r}")
    if not _int_in(n, 1, MAX_PARTICIPANTS):
        raise TrainingRefused(f"training request: field {PARTICIPANTS_KEY!r} must be an integer in [1, "
                              f"{MAX_PARTICIPANTS}], got {n!r}")
    if request.local_steps != 1:
        raise TrainingRefused(f"training request: field 'local_steps' must be 1 in distributed DP (one step over "
                              f"the union per round), got {request.local_steps!r}")
    h = int(policy.trust.min_honest_nodes)
    if n < h:
        raise TrainingRefused(f"policy rule {REQUIRE_RULE}: the round's roster has {n} node(s); this community "
                              f"counts on the noise of at least {h} honest nodes")
    if not _int_in(h_asked, 1, h):
        raise TrainingRefused(f"policy rule {REQUIRE_RULE}: noise shares sized for {h_asked!r} honest nodes; this "
                              f"community counts on at most {h} (field {HONEST_KEY!r} must be an integer in [1, {h}])")
    if request.sampling_rate > policy.max_sampling_rate:
        raise TrainingRefused(f"policy rule max_sampling_rate: sampling rate {request.sampling_rate:g} > "
                              f"{policy.max_sampling_rate:g}")
    if z < policy.min_noise_multiplier:
        raise TrainingRefused(f"policy rule min_noise_multiplier: noise multiplier {z:g} is below the policy floor "
                              f"{policy.min_noise_multiplier:g}")
    return float(z), int(n), int(h_asked)


def load_plan(store, federation_id: str) -> DdgPlan | None:
    """The plan saved at `federation_id`'s first round, or None before it."""
    raw = store.meta_get(f"ddg-plan:{federation_id}")
    return DdgPlan(**json.loads(raw)) if raw else None


def check_plan_fits(policy, gate, plan_event) -> None:
    """At a plan's first round: the whole plan (its noisy min_contributors test, then every round) must fit
    under the cap by the node's own privacy filter (privacy/accounting/filter.py, the ledger's running state),
    so the coordinator's z and q cannot stop a training half-way; else TrainingRefused (rule epsilon_cap)."""
    from privacy.accounting import state_report
    from privacy.events import DiscreteGaussianEvent

    st = gate.ledger.filter_state().copy()
    if float(policy.min_contributors_noise) > 0:
        st.add(DiscreteGaussianEvent(float(policy.min_contributors_noise), 1))
    st.add(plan_event)
    eps = state_report(st, policy.delta).epsilon
    if not eps <= policy.epsilon_cap:
        raise TrainingRefused(f"policy rule epsilon_cap: the plan's rounds would take cumulative epsilon to {eps:.4f} > "
                              f"cap {policy.epsilon_cap} at delta {policy.delta} (more noise or fewer rounds)")


def poisson_sample(n: int, q: float, rng) -> np.ndarray:
    """Indices of a Poisson sample of range(n) at rate q (each kept independently with probability
    q, to 2^-32 resolution), from `rng` (privacy.samplers.SecureUniform: cryptographic randomness)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    cut = min(1 << 32, int(math.floor(q * (1 << 32))))
    return np.nonzero(rng.uint32(n).astype(np.uint64) < cut)[0]


def noisy_integer_sum(head_arch: dict, global_vec: np.ndarray, data, plan: DdgPlan, p, rng) -> np.ndarray:
    """The node's field vector: its Poisson sample's quantised clipped gradients and counts, summed,
    plus its noise share, mod 2^bits (uint64). See the module docstring, steps 2 and 3."""
    from privacy.distributed_dp import noise_share, to_field

    sample = poisson_sample(data.n_contributors, plan.sampling_probability, rng)
    return to_field(quantised_sum(head_arch, global_vec, data, sample, p) + noise_share(p, rng), p.bits)


def quantised_sum(head_arch: dict, global_vec: np.ndarray, data, sample: np.ndarray, p, rounding=None) -> np.ndarray:
    """Sum over the people `sample` (indices into `data`) of their quantised clipped gradient and count (int64,
    dim + 1), before noise: each person adds at most p.l2_bound in L2 whatever else is in the sample."""
    import torch

    from model.reward_model import head_from_config, vector_to_state
    from node.dpsgd.persons import clipped_person_gradients
    from privacy.distributed_dp import quantize_person

    if rounding is None:  # OS entropy; the rounding's randomness is not privacy noise (its bound holds for every
        rounding = np.random.default_rng()  # draw: privacy/distributed_dp.py `quantize_person`)
    total = np.zeros(p.dim + 1, dtype=np.int64)
    if len(sample):
        head = head_from_config(head_arch)
        head.load_state_dict(vector_to_state(global_vec, head))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny ops: a second thread only waits (node/training.py `local_update`)
        try:
            for grads in clipped_person_gradients(head, data, torch.from_numpy(np.asarray(sample, dtype=np.int64)), p.clip):
                for g in grads:
                    total += quantize_person(g, p, rounding)
        finally:
            torch.set_num_threads(threads)
    return total


def distributed_round(nd, store, cfg: dict, arrays: list, featurizer_key: str = "featurizer", head_key: str = "head"):
    """One distributed round for a coordinator's train message; returns (request, plan, release) with
    the field vector (uint32 little-endian) as the release's payload. Raises TrainingRefused or
    PolicyViolation naming the rule."""
    from model.features import featurizer_from_config
    from node.releases import open_gate
    from node.request_bounds import validate_train
    from node.training import check_round, check_trains, contributor_data
    from privacy.distributed_dp import DdgError, ddg_event
    from privacy.events import SelfComposedEvent
    from privacy.samplers import SecureUniform

    policy = nd.policy()
    check_trains(policy)
    request, feat_cfg, head_arch, global_vec = validate_train(policy, cfg, arrays, featurizer_key, head_key)
    z, n, h = check_request(policy, request, cfg)
    asked = DdgPlan(request.federation_id, request.rounds, float(request.sampling_rate), z,
                    float(request.max_grad_norm), n, h, int(global_vec.size))
    plan = load_plan(store, request.federation_id)
    if plan is not None and plan != asked:
        raise TrainingRefused(f"policy rule plan: the round asks other parameters than the plan committed at the "
                              f"first round of federation {request.federation_id}")
    check_round(asked, request.round)  # type: ignore[arg-type]  (a DdgPlan has the rounds and federation id)
    gate = open_gate(nd, store)
    if plan is None and gate.budget("train").remaining_epsilon <= 0:  # before any member's data is read
        raise TrainingRefused(f"policy rule epsilon_cap: budget exhausted ({gate.spent_epsilon():.3f} of "
                              f"{policy.epsilon_cap} spent)")
    try:
        p = asked.params()
    except DdgError as e:
        raise TrainingRefused(f"training request: distributed DP parameters: {e}") from None
    event = ddg_event(p, asked.sampling_probability, 1)
    plan_event = SelfComposedEvent(event, asked.rounds)  # the plan: its rounds, each one step (as the auditor reads it)
    if plan is None:
        check_plan_fits(policy, gate, plan_event)
    round_id = f"{request.federation_id}/{request.round}"
    req = {"federation": request.federation_id, "round": request.round, "dp": MODE, "plan": asdict(asked)}
    if (hit := gate.cached("train", req, True)) is not None:  # a repeated round: refused, never served again
        raise TrainingRefused(f"policy rule {VALUE_ONCE_RULE}: round {request.round} of federation "
                              f"{request.federation_id} was already released for secure aggregation (ledger entry "
                              f"{hit[0].body.seq}); its value is masked in one aggregation only")
    data = contributor_data(store, policy, featurizer_from_config(feat_cfg), request.max_pairs_per_contributor,
                            request.federation_id)
    if plan is None:  # the noisy min_contributors test (own ledger entry), once for the plan's rounds
        gate.check_contributors("train", data.n_contributors, round_id)
        with store.transaction():
            store.meta_set(f"ddg-plan:{request.federation_id}", json.dumps(asdict(asked)))

    def make_payload(_budget):
        vec = noisy_integer_sum(head_arch, global_vec, data, asked, p, SecureUniform())
        return vec.astype("<u4").tobytes(), event

    rel = gate.release("train", req, make_payload, contributors=None, round_id=round_id,
                       plan=(asked.plan_id, plan_event), secagg=True)
    return request, asked, rel


def field_vector(payload: bytes) -> np.ndarray:
    """The release payload back as the uint64 field vector SecAgg+ masks (values < 2^32)."""
    return np.frombuffer(payload, dtype="<u4").astype(np.uint64)


def reply_for(msg, context, nd, rel, ledger_now):
    """The train reply of a distributed round (node/client_app.py `train` ran the round through
    `distributed_round`): the value waits in the context for the SecAgg+ stages, masked only there."""
    from flwr.app import ArrayRecord, ConfigRecord

    from node.client_app import reply
    from protos.wire import Key, Record

    context.state["pending_integers"] = ArrayRecord([field_vector(rel.payload)])
    h = int(nd.policy().trust.min_honest_nodes)  # UNMASK refuses with fewer survivors: their shares fall short
    context.state["secagg_require"] = ConfigRecord({"min_survivors": h, "rule": REQUIRE_RULE})
    status = ConfigRecord({Key.OK: True, Key.LEDGER_SEQ: rel.seq, Key.LEDGER_ENTRY_HASH: rel.entry_hash,
                           Key.CLAIMED_EPSILON: rel.claimed_epsilon})
    return reply(msg, context, {Record.STATUS: status, Record.LEDGER: ledger_now})
