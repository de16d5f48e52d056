"""The contributor tensor layout: pairs capped per contributor, texts shared, sets pooled."""

import torch

from model.features import HashedNgramFeaturizer
from node.dpsgd import ContributorTensors, build_contributor_tensors
from node.pairs import Pair
from tests.node.dpsgd.synthetic import random_data


def test_cap_and_build_from_pairs():
    pairs = [Pair(f"u{i % 3}", "p", f"good {i}", f"bad {i}") for i in range(20)]
    data = build_contributor_tensors(pairs, HashedNgramFeaturizer(dim=32), max_pairs_per_contributor=4, seed=0)
    assert data.n_contributors == 3 and data.max_pairs == 4 and data.n_pairs == 12
    assert data.dropped_pairs == 8
    assert data.contributors == ["u0", "u1", "u2"]
    pooled = ContributorTensors.concat([data, random_data(2, 2, dim=32)])
    assert pooled.n_contributors == 5 and pooled.max_pairs == 4 and pooled.n_pairs == 16
    x = pooled.inputs(torch.tensor([0, 4]), "r_pr")
    assert x.shape == (2, 8, 64)
