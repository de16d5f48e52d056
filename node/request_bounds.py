"""Every value a coordinator sends with a training round, checked against the policy's bounds before any work.

A coordinator is not trusted with the node's resources any more than with its privacy (ARCHITECTURE.md
invariant 3): a round's sizes (rounds, local steps, sampling rate), the featurizer and head it names
(dimension, hidden width) and the global model it sends (length, finite weights) are validated here,
against `privacy/policy.py`'s bounds (max_rounds, max_local_steps, max_feature_dim, max_hidden), before
the store is read, a featurizer or head is built, or a ledger entry is written. A value out of bounds or
of the wrong type is a refusal naming the field, never a traceback; a NaN global model is refused
rather than trained from (it would give a NaN update that is released and charged).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

MAX_PAIRS_PER_CONTRIBUTOR = 10_000  # most training pairs one person may give a plan
MAX_ID_CHARS = 200  # federation ids are short public labels
HEAD_COMBINES = {"r": 1, "r_pr": 2}  # model/reward_model.py COMBINES (not imported: that imports torch)
HASHED_NAME, MINILM_NAMES = "hashed-ngram", ("all-MiniLM-L6-v2", "minilm")


class TrainingRefused(Exception):
    """The node will not train this round; the message names the rule."""


def _num(v: Any) -> bool:
    """A finite real number, not a bool (an int too large for a float is refused, not an OverflowError)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _int_in(v: Any, lo: int, hi: int) -> bool:
    """An exact int (not a bool, not a float such as 64.0: sizes flow into array shapes and ledger ids) in [lo, hi]."""
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def request_problem(request, policy=None) -> str | None:
    """Why a training request's values are refused by rule (None when acceptable), naming the field:
    bounded by the policy (defaults when None) before any calibration, so a hostile plan cannot pin the CPU."""
    from privacy.policy import OPTIONAL_DEFAULTS

    max_rounds = policy.max_rounds if policy is not None else OPTIONAL_DEFAULTS["max_rounds"]
    max_steps = policy.max_local_steps if policy is not None else OPTIONAL_DEFAULTS["max_local_steps"]
    if not (isinstance(request.federation_id, str) and 0 < len(request.federation_id) <= MAX_ID_CHARS
            and request.federation_id.isprintable()):
        return f"field 'federation_id' must be a non-empty printable string of at most {MAX_ID_CHARS} characters"
    if not _int_in(request.round, 1, max_rounds):
        return f"field 'round' must be an integer in [1, {max_rounds}], got {request.round!r}"
    if not _int_in(request.rounds, 1, max_rounds):
        return f"field 'rounds' must be an integer in [1, {max_rounds}] (policy rule max_rounds), got {request.rounds!r}"
    if request.round > request.rounds:
        return f"field 'round' {request.round} is past the plan's {request.rounds} round(s)"
    if not _int_in(request.local_steps, 1, max_steps):
        return (f"field 'local_steps' must be an integer in [1, {max_steps}] (policy rule max_local_steps), "
                f"got {request.local_steps!r}")
    if not (_num(request.sampling_rate) and 0 < request.sampling_rate <= 1):
        return f"field 'sampling_rate' must be in (0, 1], got {request.sampling_rate!r}"
    if not (_num(request.epsilon) and request.epsilon > 0):
        return f"field 'epsilon' must be finite and > 0, got {request.epsilon!r}"
    if not (_num(request.max_grad_norm) and request.max_grad_norm > 0):
        return f"field 'max_grad_norm' must be finite and > 0, got {request.max_grad_norm!r}"
    if not (_num(request.lr) and 0 < request.lr <= 100):
        return f"field 'lr' must be in (0, 100], got {request.lr!r}"
    if not _int_in(request.max_pairs_per_contributor, 1, MAX_PAIRS_PER_CONTRIBUTOR):
        return (f"field 'max_pairs_per_contributor' must be an integer in [1, {MAX_PAIRS_PER_CONTRIBUTOR}], "
                f"got {request.max_pairs_per_contributor!r}")
    return None


MAX_JSON_CHARS = 10_000  # a featurizer or head config is a few hundred characters


def _json_object(cfg: dict, key: str) -> dict:
    raw = cfg.get(key)
    if isinstance(raw, (str, bytes)) and len(raw) > MAX_JSON_CHARS:
        raise TrainingRefused(f"training request: field {key!r} is longer than {MAX_JSON_CHARS} characters")
    try:
        doc = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; nesting past the stack: RecursionError
        raise TrainingRefused(f"training request: field {key!r} is not JSON") from None
    if not isinstance(doc, dict):
        raise TrainingRefused(f"training request: field {key!r} must be a JSON object, got {type(doc).__name__}")
    return doc


