"""The per-contributor loss averages over a contributor's real pairs; padding counts for nothing."""

import pytest
import torch
import torch.nn.functional as F

from node.dpsgd import ContributorBTLoss


def test_mean_over_real_pairs_and_padding_ignored():
    scores = torch.tensor([[2.0, 0.5, 1.0, 0.0], [0.0, 9.0, 1.0, -9.0]])  # P=2: chosen then rejected
    target = torch.ones(2, 2)
    weight = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # contributor 1 has one real pair
    per = ContributorBTLoss("none")(scores, target, weight)
    bce = F.binary_cross_entropy_with_logits
    assert per[0] == pytest.approx(float((bce(torch.tensor(1.0), torch.tensor(1.0)) + bce(torch.tensor(0.5), torch.tensor(1.0))) / 2))
    assert per[1] == pytest.approx(float(bce(torch.tensor(-1.0), torch.tensor(1.0))))
    assert ContributorBTLoss("sum")(scores, target, weight) == pytest.approx(float(per.sum()))
    assert ContributorBTLoss("none")(scores, target, torch.zeros(2, 2)).abs().sum() == 0
    with pytest.raises(ValueError):
        ContributorBTLoss("max")(scores, target, weight)
