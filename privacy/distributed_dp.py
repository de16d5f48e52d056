"""The distributed discrete Gaussian: central-DP noise split between nodes under secure aggregation.

Kairouz, Liu & Steinke 2021, "The Distributed Discrete Gaussian Mechanism for Federated Learning with Secure
Aggregation", ICML, https://arxiv.org/abs/2102.06387 (their code: google-research/federated, distributed_dp/).
One DP-SGD step over the union of the nodes' members:

1. each sampled person's gradient g (L2-clipped to `clip`) is scaled by 1/gamma and rounded coordinate by
   coordinate up or down at random (unbiased), the rounding RESAMPLED until its L2 norm is within the bound of
   their Theorem / `rounded_l2_norm_bound` (conditional randomised rounding, Sec. 4.1), so one person moves the
   integer sum by at most `l2_bound` whatever the rounding drew; a last coordinate carries `count_weight`/gamma
   (an exact integer) so that the coordinator divides by a NOISY count: no exact count leaves a node;
2. each node adds ONE share of N_Z(0, share_sigma^2) per coordinate from the secure sampler (privacy/samplers.py,
   ARCHITECTURE.md invariant 6), share_sigma sized so that `min_honest` (h) shares alone reach the target noise
   z * clip: h * share_sigma^2 = (z * clip / gamma)^2 (integer units);
3. values travel mod 2^bits (`to_field`); secure aggregation returns the modular sum, decoded centred
   (`from_field`, `decode`). A wrap only damages the result (post-processing; not a privacy loss): gamma is
   chosen so that P(any coordinate wraps) <= WRAP_PROBABILITY, by the bound of `wrap_log_probability`.

Privacy (privacy/accounting/ddg.py): `ddg_event` under the trust assumption (h honest shares; the budget cap is
charged with it) and `ddg_own_event` (this node's share alone, every other node colluding: shares = 1). Both
are one registered event (`DistributedDiscreteGaussianEvent`) differing only in `shares`, so a ledger entry's
event also determines the own-share guarantee (`own_share_event`), which reports and the auditor recompute.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from privacy import ddg_rules
from privacy.accounting import epsilon_of
from privacy.accounting.ddg import tau
from privacy.events import (
    ComposedEvent,
    DistributedDiscreteGaussianEvent,
    DpEvent,
    PoissonSampledEvent,
    SelfComposedEvent,
)
from privacy.samplers import SecureUniform, discrete_gaussian_vector

DEFAULT_BETA = math.exp(-0.5)  # the paper's experiments (Sec. 6): rejection probability <= e^-0.5 per person
DEFAULT_COUNT_WEIGHT = 0.25  # x clip: the count coordinate adds sqrt(1 + 0.25^2) - 1 = 3% to the sensitivity
DEFAULT_MAX_PEOPLE = 100_000  # bound on the people summed in one step over all nodes (the wrap check only)
WRAP_PROBABILITY = 2.0**-40  # "negligible": P(some coordinate of the sum wraps mod 2^bits) at most this
MAX_SIGMA = 2.0**30  # privacy/samplers.py discrete_gaussian_vector's ceiling


class DdgError(ValueError):
    """Parameters the distributed discrete Gaussian cannot run with (the message names the parameter)."""


@dataclass(frozen=True)
class DdgParams:
    """One distributed DP-SGD step's parameters. Real units: clip, gamma, count_weight; integer (lattice) units:
    l2_bound, share_sigma. `dim` is the gradient's dimension; vectors on the wire have dim + 1 coordinates."""

    clip: float  # L2 clip of one person's gradient
    noise_multiplier: float  # z: target total noise sigma = z * clip, reached by min_honest shares alone
    dim: int
    participants: int  # n: nodes whose shares are summed
    min_honest: int  # h: shares the trust assumption counts on
    bits: int  # values mod 2^bits
    beta: float  # conditional rounding: a rounding is redrawn with probability <= beta
    gamma: float  # quantisation step
    l2_bound: float  # one person's L2 norm after rounding (gradient and count coordinate), integer units
    share_sigma: float  # each node's discrete Gaussian parameter, integer units
    count_weight: float  # the count coordinate's value per person (a multiple of gamma)
    max_people: int = DEFAULT_MAX_PEOPLE
    wrap_log_probability: float = -math.inf  # natural log of the wrap bound at these parameters

    @property
    def vector_dim(self) -> int:
        """dim + 1: the gradient and the count coordinate."""
        return self.dim + 1

    @property
    def count_units(self) -> int:
        """count_weight / gamma, the integer each person adds to the last coordinate."""
        return int(round(self.count_weight / self.gamma))

    @property
    def tau(self) -> float:
        """Kairouz, Liu & Steinke 2021 Theorem 1's tau for the h honest shares (0.0 in float at large sigma)."""
        return tau(self.share_sigma, self.min_honest)


