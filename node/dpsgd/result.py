"""What one training run reports (private or not), and the pieces both training loops share.

A private run's ledger event is built from it by `TrainResult.dp_event`, through
`privacy.events.dpsgd_event`, the one builder of the DP-SGD event (ARCHITECTURE.md invariant 2:
the event a node accounts is exactly the training it ran).
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from typing import Any

import torch

from privacy.events import DpEvent, dpsgd_event

__all__ = ["TrainResult", "make_optimizer", "seeded_generator"]


@dataclass
class TrainResult:
    """Parameters and throughput of one call to `train_dp` or `train_nonprivate`."""

    steps: int
    noise_multiplier: float
    sampling_probability: float
    max_grad_norm: float
    examples_per_sec: float  # real pairs processed per second (a contributor's P pairs count P)
    contributors_per_sec: float
    seconds: float
    private: bool
    n_contributors: int
    max_pairs_per_contributor: int
    lr: float
    optimizer: str
    final_loss: float = float("nan")
    grad_sample_mode: str = "ghost"

    def dp_event(self) -> DpEvent:
        """SelfComposed(PoissonSampled(q, Gaussian(z*C, sensitivity C)), steps): what this private run released."""
        if not self.private:
            raise ValueError("a non-private run has no DP event")
        return dpsgd_event(self.sampling_probability, self.noise_multiplier, self.steps, self.max_grad_norm)

    def to_dict(self) -> dict[str, Any]:
        """Plain fields, for metrics and JSON."""
        return asdict(self)


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """adam, sgd (no momentum) or sgdm (momentum 0.9) over `params`."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.0, weight_decay=weight_decay)
    if name == "sgdm":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r} (adam, sgd, sgdm)")


def seeded_generator(seed: int | None) -> torch.Generator:
    """A torch Generator seeded with `seed`, or (None) with 63 fresh bits from `secrets`."""
    g = torch.Generator()
    g.manual_seed(int(seed) if seed is not None else secrets.randbits(63))
    return g
