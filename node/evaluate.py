"""`cairn model eval` / `cairn model score`: a reward model (a model file or a bundle's) applied to text.

Accuracy = fraction of strict-preference pairs (ties and both-bad excluded, node/pairs.py) where
the model scores the preferred response higher; equal scores count as half right. Everything runs
where the text is: nothing here sends or writes anything (ARCHITECTURE.md invariant 1).
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
