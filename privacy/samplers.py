"""Secure integer noise samplers: the only source of privacy noise for aggregate releases.

ARCHITECTURE.md invariant 6: noise for aggregates is integer-valued and drawn with cryptographic randomness;
never numpy, torch or `random` generators (numpy is used here only as a container).

We use OpenDP's samplers (OpenDP 0.16, Rust core):
* discrete Gaussian: Canonne, Kamath & Steinke 2020, "The Discrete Gaussian for Differential
  Privacy" (https://arxiv.org/abs/2004.00010), Algorithm 3 (rejection from a discrete Laplace, itself Algorithm 2, built on exact
  Bernoulli(exp(-gamma)) sampling, Algorithm 1), in exact rational arithmetic;
* discrete Laplace (two-sided geometric, pmf ~ exp(-|x|/t)): CKS 2020 Algorithm 2.
OpenDP's randomness comes from `fill_bytes`, which is OpenSSL's RAND_bytes or, in builds without
OpenSSL, rand's ThreadRng (ChaCha12 reseeded from the OS): a CSPRNG either way. These constructors
sit behind OpenDP's "contrib" flag (features not yet vetted by OpenDP's proof review). We enable it
only while building our two measurements (`_contrib_enabled`) and put the process-wide flag back as
it was, so importing this module changes nothing and no other OpenDP code here inherits the flag.

`sigma` is the discrete Gaussian's parameter (its variance is slightly below sigma^2); `scale` is
the discrete Laplace's t. One call draws a whole vector in one pass through Rust.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Iterator

import numpy as np
import opendp.prelude as dp
from opendp.mod import GLOBAL_FEATURES

# Noise is added in 64-bit integers; refuse parameters whose noise could come near overflow.
_MAX_PARAM = 2.0**40


def _check(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or not (0 < value <= _MAX_PARAM):
        raise ValueError(f"{name} must be finite, > 0 and <= 2^40, got {value!r}")
    return value


@contextlib.contextmanager
def _contrib_enabled() -> Iterator[None]:
    """OpenDP's "contrib" flag on for the block, then back as it was (OpenDP checks it when a
    measurement is built, not when it is invoked)."""
    was_on = "contrib" in GLOBAL_FEATURES
    dp.enable_features("contrib")
    try:
        yield
    finally:
        if not was_on:
            dp.disable_features("contrib")


@functools.lru_cache(maxsize=256)
def _vector_measurement(kind: str, param: float):
    domain = dp.vector_domain(dp.atom_domain(T="i64"))
    with _contrib_enabled():
        if kind == "gaussian":
            return dp.m.make_gaussian(domain, dp.l2_distance(T="i64"), scale=param)
        return dp.m.make_laplace(domain, dp.l1_distance(T="i64"), scale=param)


def _draw(kind: str, param: float, size: int | None):
    n = 1 if size is None else int(size)
    if n < 0:
        raise ValueError(f"size must be >= 0, got {size!r}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    out = np.asarray(_vector_measurement(kind, param)([0] * n), dtype=np.int64)
    return int(out[0]) if size is None else out


def discrete_gaussian(sigma: float, size: int | None = None):
    """Draw from N_Z(0, sigma^2) (CKS 2020, Alg. 3); an int, or an int64 array of `size` draws."""
    return _draw("gaussian", _check("sigma", sigma), size)


def discrete_laplace(scale: float, size: int | None = None):
    """Draw from the discrete Laplace with pmf ~ exp(-|x|/scale) (CKS 2020, Alg. 2)."""
    return _draw("laplace", _check("scale", scale), size)


def add_noise(values, kind: str, param: float) -> np.ndarray:
    """values + independent integer noise per coordinate (`kind`: "discrete_gaussian"/"discrete_laplace")."""
    values = np.asarray(values, dtype=np.int64)
    if kind == "discrete_gaussian":
        noise = discrete_gaussian(param, values.size)
    elif kind == "discrete_laplace":
        noise = discrete_laplace(param, values.size)
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    return values + noise.reshape(values.shape)


# --- thresholded counts over keys from the data (private key selection) -----------------------------


@functools.lru_cache(maxsize=64)
def _threshold_measurement(sigma: float, threshold: int):
    # OpenDP's Gaussian threshold (Rogers 2023, "A Unifying Privacy Analysis Framework for Unknown
    # Domain Algorithms in Differential Privacy", https://arxiv.org/abs/2309.09170): discrete Gaussian
    # noise on every key's count, then only keys whose noisy count reaches `threshold` are kept.
    domain = dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=dp.i64))
    metric = dp.l02inf_distance(dp.absolute_distance(T=dp.i64))
    with _contrib_enabled():
        return dp.m.make_gaussian_threshold(domain, metric, scale=sigma, threshold=int(threshold))


def gaussian_threshold(counts: dict[str, int], sigma: float, threshold: int) -> dict[str, int]:
    """Noisy counts (discrete Gaussian, parameter sigma) of the keys whose noisy count is >= `threshold`;
    every other key is dropped (OpenDP `make_gaussian_threshold`, its CSPRNG)."""
    sigma = _check("sigma", sigma)
    if not counts:
        return {}
    out = _threshold_measurement(sigma, int(threshold))({str(k): int(v) for k, v in counts.items()})
    return {str(k): int(v) for k, v in out.items()}


def gaussian_threshold_privacy(sigma: float, threshold: int, max_keys: int) -> tuple[float, float]:
    """(rho, delta) of `gaussian_threshold` when one person adds/removes at most `max_keys` keys, each
    count moving by 1: OpenDP's proven privacy map (approximate zCDP) at L0 = max_keys, Linf = 1.
    delta bounds the chance that a key only that person holds is released."""
    k = int(max_keys)
    rho, delta = _threshold_measurement(_check("sigma", sigma), int(threshold)).map((k, k, 1))
    return float(rho), float(delta)


# --- exact distributions (for tests and reports; not used to sample) -----------------------------


def discrete_gaussian_pmf(sigma: float, xs) -> np.ndarray:
    """pmf of N_Z(0, sigma^2) at integers xs (normaliser summed over +-(40 sigma + 10))."""
    sigma = float(sigma)
    support = np.arange(-int(40 * sigma) - 10, int(40 * sigma) + 11)
    z = np.exp(-(support.astype(float) ** 2) / (2 * sigma * sigma)).sum()
    xs = np.asarray(xs, dtype=float)
    return np.exp(-(xs**2) / (2 * sigma * sigma)) / z


def discrete_gaussian_variance(sigma: float) -> float:
    """Exact variance of N_Z(0, sigma^2) (slightly below sigma^2)."""
    support = np.arange(-int(40 * sigma) - 10, int(40 * sigma) + 11)
    p = discrete_gaussian_pmf(sigma, support)
    return float((p * support.astype(float) ** 2).sum())


def discrete_laplace_pmf(scale: float, xs) -> np.ndarray:
    """pmf of the discrete Laplace with scale t at integers xs: tanh(1/(2t)) exp(-|x|/t)."""
    a = 1.0 / float(scale)
    xs = np.asarray(xs, dtype=float)
    return (math.tanh(a / 2)) * np.exp(-a * np.abs(xs))  # (e^a - 1)/(e^a + 1) = tanh(a/2)


def discrete_laplace_variance(scale: float) -> float:
    """Exact variance of the discrete Laplace with scale t: 2r / (1 - r)^2, r = exp(-1/t)."""
    r = math.exp(-1.0 / float(scale))
    return 2 * r / (1 - r) ** 2


# --- the vectorised exact discrete Gaussian (DP-SGD's noise: ~1e5 draws per step) ------------------
#
# OpenDP's exact sampler above takes ~1 s per 1e5 draws; DP-SGD needs that many per step. This one
# is exact rejection sampling (von Neumann) from a piecewise-uniform envelope, in numpy:
#   1. propose a bucket b of w consecutive integers with probability counts[b] / 2^16 (an exact,
#      known dyadic distribution: 16 uniform bits through a table), then a uniform offset in it;
#   2. accept x with probability a(x) = exp(-x^2 / (2 sigma^2)) * w * 2^16 / (K * counts[b]) <= 1,
#      K being a bound on the envelope ratio, raised by 2^-20 so that float64 error (< 1e-13) cannot
#      push a(x) above 1.
# The accepted x has pmf proportional to exp(-x^2/(2 sigma^2)) on [-T, T] (T >= 20 sigma, the mass
# outside being below e^-200): the discrete Gaussian N_Z(0, sigma^2) of Canonne, Kamath & Steinke
# 2020 (https://arxiv.org/abs/2004.00010, Definition 1). The comparison U < a(x) is exact: a uniform
# U is drawn lazily, its first 32 bits decide unless they lie within 2^-30 (relative) of the float64
# a(x); then a(x) is recomputed with 60 decimal digits and U extended by 128 more bits (a "lazy"
# comparison, as in Knuth & Yao's exact samplers). Randomness: AES-256-CTR keystream under a fresh
# os.urandom key (`SecureUniform`), a CSPRNG; never numpy's or torch's generators.

_BIG_SIGMA = 2.0**30
_MARGIN = 2.0**-30


class SecureUniform:
    """Uniform 32-bit words from AES-256-CTR keyed by `os.urandom(32)` (a CSPRNG).

    `seed` (tests and benchmarks only) derives the key from SHA-256 of the seed instead, so a run
    can be repeated; it is still AES-CTR output, never a Mersenne Twister.
    """

    def __init__(self, seed: int | None = None) -> None:
        import hashlib
        import os

        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        key = os.urandom(32) if seed is None else hashlib.sha256(b"cairn-noise-seed:%d" % int(seed)).digest()
        self._enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()

    def uint32(self, n: int) -> np.ndarray:
        """`n` independent uniform uint32 words."""
        return np.frombuffer(self._enc.update(bytes(4 * int(n))), dtype=np.uint32)

    def bits(self, k: int) -> int:
        """A uniform integer of `k` bits (k a multiple of 32)."""
        return int.from_bytes(self._enc.update(bytes(k // 8)), "big")


_LUT_BITS = 16  # buckets are proposed through a table of 2^16 entries: one gather, no search


@functools.lru_cache(maxsize=64)
def _envelope(sigma: float) -> tuple[int, int, np.ndarray, np.ndarray, float]:
    """(lo, w, lut, counts, K) for N_Z(0, sigma^2): bucket b = [lo + b w, lo + (b+1) w) is proposed
    with probability counts[b] / 2^16 exactly (lut maps each 16-bit value to its bucket)."""
    T = int(math.ceil(20 * sigma))
    w = 1 << max(0, int(math.floor(math.log2(max(1.0, sigma / 8)))))
    nb = (2 * T + 1 + w - 1) // w
    starts = -T + w * np.arange(nb, dtype=np.int64)
    ends = starts + (w - 1)
    nearest = np.where((starts <= 0) & (ends >= 0), 0, np.minimum(np.abs(starts), np.abs(ends))).astype(float)
    env = np.exp(-(nearest**2) / (2 * sigma * sigma))  # max of the unnormalised pmf on each bucket
    total = 1 << _LUT_BITS
    counts = np.ceil(env / env.sum() * total).astype(np.int64)  # >= 1 each: every bucket can be proposed
    excess = int(counts.sum()) - total  # < nb; taken from the largest buckets, in proportion
    order = np.argsort(-counts, kind="stable")
    k = int(np.searchsorted(np.cumsum(counts[order]), 50 * excess)) + 1
    top = order[:k]
    cut = (excess * counts[top]) // int(counts[top].sum())
    counts[top] -= cut
    counts[order[0]] -= int(counts.sum()) - total
    lut = np.repeat(np.arange(nb, dtype=np.int64), counts)
    K = float(np.max(env * w * total / counts)) * (1 + 2.0**-20)
    return -T, w, lut, counts, K


def _accept_exact(x: int, sigma: float, num: int, K: float, count: int, u: int, rng: SecureUniform) -> bool:
    """Decide U < a(x) = exp(-x^2/(2 sigma^2)) num / (K count) exactly when the float64 test was too close
    to call (probability ~2^-30 per draw): 60 digits, and U extended by 128 more random bits."""
    import decimal

    ctx = decimal.Context(prec=60)
    D = decimal.Decimal
    arg = ctx.divide(ctx.multiply(D(x), D(x)), ctx.multiply(D(2), ctx.multiply(D(sigma), D(sigma))))
    a = ctx.divide(ctx.multiply(ctx.exp(-arg), D(num)), ctx.multiply(D(K), D(count)))
    lo = ctx.divide(D(u * 2**128 + rng.bits(128)), D(2**160))
    hi = lo + ctx.divide(D(1), D(2**160))
    tol = D(10) ** -55
    if hi <= a - tol:
        return True
    if lo >= a + tol:
        return False
    raise RuntimeError("discrete Gaussian comparison undecided at 160 bits (probability < 1e-45)")


def discrete_gaussian_vector(sigma: float, size: int, rng: SecureUniform | None = None) -> np.ndarray:
    """`size` independent draws from N_Z(0, sigma^2) as int64, vectorised (see the comment above)."""
    sigma = float(sigma)
    if not math.isfinite(sigma) or not 0 < sigma <= _BIG_SIGMA:
        raise ValueError(f"sigma must be finite, > 0 and <= 2^30, got {sigma!r}")
    n = int(size)
    if n < 0:
        raise ValueError(f"size must be >= 0, got {size!r}")
    rng = SecureUniform() if rng is None else rng
    lo, w, lut, counts, K = _envelope(sigma)
    num = w << _LUT_BITS
    wide = w > 1 << (32 - _LUT_BITS)  # the offset needs a word of its own
    out = np.empty(n, dtype=np.int64)
    done = 0
    while done < n:
        m = int((n - done) * 1.08) + 64
        words = rng.uint32((3 if wide else 2) * m).reshape(-1, m)
        b = lut[words[0] >> (32 - _LUT_BITS)]
        off = (words[2] if wide else words[0]).astype(np.int64) & (w - 1)
        x = lo + w * b + off
        xf = x.astype(np.float64)
        a = np.exp(-(xf * xf) / (2 * sigma * sigma)) * (num / K) / counts[b]
        u = words[1].astype(np.float64)
        accept = (u + 1) <= a * ((1 - _MARGIN) * 2.0**32)
        unsure = ~accept & (u < a * ((1 + _MARGIN) * 2.0**32))
        for i in np.flatnonzero(unsure):
            accept[i] = _accept_exact(int(x[i]), sigma, num, K, int(counts[b[i]]), int(words[1][i]), rng)
        got = x[accept][: n - done]
        out[done : done + got.size] = got
        done += got.size
    return out


def gaussian_on_lattice(values: np.ndarray, noise_multiplier: float, l2_bound: float,
                        rng: SecureUniform | None = None, slack: float = 0.01) -> tuple[np.ndarray, float]:
    """A float vector whose L2 sensitivity is `l2_bound` = C, released on a lattice with integer noise.

    Quantise to the grid gamma*Z^d (gamma = slack*C/sqrt(d), round to nearest) and add N_Z(0, s^2)
    per coordinate with s = z*(C/gamma + sqrt(d)); return ((round(v/gamma) + noise) * gamma, C').
    Rounding moves each coordinate by at most 1/2 grid step, so two neighbours' rounded vectors differ
    by at most C/gamma + sqrt(d) in L2 (integer units): the effective sensitivity is C' = C + sqrt(d)*gamma
    = (1 + slack) C, and the noise, s*gamma = z*C', keeps noise multiplier z exactly (the rounding's
    cost is noise `slack` larger, not epsilon; compare Kairouz, Liu & Steinke 2021,
    https://arxiv.org/abs/2102.06387, Section 4, who round each client's vector before summing). The
    release is an integer vector plus integer noise, rescaled: no floating-point noise whose low bits
    could reveal the input (Mironov 2012). The discrete Gaussian with integer shifts has Renyi
    divergences at most those of the Gaussian it is named after (CKS 2020, Proposition 5: for v in Z^d,
    sum_x p(x)^(1-a) p(x-v)^a <= exp(a(a-1)|v|^2 / (2 s^2))), which is what the Poisson-subsampled RDP
    analysis of Mironov, Talwar & Zhang 2019 (https://arxiv.org/abs/1908.10530) expands at integer orders. The ledger keeps the continuous
    Gaussian event: at these scales (s ~ 1e4-1e5 lattice steps) CKS 2020 (Sec. 3) show the
    difference far below the accountant's discretisation; a proof for every fractional order and for the
    +-20 sigma truncation (mass < e^-200) is not written here (ARCHITECTURE.md invariant 5 caveat).
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    z, C = float(noise_multiplier), float(l2_bound)
    if z <= 0 or C <= 0 or not 0 < slack <= 1:
        raise ValueError("need noise_multiplier > 0, l2_bound > 0 and 0 < slack <= 1")
    d = max(1, v.size)
    gamma = slack * C / math.sqrt(d)
    s = z * (C / gamma + math.sqrt(d))
    noisy = np.rint(v / gamma).astype(np.int64) + discrete_gaussian_vector(s, v.size, rng)
    return noisy.astype(np.float64) * gamma, C * (1 + slack)
