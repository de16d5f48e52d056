"""`cairn model eval`: pairwise accuracy of a reward model on any importable feedback file.

Accuracy = fraction of strict-preference pairs (ties and both-bad excluded, node/pairs.py) where
the model scores the preferred response higher; equal scores count as half right.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from node.features import featurizer_from_config
from node.importers import RecordError, read_records
from node.pairs import eval_pairs
from node.reward_model import load_model, score


class EvalError(Exception):
    pass


def model_path(path: Path) -> Path:
    """A model file, a model directory, or a bundle (its model/ folder)."""
    path = Path(path)
    if (path / "manifest.pb").exists():
        from protos import bundle_pb2

        listed = {f.path for f in bundle_pb2.BundleManifest.FromString((path / "manifest.pb").read_bytes()).files}
        if "model/model.safetensors" not in listed:
            raise EvalError(f"{path}: this bundle's manifest lists no model (no training round was applied)"
                            + ("; the model/ folder there is not part of it" if (path / "model").exists() else ""))
        return path / "model" / "model.safetensors"
    return path


def evaluate(model: Path, data: Path, fmt: str | None = None) -> dict:
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
