"""SecAgg+'s random Harary graph and its O(log n) degree (privacy/secagg/graph.py; Bell et al. 2020,
https://eprint.iacr.org/2020/704): the graph's shape, its seed, the degree/threshold bound, and an
aggregation over the graph with dropouts that unmasks the exact sum."""

import math
from collections import deque

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from scipy.stats import chisquare, hypergeom

from privacy.keys import raw_public_key
from privacy.secagg.constants import MOD, SecAggError
from privacy.secagg.graph import (
    _hypergeom_pmf,
    _permutation,
    degree_for,
    feasible_threshold,
    log_constant,
    neighbours,
    neighbours_of,
    threshold_for,
)
from privacy.secagg.protocol import Params, SecAggNode, SecAggServer
from privacy.secagg.run_plan import make_plan

SEED = bytes(range(32))


def connected(graph: dict[int, list[int]], removed: set[int] = frozenset()) -> bool:
    left = [u for u in graph if u not in removed]
    seen, todo = {left[0]}, deque([left[0]])
    while todo:
        for v in graph[todo.popleft()]:
            if v not in removed and v not in seen:
                seen.add(v)
                todo.append(v)
    return len(seen) == len(left)


@pytest.mark.parametrize("n,k,degree", [(30, 4, 4), (30, 10, 10), (101, 8, 8), (20, 5, 5), (21, 5, 6), (9, 8, 8),
                                        (9, 20, 8)])
def test_the_graph_is_symmetric_and_regular(n, k, degree):
    ids = list(range(3, 3 + 2 * n, 2))  # any distinct ids
    g = neighbours(ids, k, SEED)
    assert sorted(g) == ids
    for u, vs in g.items():
        assert len(vs) == len(set(vs)) == degree and u not in vs and set(vs) <= set(ids)
        assert all(u in g[v] for v in vs)


def test_the_graph_is_fixed_by_the_seed_and_another_seed_gives_another():
    ids = list(range(1, 101))
    a, b = neighbours(ids, 10, SEED), neighbours(list(reversed(ids)), 10, bytes(SEED))
    assert a == b  # the same from any order of the ids: every node computes the same graph
    others = [neighbours(ids, 10, bytes([i]) * 32) for i in range(5)]
    assert all(o != a for o in others) and len({str(o) for o in others}) == 5
    assert neighbours_of(ids, 10, SEED, 7) == a[7]
    with pytest.raises(SecAggError):
        neighbours_of(ids, 10, SEED, 1000)


def test_the_ring_order_is_uniform():
    # where node 1 lands on the ring, over 3,000 seeds: uniform over the 12 positions (chi-square)
    pos = [_permutation(range(1, 13), i.to_bytes(4, "big")).index(1) for i in range(3000)]
    assert chisquare(np.bincount(pos, minlength=12)).pvalue > 1e-3
    # and so each other node is a neighbour of node 1 with probability k / (n - 1)
    hits = np.zeros(13)
    for i in range(600):
        hits[neighbours(range(1, 13), 4, b"u" + i.to_bytes(4, "big"))[1]] += 1
    assert chisquare(hits[2:]).pvalue > 1e-3


