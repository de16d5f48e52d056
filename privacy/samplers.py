"""Secure integer noise samplers: the only source of privacy noise for aggregate releases.

ARCHITECTURE.md invariant 6: noise for aggregates is integer-valued and drawn with cryptographic randomness;
never numpy, torch or `random` generators (numpy is used here only as a container).

We use OpenDP's samplers (OpenDP 0.16, Rust core):
* discrete Gaussian: Canonne, Kamath & Steinke 2020, "The Discrete Gaussian for Differential
  Privacy", Algorithm 3 (rejection from a discrete Laplace, itself Algorithm 2, built on exact
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