def rounded_l2_bound(norm: float, beta: float, dim: int) -> float:
    """The L2 bound after conditional randomised rounding to Z^dim of a vector of L2 norm <= `norm` (integer units):
    min{ norm + sqrt(dim), sqrt(norm^2 + dim/4 + sqrt(2 ln(1/beta)) (norm + sqrt(dim)/2)) } (Kairouz, Liu & Steinke
    2021, Theorem 1 / Sec. 4.1; their accounting_utils.py `rounded_l2_norm_bound`). beta = 0: the deterministic
    bound. The rounding reaches the second bound with probability >= 1 - beta, so resampling until within it
    stops after 1/(1 - beta) draws on average."""
    if not (0 <= beta < 1) or norm <= 0 or dim < 1:
        raise DdgError(f"need 0 <= beta < 1, norm > 0, dim >= 1; got beta={beta!r}, norm={norm!r}, dim={dim!r}")
    return ddg_rules.rounded_l2_bound(norm, beta, dim)  # the same expression the event's constructor checks


def gradient_bound(clip: float, gamma: float, beta: float, dim: int) -> float:
    """The rounded gradient part's L2 bound (integer units): `rounded_l2_bound(clip / gamma, beta, dim)`."""
    return rounded_l2_bound(clip / gamma, beta, dim)


def l2_bound_of(clip: float, gamma: float, beta: float, dim: int, count_weight: float) -> float:
    """One person's L2 sensitivity in integer units: the rounded gradient's bound and the exact count coordinate."""
    gradient_bound(clip, gamma, beta, dim)  # refuses what the bound does not cover
    return ddg_rules.l2_bound_of(clip, gamma, beta, dim, count_weight)


def wrap_log_probability(bits: int, participants: int, share_sigma: float, l2_bound: float, max_people: int,
                         dim: int) -> float:
    """ln of an upper bound on P(some coordinate of the sum leaves [-2^(bits-1), 2^(bits-1))), the range the
    centred decode recovers. Per coordinate the signal is at most max_people * l2_bound (each person's coordinate is
    at most its L2 norm) and the noise is a sum of `participants` shares, each sigma-subgaussian (Canonne, Kamath &
    Steinke 2020, https://arxiv.org/abs/2004.00010, Corollary 9: E[exp(tX)] <= exp(t^2 sigma^2 / 2)), so
    P(|noise| >= m) <= 2 exp(-m^2 / (2 n sigma^2)); a union bound over the dim + 1 coordinates. +inf-like (0.0)
    when the signal alone can reach the edge."""
    margin = 2.0 ** (bits - 1) - 1 - max_people * l2_bound
    if margin <= 0:
        return 0.0
    return math.log(2.0 * (dim + 1)) - margin * margin / (2.0 * participants * share_sigma * share_sigma)