def test_the_graph_is_connected_and_stays_connected_without_a_fifth_of_its_nodes():
    n = 200
    k = degree_for(n)
    rng = np.random.default_rng(0)
    for trial in range(20):
        g = neighbours(range(n), k, trial.to_bytes(2, "big"))
        assert connected(g)
        assert connected(g, set(rng.choice(n, n // 5, replace=False).tolist()))  # γ + δ = 0.2 of the nodes


def test_degree_is_even_monotone_logarithmic_and_complete_for_small_n():
    ns = list(range(2, 60)) + list(range(60, 3000, 37)) + [10_000, 100_000]
    ks = [degree_for(n) for n in ns]
    assert ks == sorted(ks)  # monotone
    for n, k in zip(ns, ks):
        assert k == n - 1 or (k % 2 == 0 and k < n - 1)
        assert k <= log_constant() * math.log2(n) + 2 or k == n - 1  # O(log n), the constant of the docstring
        assert feasible_threshold(n, k) is not None
    assert all(degree_for(n) == n - 1 for n in range(2, 64)) and degree_for(64) < 63  # plain SecAgg below 64
    assert 9 < log_constant() <= 10.5  # the defaults' constant (γ = δ = 0.1, σ = 40, η = 20)
    assert degree_for(1000) / degree_for(100) <= math.log(1000) / math.log(100) + 1e-9  # 102 / 68
    assert degree_for(1000, 0.05, 0.05) < degree_for(1000) < degree_for(1000, 0.2, 0.2)  # more risk, more degree


def test_threshold_is_a_majority_that_the_bound_accepts():
    for n in (30, 100, 1000, 10_000):
        k = degree_for(n)
        t = threshold_for(n, k)
        assert (k + 1) / 2 < t <= k  # above the policy's default half, below what survivors can supply
    # complete graph: t1 is every corrupt node, so t = floor((n - 1 + floor(γ n) + 1) / 2) + 1
    assert threshold_for(20, 19) == (19 + 2 + 1) // 2 + 1
    assert feasible_threshold(1000, 10) is None  # a ring too thin for 10% corrupt and 10% dropouts
    with pytest.raises(SecAggError, match="raise the degree"):
        threshold_for(1000, 10)


def test_the_bound_holds_on_sampled_corruptions():
    # n = 1000, k = degree_for: with 100 corrupt and 100 dropped nodes at random, no honest node has a
    # neighbourhood where 2t <= k + corrupt + 1 and every node keeps >= t surviving neighbours
    n = 1000
    k, rng = degree_for(n), np.random.default_rng(1)
    t = threshold_for(n, k)
    for trial in range(3):
        g = neighbours(range(n), k, b"mc" + bytes([trial]))
        adj = np.array([g[u] for u in range(n)])
        corrupt, dropped = np.zeros(n, bool), np.zeros(n, bool)
        order = rng.permutation(n)
        corrupt[order[:100]], dropped[order[100:200]] = True, True
        assert (2 * t > k + corrupt[adj].sum(axis=1)[~corrupt] + 1).all()
        assert ((~dropped)[adj].sum(axis=1) >= t).all()


def test_hypergeometric_pmf_matches_scipy():
    for pop, marked, draws in ((999, 100, 100), (99, 9, 68), (29, 0, 10), (50, 50, 7)):
        want = hypergeom(pop, marked, draws).pmf(np.arange(draws + 1))
        assert np.allclose(_hypergeom_pmf(pop, marked, draws), want, rtol=1e-9, atol=1e-300)


def test_params_neighbourhood_is_the_seeded_graph():
    ids = tuple(range(1, 41))
    p = Params(ids, 5, 1.0, 16, 1, 8, SEED.hex())
    g = neighbours(ids, 8, SEED)
    assert all(p.neighbourhood(u) == g[u] for u in ids)
    assert Params(ids, 5, 1.0, 16, 1, 8, (b"x" * 32).hex()).neighbourhood(1) != g[1]
    assert Params(ids, 5, 1.0, 16, 1, 0, SEED.hex()).neighbourhood(1) == list(range(2, 41))


def test_an_aggregation_over_the_graph_with_dropouts_unmasks_the_exact_sum():
    n, dim, levels = 100, 200, 1 << 12
    k = degree_for(n)  # 68 < 99: sparse, at the degree and threshold every node checks (run_plan.check_sparse_graph)
    ledger = {u: Ed25519PrivateKey.generate() for u in range(1, n + 1)}
    t = threshold_for(n, k)
    plan = make_plan("test", "graph", [raw_public_key(ledger[u]).hex() for u in range(1, n + 1)], clip=1.0,
                     levels=levels, dim=dim, threshold=t, neighbours=k, seed_hex=SEED.hex())
    hood = {u: plan.params().neighbourhood(u) for u in ledger}
    nodes, server = {u: SecAggNode(u, plan) for u in ledger}, SecAggServer(plan)
    pks = server.collect_public_keys({u: nodes[u].public_keys(ledger[u]) for u in ledger})
    cts = {u: nodes[u].share_keys({v: pks[v] for v in [u, *hood[u]]}) for u in ledger}  # only its neighbours' keys
    assert all(sorted(c) == hood[u] for u, c in cts.items())  # shares go to the k neighbours only
    inbox = server.route_shares(cts)
    assert all(sorted(inbox[u]) == hood[u] for u in ledger)
    rng = np.random.default_rng(3)
    q = {u: rng.integers(0, levels + 1, dim, dtype=np.uint64) for u in ledger}  # on the quantisation grid
    gone = {4, 17, 29, 50, 77}
    masked = {u: nodes[u].masked_input(q[u] * (2 / levels) - 1.0, inbox[u]) for u in ledger if u not in gone}
    survivors, dropped = server.collect_inputs(masked)
    assert dropped == sorted(gone)
    views = server.collect_views({u: nodes[u].sign_view(ledger[u], survivors, dropped) for u in survivors})
    reveals = {u: nodes[u].unmask(survivors, dropped, {v: views[v] for v in [u, *hood[u]] if v in views})
               for u in survivors}
    assert all(set(r) <= set(hood[u]) | {u} for u, r in reveals.items())  # shares of neighbours only
    total, count = server.aggregate(reveals)
    assert count == n - len(gone)
    assert np.array_equal(total, sum(q[u] for u in survivors) % MOD)
