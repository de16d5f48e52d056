"""The reward model: its architecture, its files and its scoring; shared by node and coordinator.

Owns the head, the flat parameter vectors that FedAvg and secure aggregation exchange, and the
model files of a bundle. The coordinator builds, averages and saves heads with this module and
nothing else from the node's side: it never sees text or features (ARCHITECTURE.md invariant 1).

A reward model is a frozen featurizer (model/features.py) plus a small trainable head:

    x(p, r) = [ r , p * r ]          (p, r: unit-norm prompt / response embeddings, * elementwise)
    score   = W2 · relu(W1 x + b1) + b2

`r` carries what the response says; `p * r` lets the score depend on how the response relates to
the prompt (it is the per-dimension contribution to cos(p, r)). The prompt embedding alone is not
an input: under the Bradley-Terry model only score differences between responses to the same
prompt matter, so a prompt-only term would cancel. (Bradley and Terry, "Rank Analysis of
Incomplete Block Designs: I. The Method of Paired Comparisons", Biometrika 39(3/4), 1952,
https://doi.org/10.2307/2334029: the model's defining relation P(i over j) = pi_i / (pi_i + pi_j),
which with pi = exp(score) is P(a over b) = sigmoid(score(a) - score(b)).) `combine="r"` drops the
prompt (then the head is exactly in_dim -> hidden -> 1).

Files: `save_model(head, config, path)` writes `model.safetensors` and `model.json` (architecture,
featurizer config, training info) side by side; `load_model(path)` takes either file or their
directory. `state_to_vector` / `vector_to_state` flatten parameters into one float32 vector in a
fixed order (FedAvg and secure aggregation work on such vectors).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "COMBINES",
    "RewardHead",
    "combine_features",
    "save_model",
    "load_model",
    "score",
    "score_features",
    "state_to_vector",
    "vector_to_state",
    "head_from_config",
    "FORMAT",
]

FORMAT = "cairn-reward-model/1"
COMBINES = {"r": 1, "r_pr": 2}
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "model.json"


def combine_features(p: np.ndarray | torch.Tensor, r: np.ndarray | torch.Tensor, combine: str = "r_pr"):
    """Head input from prompt and response features (numpy or torch, any leading shape)."""
    if combine == "r":
        return r
    if combine == "r_pr":
        if isinstance(r, torch.Tensor):
            return torch.cat([r, p * r], dim=-1)
        return np.concatenate([r, p * r], axis=-1).astype(np.float32)
    raise ValueError(f"unknown combine {combine!r}; expected one of {sorted(COMBINES)}")


class RewardHead(nn.Module):
    """MLP scoring head. `forward(x)` maps combined features [..., input_dim] to scores [...].

    Only `nn.Linear` layers and a parameter-free activation, so that Opacus' ghost clipping
    computes exact per-sample (per-contributor) gradient norms for inputs shaped [B, T, input_dim].
    """

    def __init__(self, in_dim: int, hidden: int = 256, combine: str = "r_pr"):
        super().__init__()
        if combine not in COMBINES:
            raise ValueError(f"unknown combine {combine!r}; expected one of {sorted(COMBINES)}")
        self.in_dim = int(in_dim)
        self.hidden = int(hidden)
        self.combine = combine
        self.input_dim = self.in_dim * COMBINES[combine]
        self.fc1 = nn.Linear(self.input_dim, self.hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(self.hidden, 1)

    def arch(self) -> dict[str, Any]:
        """The architecture as recorded in model.json (`head_from_config` rebuilds the head)."""
        return {"type": "mlp", "in_dim": self.in_dim, "hidden": self.hidden, "combine": self.combine, "activation": "relu"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores [...] for combined features [..., input_dim]."""
        return self.fc2(self.act(self.fc1(x))).squeeze(-1)

    def score_pr(self, p: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Scores for prompt / response features (combined as this head's `combine` says)."""
        return self(combine_features(p, r, self.combine))


def head_from_config(arch: dict[str, Any]) -> RewardHead:
    """A freshly initialised head with the architecture `arch` (`RewardHead.arch()`)."""
    if arch.get("type", "mlp") != "mlp":
        raise ValueError(f"unknown head type {arch.get('type')!r}")
    return RewardHead(int(arch["in_dim"]), int(arch.get("hidden", 256)), arch.get("combine", "r_pr"))


# ---------------------------------------------------------------------------------------------
# Flat parameter vectors (FedAvg, secure aggregation)


def _state(head_or_state) -> "OrderedDict[str, torch.Tensor]":
    if isinstance(head_or_state, nn.Module):
        return OrderedDict((k, v) for k, v in head_or_state.state_dict().items())
    return OrderedDict(head_or_state)


def state_to_vector(head_or_state) -> np.ndarray:
    """All parameters as one float32 vector, in `state_dict()` order."""
    st = _state(head_or_state)
    if not st:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([v.detach().cpu().reshape(-1).to(torch.float32).numpy() for v in st.values()]).astype(np.float32)


def vector_to_state(vec: np.ndarray | Sequence[float], like) -> "OrderedDict[str, torch.Tensor]":
    """Inverse of `state_to_vector`: tensors shaped like `like` (a head or a state dict).

    Use `head.load_state_dict(vector_to_state(v, head))` to load a vector into a head.
    """
    st = _state(like)
    vec = np.asarray(vec, dtype=np.float32).reshape(-1)
    n = sum(v.numel() for v in st.values())
    if vec.size != n:
        raise ValueError(f"parameter vector has {vec.size} entries, the model has {n}")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    i = 0
    for k, v in st.items():
        out[k] = torch.from_numpy(vec[i : i + v.numel()].copy()).reshape(v.shape).to(v.dtype)
        i += v.numel()
    return out


# ---------------------------------------------------------------------------------------------
# Files


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix == ".safetensors":
        return p, p.with_suffix(".json")
    if p.suffix == ".json":
        return p.with_suffix(".safetensors"), p
    return p / WEIGHTS_NAME, p / CONFIG_NAME


def save_model(head: RewardHead, config: dict[str, Any], path: str | Path) -> Path:
    """Write weights (safetensors) and config (JSON) side by side; returns the weights path.

    `path`: a directory (files `model.safetensors` + `model.json`) or a `*.safetensors` file name
    (the JSON gets the same stem). `config` should hold at least `featurizer` (the featurizer's
    `config()`); training info (`training`: DP parameters, steps, data sizes, ...) is recorded as
    given. The architecture is taken from the head itself.
    """
    from safetensors.torch import save_file

    wpath, cpath = _paths(path)
    wpath.parent.mkdir(parents=True, exist_ok=True)
    cfg = dict(config)
    cfg["format"] = FORMAT
    cfg["head"] = head.arch()
    cfg["parameters"] = int(sum(p.numel() for p in head.parameters()))
    if "featurizer" in cfg and int(cfg["featurizer"].get("dim", head.in_dim)) != head.in_dim:
        raise ValueError(f"featurizer dim {cfg['featurizer'].get('dim')} != head in_dim {head.in_dim}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    tmp_w, tmp_c = wpath.with_name(wpath.name + ".tmp"), cpath.with_name(cpath.name + ".tmp")
    save_file(tensors, str(tmp_w), metadata={"format": FORMAT})
    tmp_c.write_text(json.dumps(cfg, indent=2, sort_keys=True, default=_json_default) + "\n")
    tmp_w.replace(wpath)
    tmp_c.replace(cpath)
    return wpath


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_model(path: str | Path) -> tuple[RewardHead, dict[str, Any]]:
    """Load `(head, config)` from a `.safetensors` file, its `.json`, or their directory."""
    from safetensors.torch import load_file

    wpath, cpath = _paths(path)
    if not wpath.exists():
        raise FileNotFoundError(f"no model weights at {wpath}")
    if not cpath.exists():
        raise FileNotFoundError(f"no model config at {cpath} (expected next to {wpath.name})")
    cfg = json.loads(cpath.read_text())
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{cpath}: format {cfg.get('format')!r}, expected {FORMAT!r}")
    head = head_from_config(cfg["head"])
    head.load_state_dict(load_file(str(wpath)))
    head.eval()
    return head, cfg


# ---------------------------------------------------------------------------------------------
# Scoring


@torch.no_grad()
def score_features(head: RewardHead, p: np.ndarray, r: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Scores for feature rows (p[i], r[i])."""
    head.eval()
    out = []
    for i in range(0, len(r), batch_size):
        pt = torch.as_tensor(np.asarray(p[i : i + batch_size], dtype=np.float32))
        rt = torch.as_tensor(np.asarray(r[i : i + batch_size], dtype=np.float32))
        out.append(head.score_pr(pt, rt).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, dtype=np.float32)


def score(head: RewardHead, featurizer, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """Reward scores for (prompt, response) text pairs; higher is better.

    Each distinct text is encoded once; pass a `model.features.CachedEncoder` to encode through a cache.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    uniq = list(dict.fromkeys([*prompts, *responses]))
    pos = {t: i for i, t in enumerate(uniq)}
    feats = featurizer.encode(uniq)
    p = feats[[pos[t] for t in prompts]]
    r = feats[[pos[t] for t in responses]]
    return score_features(head, p, r)
