"""Secure aggregation: exact sums, dropout tolerance, and the server sees only masked inputs."""

import numpy as np
import pytest

from privacy.secagg.constants import MOD, SecAggError
from privacy.secagg.protocol import Params, SecAggNode, SecAggServer
from privacy.secagg.quantization import dequantize_sum


def run(xs, threshold, drop_after_shares=(), neighbours=0, clip=1.0, levels=1 << 20):
    ids = tuple(range(1, len(xs) + 1))
    p = Params(ids, threshold, clip, levels, xs[0].shape[0], neighbours)
    nodes = {u: SecAggNode(u, p) for u in ids}
    server = SecAggServer(p)
    pks = server.collect_public_keys({u: n.public_keys() for u, n in nodes.items()})
    inbox = server.route_shares({u: n.share_keys(pks) for u, n in nodes.items()})
    nodes = {u: SecAggNode.from_bytes(n.to_bytes()) for u, n in nodes.items()}  # state survives a round trip
    masked = {u: nodes[u].masked_input(xs[u - 1], inbox[u]) for u in ids if u not in drop_after_shares}
    survivors, dropped = server.collect_inputs(masked)
    reveals = {u: nodes[u].unmask(survivors, dropped) for u in survivors}
    total, n = server.aggregate(reveals)
    return dequantize_sum(total, n, clip, levels), masked, survivors


def test_sum_is_exact_up_to_quantization():
    rng = np.random.default_rng(0)
    xs = [rng.uniform(-0.5, 0.5, 1000) for _ in range(4)]
    got, masked, _ = run(xs, threshold=3)
    assert np.allclose(got, np.sum(xs, axis=0), atol=4 * 2 / (1 << 20))


def test_masked_inputs_reveal_nothing_individually():
    xs = [np.full(2000, 0.3), np.full(2000, -0.3), np.zeros(2000)]
    _, masked, _ = run(xs, threshold=2)
    for y in masked.values():
        # a masked input is uniform on Z_2^32: mean ~ 2^31, no trace of the constant input
        u = y.astype(np.float64) / MOD
        assert abs(u.mean() - 0.5) < 0.03 and abs(u.var() - 1 / 12) < 0.01


def test_dropout_after_sharing_is_tolerated():
    rng = np.random.default_rng(1)
    xs = [rng.uniform(-0.5, 0.5, 300) for _ in range(5)]
    got, _, survivors = run(xs, threshold=3, drop_after_shares=(2, 4))
    assert survivors == [1, 3, 5]
    assert np.allclose(got, xs[0] + xs[2] + xs[4], atol=1e-4)


def test_secagg_plus_neighbourhood():
    rng = np.random.default_rng(2)
    xs = [rng.uniform(-0.5, 0.5, 100) for _ in range(7)]
    got, _, _ = run(xs, threshold=2, neighbours=4, drop_after_shares=(3,))
    assert np.allclose(got, np.sum(xs, axis=0) - xs[2], atol=1e-4)


def test_too_many_dropouts_fail_loudly():
    xs = [np.zeros(10) for _ in range(4)]
    with pytest.raises(SecAggError, match="only 2 masked inputs"):
        run(xs, threshold=3, drop_after_shares=(1, 2))


def test_node_refuses_to_reveal_both_shares_of_one_node():
    p = Params((1, 2, 3), 2, 1.0, 1 << 10, 4)
    n = SecAggNode(1, p)
    with pytest.raises(SecAggError):
        n.unmask([2], [2])


def test_neighbourhood_is_symmetric():
    for k in (2, 3, 4, 5):
        p = Params(tuple(range(1, 10)), 2, 1.0, 16, 1, neighbours=k)
        for u in p.node_ids:
            for v in p.neighbourhood(u):
                assert u in p.neighbourhood(v)


def test_a_node_answers_the_stages_in_order_only():
    p = Params((1, 2, 3), 2, 1.0, 1 << 10, 4)
    n = SecAggNode(1, p)
    with pytest.raises(SecAggError, match="before secagg_keys"):
        n.share_keys({})
    pks = {u: SecAggNode(u, p).public_keys() for u in (2, 3)}
    pks[1] = n.public_keys()
    with pytest.raises(SecAggError, match="secagg_keys was already answered"):
        n.public_keys()
    n.share_keys(pks)
    with pytest.raises(SecAggError, match="secagg_shares was already answered"):
        n.share_keys(pks)  # re-sharing would hand out shares of a second self-mask seed
    with pytest.raises(SecAggError, match="before secagg_masked"):
        n.unmask([1], [])
    n = SecAggNode.from_bytes(n.to_bytes())  # the stage survives the state round trip
    n.masked_input(np.zeros(4), {})
    n.unmask([1], [])
    with pytest.raises(SecAggError, match="already answered"):
        n.unmask([1], [])


def test_the_server_runs_the_stages_in_order_only():
    server = SecAggServer(Params((1, 2), 2, 1.0, 16, 1))
    with pytest.raises(SecAggError, match="before secagg_keys"):
        server.collect_inputs({})