def _check_inputs(clip: float, noise_multiplier: float, dim: int, participants: int, min_honest: int, bits: int,
                  beta: float, max_people: int) -> None:
    if not (clip > 0 and math.isfinite(clip)):
        raise DdgError(f"clip must be finite and > 0, got {clip!r}")
    if not (noise_multiplier > 0 and math.isfinite(noise_multiplier)):
        raise DdgError(f"noise_multiplier must be finite and > 0, got {noise_multiplier!r}")
    if dim < 1 or max_people < 1:
        raise DdgError(f"dim and max_people must be >= 1, got {dim!r}, {max_people!r}")
    if not 1 <= min_honest <= participants:
        raise DdgError(f"min_honest must be in [1, participants={participants}], got {min_honest!r}")
    if not 8 <= bits <= 62:
        raise DdgError(f"bits must be in [8, 62], got {bits!r}")
    if not 0 <= beta < 1:
        raise DdgError(f"beta must be in [0, 1), got {beta!r}")


def plan_ddg(clip: float, noise_multiplier: float, dim: int, participants: int, min_honest: int, bits: int = 32, *,
             beta: float = DEFAULT_BETA, count_weight: float | None = None, max_people: int = DEFAULT_MAX_PEOPLE,
             wrap_probability: float = WRAP_PROBABILITY) -> DdgParams:
    """The step's parameters: the smallest gamma (up to a factor 1 + 1e-9, by the fixed-point iteration below)
    whose wrap bound is <= `wrap_probability`, share_sigma = z * clip / (gamma sqrt(h)), l2_bound from gamma.
    gamma solves (2^(bits-1) - 1) gamma >= max_people * l2_real + k z clip sqrt(n / h), k = sqrt(2 ln(2(d+1)/p)):
    the signal bound plus k standard deviations of all n shares, in real units. `count_weight` (default clip/4)
    is rounded to a multiple of gamma. Raises DdgError naming the parameter when no gamma fits."""
    _check_inputs(clip, noise_multiplier, dim, participants, min_honest, bits, beta, max_people)
    cw = DEFAULT_COUNT_WEIGHT * clip if count_weight is None else float(count_weight)
    if not (cw > 0 and math.isfinite(cw)):
        raise DdgError(f"count_weight must be finite and > 0, got {count_weight!r}")
    target = noise_multiplier * clip  # real units, reached by h shares
    half = 2.0 ** (bits - 1) - 1
    k = math.sqrt(2.0 * math.log(2.0 * (dim + 1) / wrap_probability))
    noise_real = k * target * math.sqrt(participants / min_honest)
    gamma = (max_people * math.hypot(clip, cw) + noise_real) / half
    gamma = max(gamma, target / (math.sqrt(min_honest) * MAX_SIGMA))  # the sampler's ceiling on sigma
    for _ in range(200):  # fixed point: l2_real = l2_bound * gamma grows slowly with gamma
        p = _params(clip, noise_multiplier, dim, participants, min_honest, bits, beta, gamma, cw, max_people)
        if p.wrap_log_probability <= math.log(wrap_probability):
            if p.share_sigma < 1.0:
                raise DdgError(f"bits={bits} too few for participants={participants}, max_people={max_people}: "
                               f"share_sigma {p.share_sigma:.3g} < 1 lattice step")
            return p
        gamma = max(gamma * (1 + 1e-9), (max_people * p.l2_bound * gamma + noise_real) / half) * (1 + 1e-9)
    raise DdgError(f"no gamma meets the wrap bound at bits={bits}, participants={participants}, max_people={max_people}")


def _params(clip: float, z: float, dim: int, n: int, h: int, bits: int, beta: float, gamma: float, cw: float,
            max_people: int) -> DdgParams:
    units = max(1, round(cw / gamma))
    l2 = l2_bound_of(clip, gamma, beta, dim, units * gamma)
    sigma = z * clip / (gamma * math.sqrt(h))
    return DdgParams(clip=clip, noise_multiplier=z, dim=dim, participants=n, min_honest=h, bits=bits, beta=beta,
                     gamma=gamma, l2_bound=l2, share_sigma=sigma, count_weight=units * gamma, max_people=max_people,
                     wrap_log_probability=wrap_log_probability(bits, n, sigma, l2, max_people, dim))


