"""What the community gets back: the published reward model fine-tuned on its own members (issue 11, item 5).

`cairn node specialize DIR --from BUNDLE --out MODEL` reads the published model (a bundle's model/, its
files checked against the bundle's manifest, or a model file), fine-tunes it on the community's own data,
which never leaves the node (ARCHITECTURE.md invariant 1), and writes the specialised model to MODEL.

The file at MODEL may be shared among members, so it is a release like any other (invariants 2 to 6):
user-level DP-SGD (node/dpsgd: one clipped gradient per person, secure discrete Gaussian noise on the
summed gradient; Abadi et al. 2016, Algorithm 1, https://arxiv.org/abs/1607.00133, with the person as
the unit, McMahan et al. 2018, https://arxiv.org/abs/1710.06963), planned as node/training.py `make_plan`
plans (the policy's sampling ceiling and noise floor) but refused, not shrunk, when --epsilon does not fit
the node's privacy filter after the threshold test (`plan_within_cap`, decided before anything is spent),
after the policy's noisy min_contributors test, released through the release gate as a "train" release
whose ledger entry is committed before the file is written. The entry is labelled as a specialisation
by its ids: plan "train:specialize-<run>", round "specialize-<run>/1" (a ledger entry has no free-form
metadata field); the node's accountant and the auditor read it as any DP-SGD training.

Evaluation: a deterministic share of the eligible contributors is held out, chosen by a keyed hash of
the PERSON (HMAC under the store's key, `is_held_out`), never by count or order, so whether one person
is held out depends on nobody else (adding or removing a person changes the training set by at most
that person: the neighbouring relation of invariant 4 is kept). Held-out people are never trained on;
`cairn model eval --node DIR` scores models on their pairs (node/evaluate.py `compare_on_node`). Those
figures, with their exact pair count, are for the operator's terminal only: nothing here writes them.
"""

from __future__ import annotations

import functools
import math
import secrets
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from model.reward_model import head_from_config, save_model, state_to_vector, vector_to_state
from model.training_config import TRAINING
from node.base_model import BaseModel, SpecializeError, bundle_model, load_base, model_paths
from node.request_bounds import TrainingRefused, request_problem

__all__ = ["BaseModel", "DEFAULT_EPSILON", "DEFAULT_STEPS", "HOLDOUT_SHARE", "SpecializeError", "bundle_model",
           "held_out_pairs", "is_held_out", "load_base", "specialize"]

DEFAULT_EPSILON = 1.0  # a modest share of a default cap of 8: a community can specialise several times
DEFAULT_STEPS = 100  # DP-SGD steps (TRAINING.local_steps: one federated round's worth)
HOLDOUT_SHARE = 0.2  # share of the eligible people held out for evaluation (by keyed hash, never by count)
HOLDOUT_LABEL = "specialize-holdout/v1"  # the HMAC label of the held-out split (store key, person id)
RUN_PREFIX = "specialize-"  # federation id of a specialisation plan: plan "train:specialize-<run>"


# ---------------------------------------------------------------------------------------------
# The held-out people


def is_held_out(store, person: str, share: float = HOLDOUT_SHARE) -> bool:
    """Is `person` held out for evaluation? HMAC(store key, label, person) read as a number in [0, 1)
    below `share`: fixed per node and person, a function of nobody else's data."""
    h = int(store.cipher.ident(HOLDOUT_LABEL, person)[:16], 16) / 2**64
    return h < share


def split_people(store, people: Iterable[str], share: float) -> tuple[set[str], set[str]]:
    """(trained on, held out) among `people`."""
    train, held = set(), set()
    for p in people:
        (held if is_held_out(store, p, share) else train).add(p)
    return train, held


def held_out_pairs(nd, store, share: float = HOLDOUT_SHARE) -> list:
    """The strict-preference pairs (node/pairs.py `eval_pairs`) of the eligible people held out. Their
    exact number is for the operator's terminal only."""
    from node.consent import eligible_contributors
    from node.pairs import eval_pairs

    _, held = split_people(store, eligible_contributors(store, nd.policy()), share)
    if not held:
        return []
    return eval_pairs(store.records(contributors=held))


