"""Benchmark: how close is the DP leaderboard to the non-private one?

Prints Kendall tau between the Bradley-Terry leaderboard fitted on DP battle counts (each node's
answer from node/queries.dp_answer — contribution bounding, secure discrete Gaussian noise — summed
across nodes and post-processed as in coordinator/leaderboard.py) and the one fitted on the exact,
unbounded counts, at epsilon 1 and 8 per node (delta 1e-6), mean and sd over trials:

- shipped: Tulu-1 human eval + PandaLM human test set (../shared/data), split across 3 nodes by
  contributor (a person belongs to one community);
- arena: a synthetic arena of 24 models and 6000 contributors (1-12 battles each, ties and
  both-bad included) split across 5 nodes;
- current-arena: twelve model names of today (node/synth/arena.py CURRENT_MODELS) over 3 nodes, NO
  model list: each node's private key selection (privacy/mechanisms.py noisy_key_selection, as
  node/discovery.py runs it: 2 names per person, epsilon 1, selection delta 1e-8) finds the names, the union is
  counted (battle_counts at epsilon 1), and Kendall tau is measured against the PLANTED strengths
  (found = names discovered, ranked = names on the board).

Usage: .venv/bin/python bench/leaderboard.py [--trials N]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coordinator.leaderboard import bt_scores, cells_from_items, kendall_tau, post_process  # noqa: E402
from node.discovery import DISCOVERY_DELTA_SHARE  # noqa: E402
from node.queries import battle_rows, dp_answer, exact_counts, partitions  # noqa: E402
from node.synth import CURRENT_MODELS, arena_battles, arena_models, default_data_dir, named_arena  # noqa: E402
from privacy.mechanisms import noisy_key_selection  # noqa: E402
from protos.wire import DEFAULT_MAX_KEYS  # noqa: E402

DELTA = 1e-6


def node_of(contributor: str, n: int) -> int:
    """The node (0..n-1) a contributor belongs to: a stable hash of the id, so one person is in one community."""
    return int(hashlib.sha256(contributor.encode()).hexdigest()[:8], 16) % n


def shipped_nodes(data: Path) -> dict[str, tuple[list[list], list[str]]]:
    """Battle rows per node: Tulu-1 split over 2 nodes by evaluator (16 people), PandaLM on a third
    (3 annotators). Their models never meet, so each is its own leaderboard (a joint fit could not
    order models across the two)."""
    from node.importers import read_records

    tulu = [r[1] for r in read_records(data / "tulu1-human-eval" / "eval_annotations_tulu_1.shared.jsonl.gz", "tulu")
            if isinstance(r, tuple)]
    panda = [r[1] for r in read_records(data / "pandalm-human-testset" / "testset-v1.shared.jsonl.gz", "pandalm")
             if isinstance(r, tuple)]
    trows, prows = battle_rows(tulu), battle_rows(panda)
    out = {"tulu1 (2 nodes)": [[r for r in trows if node_of(r[0], 2) == i] for i in range(2)],
           "pandalm (1 node)": [prows]}
    return {k: (v, sorted({m for rows in v for _, p in rows for m in p[:2]})) for k, v in out.items()}


def synthetic_arena(n_models: int = 24, n_contributors: int = 6000, n_nodes: int = 5, seed: int = 7):
    """The synthetic arena of node/synth/arena.py (planted Bradley-Terry strengths, ties 20%, both-bad 5%,
    1-12 battles per contributor), its contributors dealt round-robin to `n_nodes` nodes."""
    strengths = arena_models(n_models, seed)
    nodes: list[list] = [[] for _ in range(n_nodes)]
    for who, a, b, o in arena_battles(n_contributors, strengths, seed):
        nodes[int(who.rsplit("-", 1)[1]) % n_nodes].append((who, (a, b, o)))
    return nodes, sorted(strengths)


def dp_scores(nodes: list[list], params: dict, epsilon: float) -> dict[str, float]:
    """Bradley-Terry scores fitted on the nodes' DP battle counts, summed, at `epsilon` per node."""
    keys = partitions("battle_counts", params)
    pooled = np.zeros(len(keys))
    var = 0.0
    for rows in nodes:
        ans = dp_answer("battle_counts", rows, params, epsilon, DELTA)
        pooled += np.array(ans["values"], dtype=float)
        var += ans["noise_parameter"] ** 2
    cells = cells_from_items(zip(keys, pooled))
    return bt_scores(post_process(cells, var))


def exact_scores(nodes: list[list], params: dict) -> dict[str, float]:
    """Bradley-Terry scores fitted on the exact, unbounded battle counts of all nodes."""
    counts = exact_counts("battle_counts", [r for rows in nodes for r in rows], params)
    return bt_scores(post_process(cells_from_items(counts.items()), 0.0))


