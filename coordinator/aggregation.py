"""Combining the nodes' DP model updates.

- `fedavg`: the mean of updates (McMahan et al. 2017). Nodes are weighted equally: weighting by
  contributor counts would need those counts, which nodes keep to themselves.
- `coordinate_median` and `trimmed_mean`: robust alternatives (Yin et al. 2018, "Byzantine-robust
  distributed learning: towards optimal statistical rates", https://arxiv.org/abs/1803.01498) against a node sending a poisoned
  update. They need every update in the clear, so they cannot run under secure aggregation, where
  the coordinator only learns the sum.
"""

from __future__ import annotations

import numpy as np

AGGREGATORS = ("fedavg", "median", "trimmed_mean")


def fedavg(updates: list[np.ndarray]) -> np.ndarray:
    """The coordinate-wise mean of the updates, each node weighted equally."""
    return np.mean(np.stack(updates), axis=0)


def coordinate_median(updates: list[np.ndarray]) -> np.ndarray:
    """The coordinate-wise median of the updates (Yin et al. 2018, https://arxiv.org/abs/1803.01498)."""
    return np.median(np.stack(updates), axis=0)


def trimmed_mean(updates: list[np.ndarray], trim: int | None = None) -> np.ndarray:
    """Drop the `trim` largest and smallest values per coordinate (default: 1 each side when n >= 3)."""
    stack = np.sort(np.stack(updates), axis=0)
    n = stack.shape[0]
    trim = (1 if n >= 3 else 0) if trim is None else trim
    if 2 * trim >= n:
        raise ValueError(f"cannot trim {trim} from each side of {n} updates")
    return stack[trim : n - trim].mean(axis=0)


def aggregate(updates: list[np.ndarray], method: str = "fedavg") -> np.ndarray:
    """Combine the nodes' updates with `method` (one of AGGREGATORS)."""
    if not updates:
        raise ValueError("no updates to aggregate")
    if method == "fedavg":
        return fedavg(updates)
    if method == "median":
        return coordinate_median(updates)
    if method == "trimmed_mean":
        return trimmed_mean(updates)
    raise ValueError(f"unknown aggregation {method!r} (known: {', '.join(AGGREGATORS)})")
