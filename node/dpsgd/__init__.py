"""User-level DP-SGD for the reward head: one clipped gradient per contributor (ARCHITECTURE.md invariant 4).

    data.py      the contributor tensor layout (one example = one person, pairs capped per person)
    loss.py      the per-contributor Bradley-Terry loss
    train.py     the DP loop (Poisson sampling, clipping by Opacus, `add_noise`: the one place noise is drawn)
    persons.py   each person's clipped gradient materialised (distributed DP quantises them one by one)
    baseline.py  the non-private baseline on the same layout and loss
    metrics.py   pair accuracy
    result.py    the run record (`TrainResult.dp_event()`) and helpers both loops share
"""

from node.dpsgd.baseline import train_nonprivate
from node.dpsgd.data import ContributorTensors, build_contributor_tensors, contributor_tensors_from_arrays
from node.dpsgd.loss import ContributorBTLoss
from node.dpsgd.metrics import pair_accuracy
from node.dpsgd.persons import clipped_person_gradients
from node.dpsgd.result import TrainResult
from node.dpsgd.train import add_noise, train_dp

__all__ = [
    "ContributorBTLoss",
    "ContributorTensors",
    "TrainResult",
    "add_noise",
    "build_contributor_tensors",
    "clipped_person_gradients",
    "contributor_tensors_from_arrays",
    "pair_accuracy",
    "train_dp",
    "train_nonprivate",
]
