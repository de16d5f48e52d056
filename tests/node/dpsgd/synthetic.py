"""Small synthetic contributor sets with a planted linear preference, for the DP-SGD tests."""

import numpy as np

from node.dpsgd import ContributorTensors, contributor_tensors_from_arrays


def random_data(n_contrib, pairs_each, dim=16, seed=0, U=200, cap=None) -> ContributorTensors:
    """`n_contrib` contributors with `pairs_each` pairs each (or a list of per-contributor counts)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(U, dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    w = rng.normal(size=dim)
    rows = []
    for k in (pairs_each if isinstance(pairs_each, list) else [pairs_each] * n_contrib):
        r = []
        for _ in range(k):
            a, b, p = (int(v) for v in rng.integers(0, U, 3))
            if X[a] @ w < X[b] @ w:
                a, b = b, a
            r.append((p, a, b, 1.0, 1.0))
        rows.append(r)
    return contributor_tensors_from_arrays(X, rows, cap or max(max(len(r) for r in rows), 1))
