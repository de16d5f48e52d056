"""Quantization: real vectors to integers that can be masked and summed mod 2^32, and back.

Owns the only lossy step of secure aggregation. Stochastic rounding is unbiased (E[q(x)] maps back
to x), so the dequantized sum is an unbiased estimate of the true sum (as in Bonawitz et al. 2017,
https://eprint.iacr.org/2017/281, section 3, and Flower's secure_aggregation/quantization.py).
"""

from __future__ import annotations

import numpy as np


def quantize(x: np.ndarray, clip: float, levels: int, rng: np.random.Generator) -> np.ndarray:
    """Clip to [-clip, clip] and map to {0..levels} with unbiased stochastic rounding."""
    y = (np.clip(x, -clip, clip) + clip) * (levels / (2 * clip))
    low = np.floor(y)
    return (low + (rng.random(y.shape) < (y - low))).astype(np.uint64)


def dequantize_sum(total: np.ndarray, n: int, clip: float, levels: int) -> np.ndarray:
    """The real-valued sum of `n` quantized inputs whose integer sum is `total`."""
    return total.astype(np.float64) * (2 * clip / levels) - n * clip
