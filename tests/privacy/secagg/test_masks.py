"""crypto.add_masks: the uint32 mask accumulation equals the reference sum mod 2^32 with `prg`'s keystream,
and masks added then removed leave the input unchanged."""

import os

import numpy as np

from privacy.secagg.constants import MOD
from privacy.secagg.crypto import add_masks, prg


def test_add_masks_equals_the_uint64_reference():
    rng = np.random.default_rng(0)
    y = rng.integers(0, MOD, 1001, dtype=np.uint64)
    plus, minus = [os.urandom(32) for _ in range(3)], [os.urandom(32) for _ in range(4)]
    want = y.copy()
    for s in plus:
        want = (want + prg(s, y.size)) % MOD
    for s in minus:
        want = (want + (MOD - prg(s, y.size))) % MOD
    got = add_masks(y, plus, minus)
    assert got.dtype == np.uint64 and np.array_equal(got, want)


def test_masks_cancel_and_inputs_above_the_modulus_are_reduced():
    seeds = [os.urandom(32) for _ in range(5)]
    y = np.arange(10, dtype=np.uint64) + np.uint64(MOD)  # y mod 2^32 = 0..9
    masked = add_masks(y, seeds, [])
    assert not np.array_equal(masked, np.arange(10))
    assert np.array_equal(add_masks(masked, [], seeds), np.arange(10, dtype=np.uint64))