def run(name: str, nodes, models, bounds, trials: int, epsilons=(1.0, 8.0)) -> list[dict]:
    """Kendall tau between the DP and the exact leaderboard, per epsilon, over `trials` noise draws."""
    import json

    params = {"models": json.dumps(models), "max_partitions": str(bounds[0]), "max_rows_per_partition": str(bounds[1])}
    truth = exact_scores(nodes, params)
    out = []
    for eps in epsilons:
        taus = [kendall_tau(dp_scores(nodes, params, eps), truth) for _ in range(trials)]
        out.append({"data": name, "models": len(truth), "contributors": len({r[0] for rows in nodes for r in rows}),
                    "nodes": len(nodes), "battles": sum(len(r) for r in nodes), "bounds": bounds, "epsilon": eps,
                    "tau_mean": float(np.mean(taus)), "tau_sd": float(np.std(taus)), "tau_min": float(np.min(taus))})
    return out


def current_arena(contributors_per_node: int, trials: int, n_nodes: int = 3, epsilon: float = 1.0) -> dict:
    """Private key selection then the leaderboard, no model list: tau against the planted strengths."""
    import json

    taus, found, ranked = [], [], []
    for t in range(trials):
        strengths = named_arena(CURRENT_MODELS, 13)
        nodes = [[(w, (a, b, o)) for w, a, b, o in arena_battles(contributors_per_node, strengths, 1000 * t + i,
                                                                   contributor_prefix=f"n{i}-u")]
                 for i in range(n_nodes)]
        names: set[str] = set()
        for rows in nodes:  # each node: (person, model name) rows, at most 2 names per person, thresholded
            model_rows = {(w, m) for w, p in rows for m in p[:2]}
            names |= set(noisy_key_selection(model_rows, DEFAULT_MAX_KEYS, epsilon, DELTA, DELTA * DISCOVERY_DELTA_SHARE).keys)
        params = {"models": json.dumps(sorted(names))}
        scores = dp_scores(nodes, params, epsilon) if len(names) >= 2 else {}
        taus.append(kendall_tau(scores, strengths))
        found.append(len(names))
        ranked.append(len(scores))
    return {"data": f"current-arena/{contributors_per_node}", "models": len(CURRENT_MODELS), "nodes": n_nodes,
            "contributors": contributors_per_node * n_nodes, "epsilon": epsilon, "found_min": min(found),
            "ranked_min": min(ranked), "tau_mean": float(np.mean(taus)), "tau_sd": float(np.std(taus)),
            "tau_min": float(np.min(taus)), "share_ge_085": float(np.mean(np.array(taus) >= 0.85))}


def main(argv=None) -> int:
    """Print the table; exit 1 when the synthetic arena's tau at epsilon 8 falls below 0.9."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10)
    args = ap.parse_args(argv)
    t0 = time.time()
    rows = []
    data = default_data_dir()
    if data.is_dir():
        # few, prolific annotators: every cell, up to 8 battles per cell per person
        for name, (nodes, models) in shipped_nodes(data).items():
            rows += run(name, nodes, models, (4 * len(models) * (len(models) - 1) // 2, 8), args.trials)
    nodes, models = synthetic_arena()
    rows += run("synthetic-arena", nodes, models, (6, 1), args.trials)
    print(f"{'data':<17} {'models':>6} {'contrib':>7} {'nodes':>5} {'battles':>7} {'bounds':>8} {'eps':>4}  "
          f"{'tau mean':>8} {'sd':>5} {'min':>5}")
    for r in rows:
        print(f"{r['data']:<17} {r['models']:>6} {r['contributors']:>7} {r['nodes']:>5} {r['battles']:>7} "
              f"{str(tuple(r['bounds'])):>8} {r['epsilon']:>4g}  {r['tau_mean']:>8.3f} {r['tau_sd']:>5.3f} {r['tau_min']:>5.3f}")
    print(f"({args.trials} trials each, delta {DELTA:g} per node, {time.time() - t0:.0f} s)")
    print()
    print("twelve current models, no model list (private key selection, then battle_counts; epsilon 1 each):")
    print(f"{'data':<20} {'contrib':>7} {'nodes':>5} {'found':>5} {'ranked':>6}  {'tau mean':>8} {'sd':>5} {'min':>5} "
          f"{'>=0.85':>6}")
    for n in (1000, 2000, 4000):
        r = current_arena(n, args.trials)
        print(f"{r['data']:<20} {r['contributors']:>7} {r['nodes']:>5} {r['found_min']:>5} {r['ranked_min']:>6}  "
              f"{r['tau_mean']:>8.3f} {r['tau_sd']:>5.3f} {r['tau_min']:>5.3f} {r['share_ge_085']:>6.2f}")
    arena8 = [r for r in rows if r["data"] == "synthetic-arena" and r["epsilon"] == 8.0][0]
    return 0 if arena8["tau_mean"] >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
