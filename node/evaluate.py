"""`cairn model eval` / `cairn model score`: a reward model (a model file or a bundle's) applied to text.

Accuracy = fraction of strict-preference pairs (ties and both-bad excluded, node/pairs.py) where
the model scores the preferred response higher; equal scores count as half right. Everything runs
where the text is: nothing here sends or writes anything (ARCHITECTURE.md invariant 1). `compare_on_node`
scores models on a node's held-out people (node/specialize.py); its exact counts are for the operator only.
"""

from __future__ import annotations

from pathlib import Path

from model.features import featurizer_from_config
from model.reward_model import load_model, score
from node.importers import RecordError, read_records
from node.pairs import eval_pairs
from protos import bundle as bundle_format


class EvalError(Exception):
    """The model or the data cannot be evaluated (the message says which and why)."""


def model_path(path: Path) -> Path:
    """A model file, a model directory, or a bundle (its model/ folder)."""
    path = Path(path)
    if (path / bundle_format.MANIFEST_PB).exists():
        listed = {f.path for f in bundle_format.read_manifest(path).files}
        if bundle_format.MODEL not in listed:
            raise EvalError(f"{path}: this bundle's manifest lists no model (no training round was applied)"
                            + ("; the model/ folder there is not part of it" if (path / "model").exists() else ""))
        return path / bundle_format.MODEL
    return path


def evaluate(model: Path, data: Path, fmt: str | None = None) -> dict:
    """Pairwise accuracy of `model` on the strict preferences of the feedback file `data`."""
    head, cfg = load_model(model_path(model))
    featurizer = featurizer_from_config(cfg["featurizer"])
    records = []
    for item in read_records(data, fmt=fmt, contributor="eval"):
        if isinstance(item, RecordError):
            raise EvalError(str(item))
        records.append(item[1])
    pairs = eval_pairs(records, kinds=("pairwise",))
    if not pairs:
        return {"pairs": 0, "accuracy": None}
    prompts = [p.prompt for p in pairs]
    s_chosen = score(head, featurizer, prompts, [p.chosen for p in pairs])
    s_rejected = score(head, featurizer, prompts, [p.rejected for p in pairs])
    right = (s_chosen > s_rejected).sum() + 0.5 * (s_chosen == s_rejected).sum()
    return {"pairs": len(pairs), "accuracy": float(right / len(pairs))}


def score_responses(model: Path, prompt: str, responses: list[str]) -> list[float]:
    """Reward scores of `responses` to `prompt` under `model` (higher is better)."""
    head, cfg = load_model(model_path(model))
    scores = score(head, featurizer_from_config(cfg["featurizer"]), [prompt] * len(responses), list(responses))
    return [float(s) for s in scores]


def compare_on_node(nd, models: dict[str, Path], share: float | None = None) -> dict:
    """Pairwise accuracy of each model (name -> a model file or a bundle) on the community's held-out pairs:
    the strict preferences of the eligible people node/specialize.py holds out by keyed hash (never trained
    on by a specialisation). `share`: the held-out share; default the one a specialised model among `models`
    records (its model.json field 'specialization.holdout_share'), else node/specialize.py HOLDOUT_SHARE.
    Returns {"community", "pairs", "holdout_share", "accuracy": {name: A or None}}. The exact pair count is
    for the operator's terminal: nothing here writes it anywhere (it derives from the members' data)."""
    from node.base_model import SpecializeError, load_base
    from node.specialize import HOLDOUT_SHARE, encoder_for, held_out_pairs

    policy = nd.policy()
    loaded, recorded = {}, set()
    for name, path in models.items():
        try:  # untrusted files: checked against the node's policy before anything is allocated from them
            base = load_base(path, policy)
        except SpecializeError as e:
            raise EvalError(f"--{name}: {e}") from None
        loaded[name] = (base.head, base.config)
        spec = base.config.get("specialization")
        if spec is not None:
            s = spec.get("holdout_share") if isinstance(spec, dict) else None
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s < 1:
                raise EvalError(f"--{name}: {base.weights.with_suffix('.json')}: field 'specialization.holdout_share' "
                                f"must be a number in [0, 1), got {s!r}")
            recorded.add(float(s))
    if share is None:
        if len(recorded) > 1:
            raise EvalError(f"the specialised models record different held-out shares {sorted(recorded)} "
                            "(model.json field 'specialization.holdout_share'): compare them one at a time")
        share = recorded.pop() if recorded else HOLDOUT_SHARE
    out: dict = {"community": nd.name, "holdout_share": share, "accuracy": {}}
    with nd.open_store() as store:
        pairs = held_out_pairs(nd, store, share)
        out["pairs"] = len(pairs)
        prompts = [p.prompt for p in pairs]
        for name, (head, cfg) in loaded.items():
            if not pairs:
                out["accuracy"][name] = None
                continue
            enc = encoder_for(store, featurizer_from_config(cfg["featurizer"]))
            s_chosen = score(head, enc, prompts, [p.chosen for p in pairs])
            s_rejected = score(head, enc, prompts, [p.rejected for p in pairs])
            right = (s_chosen > s_rejected).sum() + 0.5 * (s_chosen == s_rejected).sum()
            out["accuracy"][name] = float(right / len(pairs))
    return out
