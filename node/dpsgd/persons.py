"""Per-person clipped gradients, materialised: what distributed DP quantises one person at a time.

Protects ARCHITECTURE.md invariant 4 (the unit of privacy is the contributor). DP-SGD (Abadi et al.
2016, Algorithm 1, https://arxiv.org/abs/1607.00133) with the contributor as the sampled unit
(McMahan et al. 2018, https://arxiv.org/abs/1710.06963): a person's gradient is the gradient of
their per-contributor Bradley-Terry loss (node/dpsgd/loss.py, the mean over their kept pairs) on the
current model, then clipped to L2 norm C. The local loop (node/dpsgd/train.py) never materialises
these (Opacus' ghost clipping gives only the clipped SUM); the distributed discrete Gaussian
(Kairouz, Liu & Steinke 2021, https://arxiv.org/abs/2102.06387, Algorithm 1) needs each clipped
vector on its own, to scale and round it before it is summed (privacy/distributed_dp.py
`quantize_person`). Computed with torch.func (vmap of grad), in chunks of bounded memory.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from model.reward_model import RewardHead
from node.dpsgd.data import ContributorTensors
from node.dpsgd.loss import ContributorBTLoss

__all__ = ["clipped_person_gradients", "clip_rows"]

CHUNK_FLOATS = 1 << 24  # gradient floats per chunk (64 MB in float32)


def clip_rows(g: np.ndarray, clip: float) -> np.ndarray:
    """Each row scaled to L2 norm at most `clip` (rows within the bound unchanged), float64."""
    g = np.asarray(g, dtype=np.float64)
    norms = np.linalg.norm(g, axis=1, keepdims=True)
    scale = np.ones_like(norms)
    over = norms > clip
    scale[over] = clip / norms[over]
    return g * scale


def clipped_person_gradients(head: RewardHead, data: ContributorTensors, idx, clip: float,
                             chunk: int | None = None) -> Iterator[np.ndarray]:
    """For the contributors `idx` (indices into `data`), each one's gradient of their own loss at
    `head`'s current parameters, flattened in `state_dict()` order (model/reward_model.py
    `state_to_vector`), clipped to L2 norm `clip`: yields float64 arrays [b, n_params], b <= chunk.
    A person with no real pair has gradient 0. The head is not changed."""
    from torch.func import functional_call, grad, vmap

    idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
    names = list(head.state_dict().keys())
    params = {k: v.detach() for k, v in head.named_parameters()}
    sizes = [head.state_dict()[k].numel() for k in names]
    total = sum(sizes)
    if chunk is None:
        chunk = max(1, CHUNK_FLOATS // max(1, total + 2 * data.max_pairs * head.input_dim))
    criterion = ContributorBTLoss(reduction="sum")

    def loss_one(p, x, target, weight):
        scores = functional_call(head, p, (x.unsqueeze(0),))
        return criterion(scores, target.unsqueeze(0), weight.unsqueeze(0))

    per_person = vmap(grad(loss_one), in_dims=(None, 0, 0, 0))
    was_training = head.training
    head.eval()  # no dropout or batch statistics in the head; eval keeps it a pure function
    try:
        for part in idx.split(chunk):
            if len(part) == 0:
                continue
            with torch.no_grad():
                x = data.inputs(part, head.combine)
            g = per_person(params, x, data.target[part], data.weight[part])
            flat = np.zeros((len(part), total), dtype=np.float64)
            pos = 0
            for k, n in zip(names, sizes):
                if k in g:
                    flat[:, pos:pos + n] = g[k].detach().reshape(len(part), -1).double().numpy()
                pos += n
            yield clip_rows(flat, clip)
    finally:
        head.train(was_training)
