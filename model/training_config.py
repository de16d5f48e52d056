"""The ONE training configuration: every default of a federated DP-SGD training in one frozen record.

A node's local round (node/training.py: `TrainRequest`), the coordinator's request
(coordinator/server_app.py: `FederationConfig`) and the benchmarks (bench/) read their defaults from
`TRAINING` here, so the numbers the README reports were measured with the defaults that ship.
The privacy parameters themselves (sampling rate, noise multiplier) are never defaults: each node
derives them from its own policy and budget (ARCHITECTURE.md invariant 3).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrainingConfig", "TRAINING"]


@dataclass(frozen=True)
class TrainingConfig:
    """Defaults measured by bench/reward_model.py (3 communities x 2,000 contributors, epsilon 8: 96%
    of the non-private accuracy gain): large Poisson batches, a clipping norm below typical
    per-contributor gradient norms, DP-Adam, few rounds of many local steps."""

    rounds: int = 3  # federated rounds
    local_steps: int = 100  # DP-SGD steps per node per round
    epsilon: float = 8.0  # epsilon the whole training may spend per node (each node caps it by its policy)
    expected_batch: int = 400  # contributors per step of the NON-private baseline and the benchmarks
    sampling_rate: float = 0.2  # DP-SGD Poisson rate per step (capped by each node's policy; never batch / N,
    # which would publish N: with 2,000 contributors it is the measured batch of 400)
    lr: float = 5e-3  # step size on the mean gradient
    max_grad_norm: float = 0.02  # per-contributor L2 clipping norm C
    max_pairs_per_contributor: int = 8  # contribution bound: pairs kept per contributor
    optimizer: str = "adam"  # adam, sgd or sgdm
    hidden: int = 256  # hidden width of the reward head


TRAINING = TrainingConfig()
