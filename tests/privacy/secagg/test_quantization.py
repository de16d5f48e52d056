"""Quantization: stochastic rounding is unbiased."""

import numpy as np

from privacy.secagg.quantization import dequantize_sum, quantize


def test_quantization_is_unbiased():
    rng = np.random.default_rng(3)
    x = np.full(200_000, 0.123456)
    q = quantize(x, 1.0, 16, rng)
    assert abs(dequantize_sum(q, 1, 1.0, 16).mean() - 0.123456) < 0.002
