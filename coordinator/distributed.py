"""Distributed DP training (`cairn federate --dp distributed`, issue 11 item 3): the coordinator's rounds.

Each round is ONE DP-SGD step over the union of all communities' members (Abadi et al. 2016,
Algorithm 1, https://arxiv.org/abs/1607.00133), its noise split between the nodes by the distributed
discrete Gaussian (Kairouz, Liu & Steinke 2021, https://arxiv.org/abs/2102.06387, Algorithm 1), so the
model gets the accuracy of central DP-SGD while no party sees one community's update:

1. the coordinator sends every training node the global model and the step's PUBLIC parameters: the
   Poisson rate q, the clipping norm C, the central noise multiplier z and the SecAgg+ roster size;
2. each node (node/distributed.py) checks them against its own policy, samples its members at q,
   quantises each sampled person's clipped gradient and count, adds its share of discrete Gaussian
   noise, commits the ledger entry, and holds the value for secure aggregation;
3. SecAgg+ over the nodes that accepted (coordinator/secure_sum.py, integer inputs) returns only the
   modular sum; the coordinator decodes it (privacy/distributed_dp.py `decode`), divides the gradient
   sum by the noisy count (the last coordinate / count_weight), never by less than `count_floor` (a
   noisy count <= 0 or tiny beside its noise), and takes one Adam step.

A round whose secure aggregation fails (too few nodes accepted, or a dropout after masking: each
node's UNMASK refuses with fewer survivors than its `trust.min_honest_nodes`, since the missing noise
shares would leave the sum short of its noise) is recorded as not applied and the model does not move.

The step's parameters come from the plan machinery (coordinator/planning.py): each node quotes the
training epsilon that fits its budget for `rounds` one-step rounds (node/planning.py); the coordinator
takes q = the requested rate capped by every node's max_sampling_rate, and z = the smallest noise whose
distributed event (under the trust assumption) over all rounds costs at most the smallest quote
(privacy/accounting calibration, the same accountant as the ledgers), at least every node's floor.
Each node still checks the result against its own remaining budget through its own gate.

Defaults (cairn/federate.py): DEFAULT_ROUNDS steps (= the policies' default max_rounds), lr DEFAULT_LR
for the coordinator's Adam on the noisy mean gradient.
"""

from __future__ import annotations

import json
import logging
import tomllib

import numpy as np

from privacy.secagg.constants import SecAggError
from protos.wire import Key, MessageType, Record

log = logging.getLogger("cairn.coordinator")

MODE = "distributed"  # the train config's DP_KEY value (node/distributed.py answers it)
DP_KEY, NOISE_KEY, PARTICIPANTS_KEY, HONEST_KEY = "dp", "noise_multiplier", "participants", "min_honest"  # train config
DEFAULT_ROUNDS = 100  # one DP-SGD step per round over the union; policies allow 100 rounds by default
DEFAULT_LR = 0.02  # Adam step on the noisy mean gradient (measured on the synthetic communities)
AGGREGATION = "secagg+ddg"


def _policy_facts(infos: dict[int, dict], nodes: list[int]) -> dict[int, dict]:
    """Each node's public policy facts the plan needs, from its hello's policy file (public by design)."""
    from privacy.policy import Policy, Trust

    out = {}
    for n in nodes:
        try:
            raw = tomllib.loads(str(infos[n].get(Key.POLICY_TOML, "")))
        except tomllib.TOMLDecodeError:
            raw = {}
        priv, trust = raw.get("privacy", {}), raw.get("trust", {})
        out[n] = {"max_sampling_rate": float(priv.get("max_sampling_rate", Policy.max_sampling_rate)),
                  "min_noise_multiplier": float(priv.get("min_noise_multiplier", Policy.min_noise_multiplier)),
                  "min_honest": int(trust.get("min_honest_nodes", Trust.min_honest_nodes)),
                  "delta": float(infos[n].get(Key.DELTA, 1e-6))}
    return out


