"""Shamir sharing over Z_P, P = 2^256 + 297 (privacy/secagg/crypto.py): any t shares recover the secret,
fewer reveal nothing (a share is uniform whatever the secret)."""

import os
import random

import numpy as np
import pytest
import sympy

from privacy.secagg.constants import SecAggError
from privacy.secagg.crypto import SHAMIR_P, SHARE_LEN, combine, share


def test_the_field_is_the_least_prime_above_2_256():
    assert sympy.isprime(SHAMIR_P) and SHAMIR_P > 1 << 256
    assert sympy.nextprime(1 << 256) == SHAMIR_P


def test_any_t_shares_recover_the_secret_and_fewer_do_not():
    rnd = random.Random(0)
    for t, n in ((2, 2), (3, 5), (40, 69), (70, 101)):
        secret = os.urandom(32)
        shares = share(secret, t, n)
        assert len(shares) == n and all(len(s) == SHARE_LEN for s in shares)
        for _ in range(3):
            assert combine(rnd.sample(shares, t)) == secret
            assert combine(rnd.sample(shares, min(n, t + 1))) == secret
        if t > 2:  # t - 1 shares interpolate another polynomial: its value at 0 is not the secret
            assert combine(rnd.sample(shares, t - 1)) != secret


def test_all_ones_secret_and_zero_secret_round_trip():
    for secret in (b"\xff" * 32, b"\x00" * 32):
        assert combine(share(secret, 3, 4)[1:]) == secret


def test_a_single_share_is_uniform_whatever_the_secret():
    # t = 2: share i = s + a*i mod P with a uniform, so one share is uniform on Z_P for any s (Shamir 1979).
    for secret in (b"\x00" * 32, b"\xff" * 32):
        u = np.array([int.from_bytes(share(secret, 2, 3)[0][2:], "big") / SHAMIR_P for _ in range(3000)])
        assert abs(u.mean() - 0.5) < 0.02 and abs(u.var() - 1 / 12) < 0.01


def test_malformed_or_repeated_shares_are_refused():
    shares = share(os.urandom(32), 2, 3)
    with pytest.raises(SecAggError, match="repeat an index"):
        combine([shares[0], shares[0]])
    with pytest.raises(SecAggError, match="malformed"):
        combine([shares[0][:-1], shares[1]])
    with pytest.raises(SecAggError):
        share(b"short", 2, 3)


def test_hostile_shares_are_refused_not_interpolated():
    """Shares come back through the coordinator: index 0 (the secret's own point), a value >= P, a wrong length."""
    shares = share(os.urandom(32), 2, 3)
    with pytest.raises(SecAggError):
        combine([b"\0\0" + shares[0][2:], shares[1]])
    with pytest.raises(SecAggError):
        combine([shares[0][:2] + (SHAMIR_P + 1).to_bytes(SHARE_LEN - 2, "big"), shares[1]])
    with pytest.raises(SecAggError):
        combine([shares[0][:-1], shares[1]])


def test_a_short_share_plaintext_is_refused_by_the_channel():
    """A peer the coordinator controls seals a plaintext shorter than two shares: refused, not a crash
    (struct.error) nor truncated shares revealed later."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from privacy.secagg.crypto import _SHARES_AAD, open_shares

    key, nonce = os.urandom(32), os.urandom(12)
    for plain in (b"short", (1).to_bytes(8, "big") + (2).to_bytes(8, "big") + b"x" * 3):
        ct = nonce + AESGCM(key).encrypt(nonce, plain, _SHARES_AAD)
        with pytest.raises(SecAggError, match="share plaintext"):
            open_shares(key, ct, 1, 2)
