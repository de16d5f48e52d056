"""Bradley-Terry leaderboard from DP battle counts: fit, post-processing, intervals, shipped data."""

import json
import sys
from pathlib import Path

import numpy as np

from coordinator.leaderboard import (
    bt_scores,
    cells_from_items,
    chart,
    fit_bradley_terry,
    kendall_tau,
    leaderboard,
    post_process,
    win_matrix,
)
from protos.wire import partitions

ROOT = Path(__file__).resolve().parents[2]


def test_fit_recovers_strengths_and_ties_are_half_wins():
    true = np.array([-1.0, 0.0, 0.5, 1.5])
    n = len(true)
    W = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                W[i, j] = 10000 / (1 + np.exp(-(true[i] - true[j])))
    s = fit_bradley_terry(W, ridge=0.0)
    assert np.allclose(s, true - true.mean(), atol=1e-6)
    _, W2 = win_matrix({("a", "b"): np.array([3.0, 1.0, 2.0, 2.0])})
    assert W2.tolist() == [[0.0, 5.0], [3.0, 0.0]]


def test_post_processing_clamps_and_drops_noise_only_pairs():
    cells = {("a", "b"): np.array([50.0, -3.0, 10.0, 1.0]), ("a", "c"): np.array([2.0, -4.0, 1.0, 0.0])}
    kept = post_process(cells, variances=9.0)
    assert set(kept) == {("a", "b")} and kept[("a", "b")].tolist() == [50.0, 0.0, 10.0, 1.0]
    assert bt_scores(kept)["a"] > bt_scores(kept)["b"]


def test_bootstrap_intervals_include_dp_noise_and_cover_truth():
    rng = np.random.default_rng(3)
    true = {"m0": -1.0, "m1": -0.3, "m2": 0.4, "m3": 1.0}
    ms = sorted(true)
    exact = {}
    for i, a in enumerate(ms):
        for b in ms[i + 1:]:
            p = 1 / (1 + np.exp(-(true[a] - true[b])))
            wins = rng.binomial(300, p)
            exact[(a, b)] = np.array([wins, 300 - wins, 0, 0], dtype=float)
    quiet = leaderboard(exact, 0.0, replicates=100)
    noisy = leaderboard({k: v + rng.normal(0, 20, 4) for k, v in exact.items()}, 400.0, replicates=100)
    width = lambda b: np.mean([m["ci_high"] - m["ci_low"] for m in b["models"]])  # noqa: E731
    assert width(noisy) > width(quiet)  # DP noise widens the intervals
    assert [m["model"] for m in quiet["models"]] == ["m3", "m2", "m1", "m0"]
    for m in quiet["models"]:
        assert m["ci_low"] <= m["rating"] <= m["ci_high"]


def test_leaderboard_on_shipped_tulu_and_pandalm_split_across_nodes(shared_data, tmp_path):
    sys.path.insert(0, str(ROOT))
    from bench.leaderboard import dp_scores, exact_scores, shipped_nodes

    boards = shipped_nodes(shared_data)
    assert set(boards) == {"tulu1 (2 nodes)", "pandalm (1 node)"}
    nodes, models = boards["pandalm (1 node)"]
    assert models == ["bloom-7b", "cerebras-gpt-6.7B", "llama-7b", "opt-7b", "pythia-6.9b"]
    params = {"models": json.dumps(models), "max_partitions": "40", "max_rows_per_partition": "8"}
    truth = exact_scores(nodes, params)
    assert set(truth) == set(models)
    dp = dp_scores(nodes, params, 8.0)
    assert set(dp) <= set(models) and -1.0 <= kendall_tau(dp, truth) <= 1.0
    tnodes, tmodels = boards["tulu1 (2 nodes)"]
    assert len(tnodes) == 2 and set(tmodels) == {"chatgpt", "tulu_65B", "tulu_7B", "tulu_human_only_65B"}
    # non-private: ChatGPT tops Tulu-1's human eval, as in the paper (Wang et al. 2023, Fig. 4)
    tp = {"models": json.dumps(tmodels)}
    t_truth = exact_scores(tnodes, tp)
    assert max(t_truth, key=t_truth.get) == "chatgpt"
    from node.queries import dp_answer  # the nodes' side, as the shipped communities would answer

    pooled = np.sum([dp_answer("battle_counts", r, tp, 8.0, 1e-6)["values"] for r in tnodes], axis=0)
    cells = cells_from_items(zip(partitions("battle_counts", tp), pooled))
    board = leaderboard(cells, 2 * 50.0, replicates=30)
    chart(board, tmp_path / "lb.png")
    assert (tmp_path / "lb.png").read_bytes()[:4] == b"\x89PNG"


def test_uncompared_pairs_rarely_enter_the_leaderboard():
    """400 pairs nobody compared, noise sd 50 per cell: over 200 trials, a spurious pair is kept in
    at most ~5% of trials (the Bonferroni-corrected threshold), never in most."""
    rng = np.random.default_rng(11)
    trials_with_false_pair = 0
    for _ in range(200):
        cells = {(f"m{i}", f"n{i}"): rng.normal(0.0, 50.0, 4) for i in range(400)}
        cells[("a", "b")] = np.array([900.0, 300.0, 100.0, 0.0]) + rng.normal(0.0, 50.0, 4)
        kept = post_process(cells, variances=2500.0)
        assert ("a", "b") in kept
        trials_with_false_pair += len(kept) > 1
    assert trials_with_false_pair <= 0.05 * 200 + 3 * np.sqrt(0.05 * 0.95 * 200)


def test_models_never_compared_form_separate_components_ranked_on_their_own():
    """Two communities judged disjoint sets of models: no rating of one set can be compared with the
    other, so each component is ranked from 1 and the table says so."""
    cells = {("a", "b"): np.array([80.0, 20.0, 0.0, 0.0]), ("b", "c"): np.array([70.0, 30.0, 0.0, 0.0]),
             ("x", "y"): np.array([10.0, 90.0, 0.0, 0.0])}
    board = leaderboard(cells, 0.0, replicates=20)
    assert board["components"] == 2 and "never compared" in board["components_note"]
    rows = [(m["component"], m["rank"], m["model"]) for m in board["models"]]
    assert rows == [(1, 1, "a"), (1, 2, "b"), (1, 3, "c"), (2, 1, "y"), (2, 2, "x")]
    one = leaderboard({k: v for k, v in cells.items() if "x" not in k}, 0.0, replicates=20)
    assert one["components"] == 1 and "components_note" not in one