# --- the node's side: rounding, noise, field ------------------------------------------------------------------


def quantize_person(g: np.ndarray, p: DdgParams, rng: np.random.Generator, max_tries: int = 10_000) -> np.ndarray:
    """One person's contribution as int64 of length dim + 1: g clipped to p.clip, scaled by 1/gamma, rounded up with
    probability equal to the fractional part (unbiased), redrawn until the L2 norm is within the gradient bound
    (conditional randomised rounding, Kairouz, Liu & Steinke 2021 Sec. 4.1), then the count coordinate. The
    rounding's randomness is not privacy noise (the sensitivity bound holds for every draw), so `rng` may be numpy,
    but FRESH and SECRET (OS-seeded, never a fixed or shared seed): the bound holds for one person's vector only
    because the others' roundings are independent draws whatever that person did; with a stream known to the
    adversary, one person's presence shifts every later person's rounding (by up to sqrt(dim) each)."""
    g = np.asarray(g, dtype=np.float64).reshape(-1)
    if g.size != p.dim or not np.all(np.isfinite(g)):
        raise DdgError(f"gradient must be finite with dim={p.dim} coordinates, got {g.size}")
    norm = float(np.linalg.norm(g))
    if norm > p.clip:
        g = g * (p.clip / norm)
    x = g / p.gamma
    low = np.floor(x)
    frac = x - low
    bound2 = gradient_bound(p.clip, p.gamma, p.beta, p.dim) ** 2
    for _ in range(max_tries):
        r = low + (rng.random(x.size) < frac)
        if float(np.dot(r, r)) <= bound2:
            return np.append(r.astype(np.int64), np.int64(p.count_units))
    raise DdgError(f"conditional rounding found no draw within the bound in {max_tries} tries (beta={p.beta})")


def noise_share(p: DdgParams, rng: SecureUniform | None = None) -> np.ndarray:
    """This node's noise share: dim + 1 draws of N_Z(0, share_sigma^2) from the secure sampler (int64)."""
    return discrete_gaussian_vector(p.share_sigma, p.vector_dim, rng)


def node_vector(grads: Iterable[np.ndarray], p: DdgParams, rng: np.random.Generator,
                noise_rng: SecureUniform | None = None) -> np.ndarray:
    """A node's input to secure aggregation: sum of its sampled people's quantised contributions plus its noise
    share, in the field (uint64 < 2^bits). An empty sample still sends its noise share."""
    total = noise_share(p, noise_rng)
    for g in grads:
        total = total + quantize_person(g, p, rng)
    return to_field(total, p.bits)


def to_field(v: np.ndarray, bits: int = 32) -> np.ndarray:
    """Integers mod 2^bits as uint64 (the secure aggregation's input)."""
    return np.mod(np.asarray(v, dtype=np.int64), np.int64(1) << bits).astype(np.uint64)


def from_field(total: np.ndarray, bits: int = 32) -> np.ndarray:
    """A modular sum back to int64, centred: values >= 2^(bits-1) are negative."""
    t = np.mod(np.asarray(total, dtype=np.uint64), np.uint64(1) << np.uint64(bits)).astype(np.int64)
    return np.where(t >= (np.int64(1) << (bits - 1)), t - (np.int64(1) << bits), t)


def decode(total: np.ndarray, p: DdgParams) -> np.ndarray:
    """The modular sum in real units (x gamma), float64 of length dim + 1 (the last is the count coordinate)."""
    return from_field(total, p.bits).astype(np.float64) * p.gamma