def step_parameters(cfg, plans: dict, infos: dict[int, dict], trainers: list[int], dim: int) -> tuple[float, float, int]:
    """(q, z, min_honest) of every round: see the module docstring. Raises AccountingError when no noise fits."""
    from privacy.distributed_dp import ddg_noise_multiplier

    facts = _policy_facts(infos, trainers)
    q = min([float(cfg.sampling_rate)] + [f["max_sampling_rate"] for f in facts.values()])
    floor = max(f["min_noise_multiplier"] for f in facts.values())
    # shares sized for the fewest honest nodes any policy names: every node then adds at least the noise its own
    # trust assumption needs (node/distributed.py refuses an h above its own)
    h = min(f["min_honest"] for f in facts.values())
    delta = min(f["delta"] for f in facts.values())
    target = min(plans[infos[n][Key.NODE_ID]].item("train").epsilon for n in trainers)
    z = ddg_noise_multiplier(target, delta, q, cfg.rounds, cfg.max_grad_norm, dim, len(trainers), h)
    return q, max(z, floor), h


def _train_config(cfg, r: int, q: float, z: float, n: int, h: int, head):
    from flwr.app import ConfigRecord

    return ConfigRecord({
        "federation_id": cfg.federation_id, "round": r, "rounds": cfg.rounds, "local_steps": 1,
        "epsilon": cfg.epsilon, "sampling_rate": q, "lr": cfg.lr, "max_grad_norm": cfg.max_grad_norm,
        "max_pairs_per_contributor": cfg.max_pairs_per_contributor, Key.FEATURIZER: json.dumps(cfg.featurizer),
        Key.HEAD: json.dumps(head.arch()), Key.SECAGG: True, DP_KEY: MODE, NOISE_KEY: z, PARTICIPANTS_KEY: n,
        HONEST_KEY: h,
    })


COUNT_FLOOR_SIGMAS = 2.0  # the mean divides by at least this many standard deviations of the count's noise


def count_floor(p, shares: int) -> float:
    """The least divisor of the noisy gradient sum: COUNT_FLOOR_SIGMAS standard deviations of the noisy count
    (`shares` noise shares of share_sigma lattice steps, over count_weight), and at least 1. A noisy count at or
    below it (<= 0, or tiny) says the sum is mostly noise: dividing by it would make a step of any size (and
    inflate Adam's second moments for many rounds). Post-processing of the released sum: no privacy cost."""
    sd = p.share_sigma * p.gamma * float(np.sqrt(max(1, shares))) / p.count_weight
    return max(1.0, COUNT_FLOOR_SIGMAS * sd)


def noisy_mean(total: np.ndarray, p, shares: int = 1) -> tuple[np.ndarray, float]:
    """(noisy mean gradient, noisy count) from the modular sum of `shares` nodes' vectors: decoded, the
    gradient sum / max(count, `count_floor`)."""
    from privacy.distributed_dp import decode, gradient_and_count

    grad_sum, count = gradient_and_count(decode(total, p), p)
    return grad_sum / max(count, count_floor(p, shares)), count