def encoder_for(store, featurizer):
    """The featurizer, through the store's sealed cache unless hashing (cheaper than a cache round trip)."""
    from model.features import CachedEncoder, cache_name

    if featurizer.name == "hashed-ngram":
        return featurizer
    return CachedEncoder(featurizer, store.embedding_cache(cache_name(featurizer)))


# ---------------------------------------------------------------------------------------------
# The specialisation


def _check_args(epsilon: float, steps: int, holdout: float) -> None:
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
        raise SpecializeError(f"--epsilon must be finite and > 0, got {epsilon!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise SpecializeError(f"--steps must be an integer >= 1, got {steps!r}")
    if not (isinstance(holdout, (int, float)) and 0 <= holdout < 1):
        raise SpecializeError(f"--holdout must be in [0, 1), got {holdout!r}")


def _check_out(out: Path, base: BaseModel) -> None:
    """Fail before anything is spent when the model cannot be written at `out`, or would overwrite the base
    model (SpecializeError naming it)."""
    if model_paths(out)[0].resolve() == base.weights.resolve():
        raise SpecializeError(f"{out}: is the base model --from names: write the specialised model elsewhere "
                              "(`cairn model eval --node` compares the two); nothing was spent")
    folder = out.parent if out.suffix in (".safetensors", ".json") else out
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".{out.name}.probe-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise SpecializeError(f"{out}: cannot write the model there ({e.strerror or e}); nothing was spent") from None


@functools.lru_cache(maxsize=16)
def _z_for(epsilon: float, delta: float, q: float, steps: int) -> float:
    """privacy/accounting/calibration.py `noise_multiplier_for` (a PLD bisection, a second or so), once per run."""
    from privacy.accounting.calibration import noise_multiplier_for

    return noise_multiplier_for(epsilon, delta, q, steps)


def plan_within_cap(policy, gate, request, extra=()):
    """The plan node/training.py `make_plan` makes for `request` (target --epsilon, the policy's rate
    ceiling and noise floor, the noise raised until the whole ledger fits the cap), without its silent
    shrinking: the cap is enforced on the privacy filter's figure (RDP, privacy/accounting/filter.py), and
    DP-SGD calibrated to epsilon e by the tight (PLD) accountant adds MORE than e to it (about 1.4 at e = 1
    with the defaults), so a --epsilon within the remaining figure may still not fit, and make_plan would
    then raise the noise. Refused instead (TrainingRefused, policy rule epsilon_cap, with the figure it would
    reach): the operator gets the epsilon asked for, or nothing is spent. `extra`: events about to be
    appended first (the noisy min_contributors test), so this is decided before that test spends."""
    from node.training import TrainPlan
    from privacy.accounting import AccountingError
    from privacy.accounting.calibration import noise_multiplier_within_filter

    q = min(policy.max_sampling_rate, float(request.sampling_rate))
    state = gate.ledger.filter_state()
    for ev in extra:
        state.add(ev)
    try:
        z = max(_z_for(request.epsilon, policy.delta, q, request.local_steps), policy.min_noise_multiplier)
        fits = noise_multiplier_within_filter(state, q, request.local_steps, policy.epsilon_cap, policy.delta, at_least=z)
    except AccountingError as e:
        raise TrainingRefused(f"policy rule epsilon_cap: --epsilon {request.epsilon:g}: {e}; nothing was spent") from None
    if fits > z * (1 + 1e-9):
        from privacy.accounting.filter import state_epsilon
        from privacy.events import dpsgd_event

        after = state_epsilon(state.add(dpsgd_event(q, z, request.local_steps, request.max_grad_norm)), policy.delta)
        raise TrainingRefused(
            f"policy rule epsilon_cap: --epsilon {request.epsilon:g} would take the cumulative epsilon (the privacy "
            f"filter's figure the cap is enforced against) from {gate.spent_epsilon():.4f} to {after:.4f} > cap "
            f"{policy.epsilon_cap} at delta {policy.delta:g}: DP-SGD at epsilon e adds more than e to that figure; "
            "ask for less (see `cairn node budget`); nothing was spent")
    return TrainPlan(federation_id=request.federation_id, rounds=1, local_steps=request.local_steps,
                     sampling_probability=q, noise_multiplier=z, max_grad_norm=request.max_grad_norm,
                     epsilon=request.epsilon, delta=policy.delta, lr=request.lr,
                     max_pairs_per_contributor=request.max_pairs_per_contributor)


def specialize(nd, source: Path, out: Path, *, epsilon: float = DEFAULT_EPSILON, steps: int = DEFAULT_STEPS,
               holdout: float = HOLDOUT_SHARE, features: str | None = None, lr: float = TRAINING.lr,
               sampling_rate: float = TRAINING.sampling_rate, max_grad_norm: float = TRAINING.max_grad_norm,
               verify: Callable[[Path], None] | None = None, progress: bool = False) -> dict:
    """Fine-tune the model at `source` on this node's eligible, not held-out members with user-level DP-SGD
    at `epsilon`, release it through the gate (ledger entry first) and write it to `out`. `verify(bundle)`:
    the caller's check of a bundle (the CLI runs the auditor), called after the structural checks. Refuses
    (TrainingRefused / PolicyViolation naming the rule) past the budget, before any member's data is read.
    Returns what the operator sees: no count of members or pairs."""
    from model.features import featurizer_from_config
    from node.consent import eligible_contributors
    from node.dpsgd import ContributorTensors
    from node.dpsgd.data import stream_contributor_tensors
    from node.releases import open_gate
    from node.training import TrainRequest, check_trains, pair_subset_key
    from privacy.accounting import epsilon_of
    from privacy.events import DiscreteGaussianEvent

    _check_args(epsilon, steps, holdout)
    policy = nd.policy()
    base = load_base(source, policy, features)
    if verify is not None and base.source == "bundle":
        verify(Path(source))
    check_trains(policy)
    out = Path(out)
    _check_out(out, base)
    with nd.open_store() as store:
        gate = open_gate(nd, store)
        spent_before = gate.spent_epsilon()
        remaining = gate.budget("train").remaining_epsilon
        if epsilon > remaining:  # refused, not silently shrunk: the operator asked for this much privacy loss
            raise TrainingRefused(f"policy rule epsilon_cap: --epsilon {epsilon:g} is above the remaining budget "
                                  f"{remaining:.4f} ({spent_before:.4f} of {policy.epsilon_cap} spent at delta "
                                  f"{policy.delta:g}); see `cairn node budget`")
        run = RUN_PREFIX + secrets.token_hex(8)
        request = TrainRequest(federation_id=run, round=1, rounds=1, local_steps=steps, epsilon=float(epsilon),
                               sampling_rate=sampling_rate, lr=lr, max_grad_norm=max_grad_norm)
        if problem := request_problem(request, policy):
            raise TrainingRefused(f"specialisation: {problem}")
        sigma = float(policy.min_contributors_noise)
        test = [DiscreteGaussianEvent(sigma, 1)] if sigma > 0 else []  # the noisy test's entry, about to come
        plan = plan_within_cap(policy, gate, request, test)  # refused here, before any member's data is read
        round_id = f"{run}/1"
        train_people, _ = split_people(store, eligible_contributors(store, policy), holdout)
        featurizer = featurizer_from_config(base.config["featurizer"])
        data = stream_contributor_tensors(store.records(contributors=train_people), encoder_for(store, featurizer),
                                          request.max_pairs_per_contributor, key=pair_subset_key(store, plan.plan_id))
        gate.check_contributors("train", data.n_contributors, round_id)  # noisy; its own ledger entry
        plan = plan_within_cap(policy, gate, request)  # again, on the ledger as it now is (another process?)
        if data.n_contributors == 0:  # as node/training.py `local_update`: noise alone, N = 0 not told apart
            data = ContributorTensors.nobody(data.dim)
        vec = _train(base, data, plan, progress)
        if not np.isfinite(vec).all():  # never release (and charge) a NaN model
            raise SpecializeError(f"{base.weights}: DP-SGD from this model diverged (non-finite weights); nothing "
                                  "but the threshold test was spent")
        rel = gate.release(
            "train", {"specialize": run, "base_sha256": base.sha256, "plan": asdict(plan)},
            contributors=None,  # tested above, under the same round id
            round_id=round_id, event=plan.event(), plan=(plan.plan_id, plan.plan_event()),
            payload=vec.astype(np.float32).tobytes(),
        )
        spent_after = gate.spent_epsilon()
    head = head_from_config(base.head.arch())  # the model is written from what the gate released, and only then
    head.load_state_dict(vector_to_state(np.frombuffer(rel.payload, dtype=np.float32), head))
    own = epsilon_of([plan.plan_event()], plan.delta).epsilon  # below --epsilon only when the noise floor binds
    ledger = {"node_id": nd.node_id, "seq": rel.seq, "entry_hash": rel.entry_hash, "plan_id": plan.plan_id,
              "round_id": round_id}
    training = {"kind": "specialization", "private": True, "epsilon": own, "delta": plan.delta,
                "noise_multiplier": plan.noise_multiplier, "sampling_probability": plan.sampling_probability,
                "max_grad_norm": plan.max_grad_norm, "steps": plan.local_steps, "lr": plan.lr, "optimizer": TRAINING.optimizer,
                "max_pairs_per_contributor": plan.max_pairs_per_contributor}
    spec = {"community": nd.name, "base": {"source": base.source, "sha256": base.sha256,
                                           "federation_id": base.federation_id}, "holdout_share": holdout, "ledger": ledger}
    weights = _save(nd, head, {"featurizer": base.config["featurizer"], "training": training, "specialization": spec},
                    out, run, rel.seq)
    return {"out": str(weights), "epsilon": own, "noise_multiplier": plan.noise_multiplier,
            "spent_before": spent_before, "spent_after": spent_after, "epsilon_cap": policy.epsilon_cap,
            "delta": policy.delta, "ledger_seq": rel.seq, "entry_hash": rel.entry_hash, "plan_id": plan.plan_id,
            "holdout_share": holdout, "base": spec["base"]}


def _save(nd, head, config: dict, out: Path, run: str, seq: int) -> Path:
    """Write the released model at `out`; when that fails (disk full, the folder gone since the probe), the
    spend is committed already, so keep the model in the node's folder and say where, not lose it."""
    try:
        return save_model(head, config, out)
    except OSError as e:
        rescue = save_model(head, config, Path(nd.path) / "specialized" / f"{run}.safetensors")
        raise SpecializeError(f"{out}: cannot write the model ({e.strerror or e}) after its release was committed "
                              f"(ledger entry {seq}); it is saved at {rescue} instead") from None


def _train(base: BaseModel, data, plan, progress: bool) -> np.ndarray:
    """DP-SGD from the base model's weights (node/dpsgd `train_dp`, one thread as node/training.py); the
    trained parameter vector. `progress`: a rich bar on stderr, one tick per non-empty step."""
    import torch

    from node.dpsgd import train_dp

    head = head_from_config(base.head.arch())
    head.load_state_dict(base.head.state_dict())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _Bar(plan.local_steps, progress) as ticks:
            train_dp(head, data, noise_multiplier=plan.noise_multiplier, max_grad_norm=plan.max_grad_norm,
                     sampling_probability=plan.sampling_probability, steps=plan.local_steps, lr=plan.lr,
                     step_times=ticks)
    finally:
        torch.set_num_threads(threads)
    return state_to_vector(head)


class _Bar(list):
    """A rich progress bar fed by `train_dp`'s `step_times` list (each append is one step)."""

    def __init__(self, total: int, enabled: bool):
        super().__init__()
        self.total, self.bar, self.task = total, None, None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("DP-SGD specialisation"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)

    def __enter__(self) -> "_Bar":
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task("steps", total=self.total)
        return self

    def append(self, seconds: float) -> None:  # type: ignore[override]
        """One step done (an empty Poisson batch is not reported by train_dp; the bar completes at the end)."""
        super().append(seconds)
        if self.bar is not None and self.task is not None:
            self.bar.advance(self.task)

    def __exit__(self, *exc) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=self.total)
            self.bar.stop()