def gradient_and_count(decoded: np.ndarray, p: DdgParams) -> tuple[np.ndarray, float]:
    """(noisy gradient sum, noisy count) of a decoded sum: the count is the last coordinate / count_weight."""
    return decoded[: p.dim], float(decoded[p.dim] / p.count_weight)


# --- the events and their epsilons ------------------------------------------------------------------------------


def step_event(p: DdgParams, shares: int | None = None) -> DistributedDiscreteGaussianEvent:
    """One step's event with `shares` noise shares (default: the trust assumption's min_honest)."""
    return DistributedDiscreteGaussianEvent(
        sigma=p.share_sigma, shares=p.min_honest if shares is None else int(shares), dim=p.dim,
        l2_sensitivity=p.l2_bound, clip=p.clip, gamma=p.gamma, beta=p.beta, count_weight=p.count_weight,
        bits=p.bits, participants=p.participants, max_people=p.max_people)


def ddg_event(p: DdgParams, sampling_probability: float, steps: int) -> DpEvent:
    """The ledger event under the trust assumption: SelfComposed(PoissonSampled(q, DDG(h shares)), steps)."""
    return SelfComposedEvent(PoissonSampledEvent(sampling_probability, step_event(p)), int(steps))


def ddg_own_event(p: DdgParams, sampling_probability: float, steps: int) -> DpEvent:
    """This node's own guarantee, every other node colluding: the same event with its share alone (shares = 1)."""
    return SelfComposedEvent(PoissonSampledEvent(sampling_probability, step_event(p, 1)), int(steps))


def own_share_event(event: DpEvent) -> DpEvent:
    """`event` with every distributed step's `shares` set to 1 (the own-share guarantee of a ledger entry)."""
    if isinstance(event, DistributedDiscreteGaussianEvent):
        return dataclasses.replace(event, shares=1)
    if isinstance(event, (SelfComposedEvent, PoissonSampledEvent)):
        return dataclasses.replace(event, event=own_share_event(event.event))
    if isinstance(event, ComposedEvent):
        return ComposedEvent(tuple(own_share_event(e) for e in event.events))
    return event


def has_distributed(event: DpEvent) -> bool:
    """Whether `event` contains a distributed discrete Gaussian step."""
    if isinstance(event, DistributedDiscreteGaussianEvent):
        return True
    if isinstance(event, (SelfComposedEvent, PoissonSampledEvent)):
        return has_distributed(event.event)
    return isinstance(event, ComposedEvent) and any(has_distributed(e) for e in event.events)


def ddg_epsilons(p: DdgParams, sampling_probability: float, steps: int, delta: float) -> tuple[float, float]:
    """(epsilon under the trust assumption, epsilon of this node's share alone) at `delta`."""
    trust = epsilon_of([ddg_event(p, sampling_probability, steps)], delta).epsilon
    own = epsilon_of([ddg_own_event(p, sampling_probability, steps)], delta).epsilon
    return trust, own


def ddg_noise_multiplier(target_epsilon: float, delta: float, sampling_probability: float, steps: int, clip: float,
                         dim: int, participants: int, min_honest: int, bits: int = 32, rel_tol: float = 1e-3,
                         **plan_kw: float) -> float:
    """The smallest z (to rel_tol, never below it) whose TRUST epsilon (h shares) is <= target_epsilon, by
    bisection over `plan_ddg(..., noise_multiplier=z)` and the same accountant the ledger uses."""
    def eps(z: float) -> float:
        p = plan_ddg(clip, z, dim, participants, min_honest, bits, **plan_kw)  # type: ignore[arg-type]
        return epsilon_of([ddg_event(p, sampling_probability, steps)], delta).epsilon

    lo, hi = 0.05, 1.0
    while eps(hi) > target_epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e4:
            raise DdgError(f"target epsilon {target_epsilon:g} needs noise multiplier above 1e4")
    while hi - lo > rel_tol * hi:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if eps(mid) <= target_epsilon else (mid, hi)
    return hi
