"""SecAgg+'s neighbour graph: a random Harary graph of degree O(log n), fixed by the signed run plan's seed.

Bell, Bonawitz, Gascón, Lepoint & Raykova 2020, "Secure Single-Server Aggregation with (Poly)Logarithmic
Overhead", CCS, https://eprint.iacr.org/2020/704, §3: each node Shamir-shares its secrets and adds pairwise
masks only with its k neighbours in the Harary graph H_{k,n} (nodes on a ring, each joined to the k/2 nearest
on either side) laid over the nodes in a uniformly random order. Their main theorem on random Harary graphs
(§3; "Theorem 3.6" in PHASE4's interface) gives security and correctness with k = O(log n + σ + η) when at
most a γ fraction of nodes is corrupt and at most a δ fraction drops out. `feasible_threshold` evaluates that
bound exactly for one (n, k), as the authors' reference parameter finder does
(google-parfait/federated-compute, fcp/secagg/server/graph_parameter_finder.cc):

  1. connected: the honest surviving nodes stay connected. Removing nodes disconnects H_{k,n} only if they
     cover k/2 consecutive ring positions in two places; a union bound over the < n²/2 such pairs, each of k
     specific positions all bad, bounds it by n²/2 · Π_{i<k} (B-i)/(n-i), B = ⌊γn⌋ + ⌊δn⌋; we ask ≤ 2^-(σ+1);
  2. private: an honest node has at most t1 corrupt neighbours except with probability 2^-(σ+1)/n
     (hypergeometric tail: k neighbours drawn from the other n-1 nodes). A coordinator that lies about who
     dropped can collect b-shares from some honest holders and s-shares from the others (the k - c honest
     neighbours plus the node itself for its own b), so both reach t only if 2(t - c) ≤ k - c + 1: we take
     t = ⌊(k + t1 + 1)/2⌋ + 1 (> half the neighbourhood, the policy's default `secagg_threshold_fraction`);
  3. correct: every node keeps at least t surviving neighbours except with probability 2^-η/n.

The constant: Bell et al. prove k = O(log n); `degree_for` takes k = c·log2 n rounded up to even, where c is
the largest ratio (least feasible degree)/log2 n over n from 64 to 2^20 (`log_constant`), then raised to the
least degree the exact bound accepts at this n if that is higher. For the defaults γ = δ = 0.1, σ = 40, η = 20 the ratio peaks
at n ≈ 1,000-2,000 (small n have few corrupt nodes to fear; large n are in the asymptotic regime), c ≈ 10.1:
k = 68 (t = 40) at n = 100, 102 (t = 71) at 1,000, 136 at 10^4, so the degree and the per-node cost grow as
log n. When c·log2 n ≥ n - 1 (n < 64 with the defaults) the graph is complete: plain SecAgg for small n.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence

import numpy as np
from scipy.special import gammaln

from privacy.secagg.constants import SecAggError

CORRUPT = 0.1  # γ: fraction of nodes that may be corrupt (colluding with the coordinator)
DROPOUT = 0.1  # δ: fraction of nodes that may drop out after sharing keys
SIGMA = 40  # statistical security: the coordinator learns an input with probability ≤ 2^-40
ETA = 20  # correctness: the sum fails to unmask with probability ≤ 2^-20
_GRID = tuple(sorted({round(2 ** (j / 16)) for j in range(96, 321)}))  # n = 64 .. 2^20, step 2^(1/16)
_LABEL = b"cairn/secagg/graph"


def _hypergeom_pmf(population: int, marked: int, draws: int) -> np.ndarray:
    """P[X = a], a = 0..draws, X the marked items among `draws` drawn without replacement."""
    a = np.arange(draws + 1)
    ok = (a <= marked) & (draws - a <= population - marked)
    b, r = np.where(ok, a, 0), np.where(ok, draws - a, 0)
    log_p = (gammaln(marked + 1) - gammaln(b + 1) - gammaln(marked - b + 1)
             + gammaln(population - marked + 1) - gammaln(r + 1) - gammaln(population - marked - r + 1)
             - gammaln(population + 1) + gammaln(draws + 1) + gammaln(population - draws + 1))
    return np.where(ok, np.exp(log_p), 0.0)


def feasible_threshold(n: int, k: int, corrupt: float = CORRUPT, dropout: float = DROPOUT,
                       sigma: float = SIGMA, eta: float = ETA) -> int | None:
    """The Shamir threshold t for n nodes of degree k under Bell et al.'s bound (module docstring, 1-3),
    or None when no t satisfies it."""
    if n == 2 and k == 1:
        return 2  # two nodes: both must stay (SecAgg's least threshold)
    if not 2 <= k <= n - 1:
        return None
    c_max, d_max = math.floor(corrupt * n + 1e-12), math.floor(dropout * n + 1e-12)
    bad = c_max + d_max
    if k < n - 1 and k <= bad:  # 1. a union bound on the disconnecting gap pairs of the ring
        log_p = math.log(n) + math.log(max(n - k - 1, 1)) - math.log(2)
        log_p += sum(math.log((bad - i) / (n - i)) for i in range(k))
        if log_p > -(sigma + 1) * math.log(2):
            return None
    corrupt_pmf = _hypergeom_pmf(n - 1, min(c_max, n - 1), k)  # corrupt neighbours of an honest node
    above = np.append(np.cumsum(corrupt_pmf[::-1])[::-1][1:], 0.0)  # P[X > a], summed from the tail
    t1 = int(np.argmax(above <= 2.0 ** -(sigma + 1) / n))
    surviving_pmf = _hypergeom_pmf(n - 1, max(n - 1 - d_max, 0), k)  # surviving neighbours of a node
    below = np.concatenate(([0.0], np.cumsum(surviving_pmf)))  # P[X < a], a = 0..k+1
    t2 = int(np.flatnonzero(below <= 2.0 ** -eta / n).max())
    t = max(2, (k + t1 + 1) // 2 + 1)
    return t if t <= t2 else None


def _least_degree(n: int, corrupt: float, dropout: float, sigma: float, eta: float, start: int = 2) -> int:
    for k in range(start, n - 1, 2):
        if feasible_threshold(n, k, corrupt, dropout, sigma, eta) is not None:
            return k
    return n - 1


@functools.lru_cache(maxsize=32)
def log_constant(corrupt: float = CORRUPT, dropout: float = DROPOUT, sigma: float = SIGMA, eta: float = ETA) -> float:
    """c such that k = c·log2 n meets the bound at every n of 64..2^20: the least feasible degree is a step
    function growing with n, so on [a, b] between grid points it is at most least(b) / log2 a."""
    ratio, k = 0.0, 2
    for a, b in zip(_GRID, _GRID[1:]):  # the least degree grows with n: start each search at the last one
        k = _least_degree(b, corrupt, dropout, sigma, eta, start=k)
        ratio = max(ratio, k / math.log2(a))
    return ratio


def degree_for(n: int, corrupt: float = CORRUPT, dropout: float = DROPOUT, sigma: float = SIGMA,
               eta: float = ETA) -> int:
    """The SecAgg+ degree for n nodes: even, O(log n) (module docstring); n - 1 (complete) for small n."""
    if n < 2:
        raise SecAggError("secure aggregation needs at least 2 nodes")
    k = 2 * math.ceil(log_constant(corrupt, dropout, sigma, eta) * math.log2(n) / 2)
    while k < n - 1 and feasible_threshold(n, k, corrupt, dropout, sigma, eta) is None:
        k += 2
    return min(k, n - 1)


def threshold_for(n: int, k: int, corrupt: float = CORRUPT, dropout: float = DROPOUT, sigma: float = SIGMA,
                  eta: float = ETA) -> int:
    """The Shamir threshold to use with degree k (`feasible_threshold`); SecAggError when there is none."""
    t = feasible_threshold(n, k, corrupt, dropout, sigma, eta)
    if t is None:
        raise SecAggError(f"no threshold is secure and correct for n={n}, degree {k} (corrupt {corrupt}, "
                          f"dropout {dropout}): raise the degree")
    return t


def _permutation(ids: Sequence[int], seed: bytes) -> list[int]:
    """The ids in a random order drawn from `seed` alone: Fisher-Yates with SHA-256 in counter mode and
    rejection sampling, so every node computes the same order whatever its numpy version."""
    out, counter = sorted(ids), 0
    for i in range(len(out) - 1, 0, -1):
        bound = (1 << 64) - (1 << 64) % (i + 1)  # reject draws in the tail for an unbiased j
        while True:
            block = hashlib.sha256(_LABEL + seed + counter.to_bytes(8, "big")).digest()
            counter += 1
            r = int.from_bytes(block[:8], "big")
            if r < bound:
                break
        j = r % (i + 1)
        out[i], out[j] = out[j], out[i]
    return out


@functools.lru_cache(maxsize=16)
def _graph(ids: tuple[int, ...], k: int, seed: bytes) -> dict[int, tuple[int, ...]]:
    n = len(ids)
    if len(set(ids)) != n or n < 2:
        raise SecAggError("the neighbour graph needs at least 2 distinct node ids")
    if k < 1:
        raise SecAggError(f"degree {k} must be at least 1")
    if k >= n - 1:
        return {u: tuple(v for v in sorted(ids) if v != u) for u in ids}
    if k % 2 and n % 2:
        k += 1  # no k-regular graph on an odd number of nodes for odd k (handshake lemma): round up
    ring = _permutation(ids, seed)
    steps = set(range(1, k // 2 + 1)) | ({n // 2} if k % 2 else set())  # Harary H_{k,n}: odd k adds diameters
    return {u: tuple(sorted({ring[(i + d) % n] for d in steps} | {ring[(i - d) % n] for d in steps}))
            for i, u in enumerate(ring)}


def neighbours(ids: Sequence[int], k: int, seed: bytes) -> dict[int, list[int]]:
    """The random Harary graph H_{k,n} on `ids` (order drawn from `seed`): symmetric, every degree k (k + 1
    for odd k on an odd number of nodes; everyone when k ≥ n - 1)."""
    return {u: list(vs) for u, vs in _graph(tuple(sorted(ids)), k, bytes(seed)).items()}


def neighbours_of(ids: Sequence[int], k: int, seed: bytes, u: int) -> list[int]:
    """u's neighbours in `neighbours(ids, k, seed)`, from a cached graph (built once per (ids, k, seed))."""
    graph = _graph(tuple(sorted(ids)), k, bytes(seed))
    if u not in graph:
        raise SecAggError(f"node {u} is not in the aggregation")
    return list(graph[u])