def featurizer_problem(doc: dict, policy) -> str | None:
    """Why a featurizer config is refused (None when acceptable): a known name, `dim` within
    policy.max_feature_dim, n-gram sizes and salt bounded; checked before anything is built."""
    name = doc.get("name")
    dim = doc.get("dim", 384)
    if not isinstance(name, str):
        return f"field 'featurizer.name' must be {HASHED_NAME!r} or {MINILM_NAMES[0]!r}, got {name!r}"
    if name == HASHED_NAME:
        if not _int_in(dim, 8, policy.max_feature_dim):
            return (f"field 'featurizer.dim' must be an integer in [8, {policy.max_feature_dim}] "
                    f"(policy rule max_feature_dim), got {dim!r}")
        for k, lo, hi in (("word_ngrams", 0, 4), ("char_ngrams", 0, 8)):
            if k in doc and not _int_in(doc[k], lo, hi):
                return f"field 'featurizer.{k}' must be an integer in [{lo}, {hi}], got {doc[k]!r}"
        if not (isinstance(doc.get("salt", ""), str) and len(doc.get("salt", "")) <= MAX_ID_CHARS):
            return f"field 'featurizer.salt' must be a string of at most {MAX_ID_CHARS} characters"
        if not isinstance(doc.get("lowercase", True), bool):
            return "field 'featurizer.lowercase' must be true or false"
        return None
    if name in MINILM_NAMES:
        if not _int_in(dim, 384, 384):
            return f"field 'featurizer.dim' must be 384 for all-MiniLM-L6-v2, got {dim!r}"
        msl = doc.get("max_seq_length")
        if msl is not None and not _int_in(msl, 1, 512):
            return f"field 'featurizer.max_seq_length' must be an integer in [1, 512], got {msl!r}"
        return None
    return f"field 'featurizer.name' must be {HASHED_NAME!r} or {MINILM_NAMES[0]!r}, got {name!r}"


def head_parameter_count(arch: dict) -> int:
    """Length of the head's flat parameter vector (model/reward_model.py RewardHead: fc1 then fc2)."""
    inp = int(arch["in_dim"]) * HEAD_COMBINES[arch.get("combine", "r_pr")]
    hidden = int(arch.get("hidden", 256))
    return inp * hidden + hidden + hidden + 1


def head_problem(arch: dict, feature_dim: int, policy) -> str | None:
    """Why a head architecture is refused (None when acceptable): an MLP on the featurizer's dimension,
    its hidden width within policy.max_hidden."""
    for k in ("type", "combine"):
        if k in arch and not isinstance(arch[k], str):
            return f"field 'head.{k}' must be a string, got {arch[k]!r}"
    if arch.get("type", "mlp") != "mlp":
        return f"field 'head.type' must be 'mlp', got {arch.get('type')!r}"
    if not _int_in(arch.get("in_dim"), feature_dim, feature_dim):
        return f"field 'head.in_dim' must be the featurizer's dimension {feature_dim}, got {arch.get('in_dim')!r}"
    hidden = arch.get("hidden", 256)
    if not _int_in(hidden, 1, policy.max_hidden):
        return f"field 'head.hidden' must be an integer in [1, {policy.max_hidden}] (policy rule max_hidden), got {hidden!r}"
    if arch.get("combine", "r_pr") not in HEAD_COMBINES:
        return f"field 'head.combine' must be one of {sorted(HEAD_COMBINES)}, got {arch.get('combine')!r}"
    return None


def global_model_problem(arrays: list, expected: int) -> str | None:
    """Why the global model sent with a round is refused (None when acceptable): one 1-D float vector
    of the head's length, every weight finite."""
    if len(arrays) != 1:
        return f"field 'arrays' must hold exactly one vector (the global model), got {len(arrays)}"
    v = arrays[0]
    if not isinstance(v, np.ndarray) or v.ndim != 1 or v.dtype.kind != "f":
        return "field 'arrays' must be a 1-D float vector (the global model)"
    if v.shape[0] != expected:
        return f"field 'arrays' (the global model) has length {v.shape[0]}, the head has {expected} parameters"
    if not np.isfinite(v).all():
        return "field 'arrays' (the global model) holds NaN or infinite weights"
    return None


def validate_train(policy, cfg: dict, arrays: list, featurizer_key: str = "featurizer", head_key: str = "head"):
    """The checked (request, featurizer config, head architecture, global vector) of a train message,
    or TrainingRefused naming the field. `cfg`: the message's config record as a dict; `arrays`: its
    numpy arrays. Nothing is built or read before every value has passed."""
    from node.training import TrainRequest

    try:
        request = TrainRequest.from_config(cfg)
    except (TypeError, ValueError) as e:
        raise TrainingRefused(f"training request: malformed config ({e})") from None
    if problem := request_problem(request, policy):
        raise TrainingRefused(f"training request: {problem}")
    feat = _json_object(cfg, featurizer_key)
    if problem := featurizer_problem(feat, policy):
        raise TrainingRefused(f"training request: {problem}")
    head = _json_object(cfg, head_key)
    if problem := head_problem(head, int(feat.get("dim", 384)), policy):
        raise TrainingRefused(f"training request: {problem}")
    if problem := global_model_problem(list(arrays), head_parameter_count(head)):
        raise TrainingRefused(f"training request: {problem}")
    return request, feat, head, np.asarray(arrays[0], dtype=np.float32)