def distributed_rounds(grid, cfg, head, global_vec: np.ndarray, rounds, trainers: list[int], infos: dict[int, dict],
                       plans: dict, send) -> np.ndarray:
    """The training rounds of a distributed-DP federation (module docstring); appends each round to
    `rounds` (the bundle's RoundsRecord) and returns the final global model vector."""
    import torch
    from flwr.app import ArrayRecord, RecordDict

    from coordinator.secure_sum import secure_sum
    from model.reward_model import vector_to_state
    from privacy.distributed_dp import plan_ddg

    dim = int(global_vec.size)
    names = {i[Key.NODE_ID]: i[Key.NAME] for i in infos.values()}
    skipped = {nid: f"not asked (plan): {p.item('train').why if p.item('train') else 'no training'}"
               for nid, p in plans.items() if not p.asks("train")}
    if len(trainers) < 2:
        log.warning("distributed DP needs at least 2 training nodes, the plan has %d: no training", len(trainers))
        return global_vec
    try:
        q, z, h = step_parameters(cfg, plans, infos, trainers, dim)
    except ValueError as e:  # AccountingError, DdgError: no noise level fits the smallest quote
        log.error("distributed DP: no step parameters fit the nodes' budgets (%s): no training", e)
        return global_vec
    p = plan_ddg(cfg.max_grad_norm, z, dim, len(trainers), h)
    log.info("distributed DP: %d rounds of one step, q %.4g, clip %.4g, central noise multiplier %.4g, %d nodes",
             cfg.rounds, q, cfg.max_grad_norm, z, len(trainers))
    head.load_state_dict(vector_to_state(global_vec, head))
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    for r in range(1, cfg.rounds + 1):
        content = {n: RecordDict({Record.ARRAYS: ArrayRecord([global_vec]),
                                  Record.CONFIG: _train_config(cfg, r, q, z, len(trainers), h, head)}) for n in trainers}
        reps = send(grid, MessageType.TRAIN, trainers, content, f"round-{r}", cfg.timeout)
        ok = {n: rep.content[Record.STATUS] for n, rep in reps.items() if rep.content[Record.STATUS][Key.OK]}
        refused = {infos[n][Key.NODE_ID]: str(rep.content[Record.STATUS][Key.REFUSED])
                   for n, rep in reps.items() if n not in ok}
        dropped = sorted(infos[n][Key.NODE_ID] for n in set(trainers) - set(reps))
        refused.update({nid: "no reply (node failed or timed out)" for nid in dropped} | skipped)
        for nid, why in refused.items():
            log.warning("round %d: %s (%s) refused: %s", r, names[nid], nid[:12], why)
        contributed, applied, failed = sorted(ok), False, ""
        if len(ok) >= 2:
            try:
                total, contributed = secure_sum(grid, sorted(ok), cfg, dim + 1, f"secagg-{r}", integers=True)
                mean, count = noisy_mean(total, p, len(contributed))
                if not np.all(np.isfinite(mean)):
                    raise SecAggError("the decoded sum is not finite")
                _adam_step(head, opt, mean)
                global_vec, applied = _vector(head), True
                log.info("round %d: step on %d nodes' sum, noisy count %.1f", r, len(contributed), count)
            except SecAggError as e:  # e.g. the nodes' UNMASK refused: fewer survivors than min_honest_nodes
                log.warning("round %d: secure aggregation failed, no update: %s", r, e)
                failed = f"released for secure aggregation, not aggregated (the round failed: {e})"
        else:
            log.warning("round %d: %d node(s) accepted, secure aggregation needs 2: no update", r, len(ok))
            failed = "released for secure aggregation, not aggregated (fewer than 2 nodes accepted the round)"
        if not applied:  # no model source: each entry spent stays in its node's ledger, the reason here
            refused.update({infos[n][Key.NODE_ID]: failed for n in ok})
            contributed = []
        lost = sorted(infos[n][Key.NODE_ID] for n in set(ok) - set(contributed) if applied)  # masked, then dropped
        rnd = rounds.rounds.add(round=r, aggregation=AGGREGATION, applied=applied, refused=refused,
                                dropped=sorted(dropped + lost))
        for n in contributed:
            rnd.contributors.add(node_id=infos[n][Key.NODE_ID], ledger_seq=int(ok[n][Key.LEDGER_SEQ]),
                                 ledger_entry_hash=str(ok[n][Key.LEDGER_ENTRY_HASH]),
                                 claimed_epsilon=float(ok[n][Key.CLAIMED_EPSILON]))
    return global_vec


def _adam_step(head, opt, mean: np.ndarray) -> None:
    """One optimiser step on the noisy mean gradient (flat, in state_dict order)."""
    from model.reward_model import vector_to_state

    grads = vector_to_state(mean.astype(np.float32), head)
    params = dict(head.named_parameters())
    for k, g in grads.items():
        if k in params:
            params[k].grad = g.clone()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _vector(head) -> np.ndarray:
    from model.reward_model import state_to_vector

    return state_to_vector(head).astype(np.float32)
