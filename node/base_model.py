"""The published reward model a specialisation starts from (node/specialize.py), or a model `cairn model eval
--node` scores (node/evaluate.py), read as untrusted input: a bundle's model/ (its files checked against
the bundle's manifest), a model directory, or a model .safetensors file with its .json beside it.

Every field is checked against this node's policy BEFORE anything is allocated from it (node/request_bounds.py,
as for a coordinator's round; ARCHITECTURE.md invariant 3): the config is bounded in size and nesting, the
featurizer and head must be ones the policy accepts (max_feature_dim, max_hidden), the weights file may not
be larger than the head it claims to hold, and the weights must be finite and of a trained head's magnitude.
Weights are read by safetensors only (no pickle). SpecializeError names the file and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.reward_model import CONFIG_NAME, WEIGHTS_NAME, RewardHead, head_from_config, state_to_vector
from model.reward_model import FORMAT as MODEL_FORMAT
from node.request_bounds import featurizer_problem, head_parameter_count, head_problem
from protos import bundle as bundle_format

MAX_CONFIG_BYTES = 1 << 20  # a model.json is a few kilobytes
WEIGHTS_SLACK = 1 << 20  # safetensors header and alignment, beyond 8 bytes (float64) per parameter
MAX_ABS_WEIGHT = 1e4  # a trained head's weights are O(1); larger ones only overflow DP-SGD into NaN


class SpecializeError(ValueError):
    """The base model cannot be specialised from, or the arguments are out of range; the message names
    the file and the field."""


@dataclass(frozen=True)
class BaseModel:
    """The published model a specialisation starts from, checked."""

    head: RewardHead
    config: dict
    weights: Path
    sha256: str  # of the weights file
    source: str  # "bundle" or "model"
    federation_id: str = ""  # the bundle's federation, when from a bundle


def model_paths(path: Path) -> tuple[Path, Path]:
    """(weights, config) of a model path, as model/reward_model.py `load_model` reads them."""
    if path.suffix in (".safetensors", ".json"):
        return path.with_suffix(".safetensors"), path.with_suffix(".json")
    return path / WEIGHTS_NAME, path / CONFIG_NAME


def bundle_model(bundle: Path) -> tuple[Path, str]:
    """(weights path, federation id) of a bundle's model, after checking the manifest lists the model and
    its config and that both files are the bytes it hashed. SpecializeError names the file and the field."""
    manifest = bundle_format.read_manifest(bundle)  # BundleError names manifest.pb
    listed = {f.path: f for f in manifest.files}
    pb = Path(bundle) / bundle_format.MANIFEST_PB
    for rel in (bundle_format.MODEL, bundle_format.MODEL_CONFIG):
        f = listed.get(rel)
        if f is None:
            raise SpecializeError(f"{pb}: field 'files' lists no {rel}: this bundle publishes no model "
                                  "(no training round was applied), so there is nothing to specialise")
        path = Path(bundle) / rel
        if not path.is_file():
            raise SpecializeError(f"{path}: missing, though {pb} field 'files' lists it")
        if bundle_format.sha256_file(path) != f.sha256:
            raise SpecializeError(f"{path}: its SHA-256 is not the one {pb} field 'files[{rel}].sha256' records "
                                  "(the file was changed after the bundle was signed)")
    return Path(bundle) / bundle_format.MODEL, manifest.federation_id


def _config(cpath: Path) -> dict:
    """The model's config, bounded in size and nesting (a hostile file is refused, never a traceback)."""
    size = cpath.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise SpecializeError(f"{cpath}: {size} bytes, more than a model config's {MAX_CONFIG_BYTES}: not a reward model's config")
    try:
        cfg = json.loads(cpath.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise SpecializeError(f"{cpath}: not JSON ({type(e).__name__}): not a reward model's config") from None
    if not isinstance(cfg, dict) or cfg.get("format") != MODEL_FORMAT:
        got = cfg.get("format") if isinstance(cfg, dict) else type(cfg).__name__
        raise SpecializeError(f"{cpath}: field 'format' is {got!r}, expected {MODEL_FORMAT!r}: not a Cairn reward model")
    return cfg


def load_base(source: Path, policy=None, features: str | None = None) -> BaseModel:
    """The reward model at `source` (a bundle, a model directory, or a model .safetensors/.json file),
    checked field by field: a Cairn reward model, a featurizer this node's policy accepts (and the one
    `features` names, when given), a head on that featurizer's dimension, finite weights of the shape
    its config describes. SpecializeError names the file and the field."""
    from safetensors.torch import load_file

    from privacy.policy import Policy

    source = Path(source)
    policy = policy or Policy(community="-")
    if not source.exists():
        raise SpecializeError(f"{source}: not found")
    fed = ""
    if source.is_dir() and (source / bundle_format.MANIFEST_PB).exists():
        weights, fed = bundle_model(source)
        kind = "bundle"
    elif source.is_dir() or source.suffix in (".safetensors", ".json"):
        weights, kind = model_paths(source)[0], "model"
    else:
        raise SpecializeError(f"{source}: not a reward model (expected a bundle directory, a model directory, or a "
                              "model .safetensors file with its .json beside it)")
    wpath, cpath = model_paths(weights)
    for p in (wpath, cpath):
        if not p.is_file():
            raise SpecializeError(f"{p}: missing (a reward model is {wpath.name} with {cpath.name} beside it)")
    cfg = _config(cpath)
    feat, arch = cfg.get("featurizer"), cfg.get("head")
    if not isinstance(feat, dict) or not isinstance(arch, dict):
        raise SpecializeError(f"{cpath}: fields 'featurizer' and 'head' must be JSON objects")
    problem = featurizer_problem(feat, policy) or head_problem(arch, int(feat.get("dim", 384)), policy)
    if problem:
        raise SpecializeError(f"{cpath}: {problem} (this node cannot featurize its data as the model was trained)")
    if features is not None:
        from model.presets import preset_config

        want = preset_config(features)
        if feat.get("name") != want["name"] or int(feat.get("dim", 384)) != want["dim"]:
            raise SpecializeError(f"{cpath}: field 'featurizer' is {feat.get('name')!r} (dim {feat.get('dim')}), this "
                                  f"node expects {want['name']!r} (dim {want['dim']}, --features {features}): a "
                                  "model cannot be fine-tuned on features of another space")
    most = 8 * head_parameter_count(arch) + WEIGHTS_SLACK
    if wpath.stat().st_size > most:  # before safetensors allocates whatever the file declares
        raise SpecializeError(f"{wpath}: {wpath.stat().st_size} bytes, more than the {most} the head {cpath.name} "
                              "field 'head' describes can take: not that head's weights")
    head = head_from_config(arch)
    try:
        head.load_state_dict(load_file(str(wpath)))
    except Exception as e:  # safetensors' own errors and torch's shape mismatches
        raise SpecializeError(f"{wpath}: does not hold the weights {cpath.name} field 'head' describes "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None
    vec = state_to_vector(head)
    if not np.isfinite(vec).all():
        raise SpecializeError(f"{wpath}: holds NaN or infinite weights")
    if vec.size and float(np.abs(vec).max()) > MAX_ABS_WEIGHT:
        raise SpecializeError(f"{wpath}: holds weights of magnitude above {MAX_ABS_WEIGHT:g}: not a trained reward head "
                              "(DP-SGD from it would overflow)")
    head.eval()
    return BaseModel(head, cfg, wpath, bundle_format.sha256_file(wpath), kind, fed)
