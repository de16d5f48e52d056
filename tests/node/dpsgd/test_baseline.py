"""The non-private baseline learns on the same layout and loss; pair_accuracy measures it."""

import torch

from model.reward_model import RewardHead
from node.dpsgd import pair_accuracy, train_nonprivate
from tests.node.dpsgd.synthetic import random_data


def test_nonprivate_learns():
    torch.manual_seed(0)
    data = random_data(600, 8, dim=16, seed=2, U=400)
    head = RewardHead(16, hidden=16)
    r = train_nonprivate(head, data, steps=60, batch_size=128, lr=1e-2)
    assert pair_accuracy(head, data) > 0.8
    assert not r.private and r.noise_multiplier == 0.0
