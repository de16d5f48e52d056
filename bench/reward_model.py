"""Reward-model benchmark: where the DP noise goes, and what it costs (issue 11).  Prints tables.

Synthetic communities (node/synth/: real prompts and responses from ../shared/data, pairwise
preferences of N members each following a planted, community-specific rule) are trained and scored
on held-out rule-labelled pairs whose prompts no contributor saw. The default run (bench/dp_compare.py,
bench/dp_modes.py), one table from one run:

- local DP (each community DP-SGD with its own noise, the coordinator averages) vs distributed DP
  (one DP-SGD step over the union per round, each community a discrete Gaussian share of the noise,
  privacy/distributed_dp.py run in-process) vs central DP (a trusted curator, the bound) vs
  non-private, at epsilon 1, 3, 8, for 3 and 10 communities of 300 and 2,000 members;
- global vs specialised accuracy per community, for communities with their own taste (`--gamma`).

`--pooling` prints the older table instead (3 communities: does pooling help, federated DP at
epsilon 1/3/8 vs each community alone, DP-SGD throughput); `--flower` / `--deployment` time rounds
of the real Flower Simulation Engine / loopback Deployment Engine.

    .venv/bin/python bench/reward_model.py [--quick] [--features hashed|minilm] [--gamma 1.0] [--seeds 1]
    .venv/bin/python bench/reward_model.py --pooling [--contributors 2000] [--flower]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore")

from model.features import featurizer_for  # noqa: E402
from model.presets import PRESETS, preset_config  # noqa: E402
from model.reward_model import RewardHead, state_to_vector, vector_to_state  # noqa: E402
from model.training_config import TRAINING  # noqa: E402
from node.dpsgd import ContributorTensors, contributor_tensors_from_arrays, pair_accuracy, train_dp, train_nonprivate  # noqa: E402
from node.pairs import group_by_contributor, pairs_from_records  # noqa: E402
from node.synth import load_text_pool, split_pool, synth_records  # noqa: E402
from privacy.accounting.calibration import noise_multiplier_for  # noqa: E402

DELTA = 1e-6


class TableFeatures:
    """Precomputed features for a fixed set of texts (the planted rule lives in this space)."""

    def __init__(self, featurizer, texts):
        self.dim = featurizer.dim
        self.F = featurizer.encode(texts)
        self.row = {t: i for i, t in enumerate(texts)}

    def encode(self, texts):
        """Rows of the precomputed table for `texts`."""
        return self.F[[self.row[t] for t in texts]]


def tensors(records, feats: TableFeatures, max_pairs: int) -> ContributorTensors:
    """Contributor tensors of `records` over the precomputed table."""
    groups = group_by_contributor(pairs_from_records(records))
    rows = [[(feats.row[p.prompt], feats.row[p.chosen], feats.row[p.rejected], p.target, p.weight) for p in ps]
            for ps in groups.values()]
    return contributor_tensors_from_arrays(feats.F, rows, max_pairs, list(groups))


def accuracy(head, tests) -> float:
    """Mean pair accuracy over the test sets."""
    return float(np.mean([pair_accuracy(head, t) for t in tests]))


def federated(nodes, tests, *, epsilon, rounds, local_steps, C, lr, expected_batch, hidden, seed=0) -> float:
    """FedAvg over nodes; each node's local round is user-level DP-SGD (epsilon=None: no noise)."""
    torch.manual_seed(seed)
    head = RewardHead(nodes[0].dim, hidden)
    g = state_to_vector(head)
    plans = []
    for data in nodes:
        q = min(0.2, expected_batch / data.n_contributors)
        z = noise_multiplier_for(epsilon, DELTA, q, rounds * local_steps) if epsilon else 0.0
        plans.append((q, z))
    for r in range(rounds):
        updates = []
        for i, (data, (q, z)) in enumerate(zip(nodes, plans)):
            h = RewardHead(data.dim, hidden)
            h.load_state_dict(vector_to_state(g, h))
            train_dp(h, data, noise_multiplier=z, max_grad_norm=C, sampling_probability=q, steps=local_steps, lr=lr,
                     sampling_seed=seed * 1000 + r * 10 + i, noise_seed=seed * 1000 + r * 10 + i + 5)
            updates.append(state_to_vector(h) - g)
        g = g + np.mean(updates, axis=0)
    head.load_state_dict(vector_to_state(g, head))
    return accuracy(head, tests)


def throughput(data: ContributorTensors, hidden: int, steps: int = 30) -> tuple[float, float]:
    """(non-private, DP) real pairs per second on the same head and batch size, interleaved."""
    q = min(1.0, 256 / data.n_contributors)
    np_times, dp_times = [], []
    for _ in range(3):
        h = RewardHead(data.dim, hidden)
        t = time.perf_counter()
        train_nonprivate(h, data, steps=steps, batch_size=256, lr=1e-3)
        np_times.append(time.perf_counter() - t)
        h = RewardHead(data.dim, hidden)
        t = time.perf_counter()
        train_dp(h, data, noise_multiplier=1.0, max_grad_norm=0.1, sampling_probability=q, steps=steps, lr=1e-3)
        dp_times.append(time.perf_counter() - t)
    pairs = steps * 256 * data.n_pairs / data.n_contributors
    return pairs / np.median(np_times), pairs / np.median(dp_times)


def main() -> None:
    """Run the benchmark and print its tables (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--contributors", type=int, default=2000, help="--pooling: members per community")
    ap.add_argument("--pairs", type=int, default=TRAINING.max_pairs_per_contributor)
    ap.add_argument("--features", choices=sorted(PRESETS), default="hashed")
    ap.add_argument("--rounds", type=int, default=TRAINING.rounds, help="--pooling: federated rounds")
    ap.add_argument("--local-steps", type=int, default=TRAINING.local_steps, help="--pooling: local steps per round")
    ap.add_argument("--clip", type=float, default=TRAINING.max_grad_norm)
    ap.add_argument("--lr", type=float, default=TRAINING.lr)
    ap.add_argument("--batch", type=int, default=TRAINING.expected_batch, help="--pooling: expected batch")
    ap.add_argument("--hidden", type=int, default=TRAINING.hidden, help="--pooling: hidden width")
    ap.add_argument("--epsilons", default="1,3,8")
    ap.add_argument("--quick", action="store_true", help="smoke run (under 2 minutes); with --pooling: only epsilon 8")
    ap.add_argument("--pooling", action="store_true", help="the older pooling table instead of issue 11's tables")
    ap.add_argument("--communities", default="3,10", help="numbers of communities (table 1)")
    ap.add_argument("--members", default="300,2000", help="members per community (table 1)")
    ap.add_argument("--steps", type=int, default=60, help="DP-SGD steps T of every mode (table 1)")
    ap.add_argument("--local-rounds", type=int, default=2, help="local DP: FedAvg rounds of T / rounds local steps")
    ap.add_argument("--q", type=float, default=TRAINING.sampling_rate, help="Poisson rate (capped by --max-batch)")
    ap.add_argument("--q-grid", default="", help="table 1: also these Poisson rates (below the capped --q), each "
                    "with T = round(steps x rate / q); every mode gets its best grid point, e.g. 0.05,0.02")
    ap.add_argument("--max-batch", type=int, default=400, help="cap on the expected batch over the union (run time)")
    ap.add_argument("--cmp-hidden", type=int, default=8, help="hidden width of the head in tables 1 and 2")
    ap.add_argument("--test-members", type=int, default=150, help="held-out rule-labelled contributors per community")
    ap.add_argument("--seeds", type=int, default=1, help="seeds each figure is averaged over")
    ap.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, first-seed + 1, ...")
    ap.add_argument("--jobs", type=int, default=4, help="worker processes for table 1")
    ap.add_argument("--gamma", type=float, default=1.0, help="table 2: how much the communities' tastes differ")
    ap.add_argument("--spec-communities", type=int, default=3)
    ap.add_argument("--spec-members", type=int, default=2000)
    ap.add_argument("--spec-global-eps", type=float, default=4.0, help="table 2: epsilon of the global model")
    ap.add_argument("--spec-eps", type=float, default=4.0, help="table 2: epsilon of each community's fine-tune")
    ap.add_argument("--spec-steps", type=int, default=60)
    ap.add_argument("--spec-q", type=float, default=TRAINING.sampling_rate)
    ap.add_argument("--spec-lr", type=float, default=2e-3)
    ap.add_argument("--no-table2", action="store_true")
    ap.add_argument("--no-table1", action="store_true")
    ap.add_argument("--modes", default="", help="table 1: only these modes (nonprivate,central,distributed,local,"
                    "distributed-central-z)")
    ap.add_argument("--diagnostic", action="store_true",
                    help="table 1 also runs the distributed mechanism at central DP's z (accounting gap vs noise gap)")
    ap.add_argument("--flower", action="store_true", help="also time rounds in the Flower Simulation Engine")
    ap.add_argument("--deployment", action="store_true", help="also time rounds in the loopback Deployment Engine")
    ap.add_argument("--timing-only", action="store_true", help="only the per-round wall times (--flower/--deployment)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    if a.timing_only:
        print_round_times(simulation=a.flower, deployment=a.deployment)
        return
    if a.pooling:
        pooling(a)
    else:
        compare(a)
    if a.flower or a.deployment:
        print_round_times(simulation=a.flower, deployment=a.deployment)


def compare(a) -> None:
    """Issue 11's tables (bench/dp_compare.py)."""
    import logging

    from rich.console import Console

    from bench import dp_compare

    logging.getLogger("absl").setLevel(logging.ERROR)  # dp_accounting's RDP fallback warns per order
    if a.quick:
        a.communities, a.members, a.epsilons, a.steps, a.local_rounds = "3", "300", "8", 10, 2
        a.test_members, a.seeds, a.spec_members, a.spec_steps = 40, 1, 300, 10
    console = Console(stderr=True)
    t0 = time.time()
    pool = load_text_pool()
    train, test = split_pool(pool)
    texts = sorted({t for g in pool for t in ("user: " + g.prompt, *g.responses)})
    feats = TableFeatures(featurizer_for(a.features), texts)

    def build(n: int, members: int, gamma: float = 0.5) -> dp_compare.Setup:
        s = dp_compare.Setup(n, members)
        for c in range(1, n + 1):
            s.nodes.append(tensors(synth_records(members, a.pairs, 7, c, train, gamma=gamma, lexicon_texts=pool,
                                                 featurizer=feats), feats, a.pairs))
            s.tests.append(tensors(synth_records(a.test_members, 8, 7, c, test, gamma=gamma, lexicon_texts=pool,
                                                 label="rule", sample_seed=99, featurizer=feats), feats, 8))
            if a.q_grid:  # pairs that choose each mode's (q, T): other contributors than the tests' (seed 98)
                s.valid.append(tensors(synth_records(a.test_members, 8, 7, c, test, gamma=gamma, lexicon_texts=pool,
                                                     label="rule", sample_seed=98, featurizer=feats), feats, 8))
        return s

    res: dict = {}
    if not a.no_table1:
        setups = [build(n, m) for n in map(int, a.communities.split(",")) for m in map(int, a.members.split(","))]
        console.log(f"set-up {time.time() - t0:.0f} s: {', '.join(s.label for s in setups)} members, {a.features} "
                    f"features, {sum(t.n_pairs for t in setups[0].tests):,} held-out pairs for {setups[0].label}")
        res = dp_compare.table1(a, setups, console)
    if not a.no_table2:
        dp_compare.table2(a, build, console)
    console.log(f"total {time.time() - t0:.0f} s")
    if a.json:
        a.json.write_text(json.dumps({"table1": [[*k, *v] for k, v in res.items()]}, indent=2))


def pooling(a) -> None:
    """The older table: 3 communities, does pooling help, and DP-SGD throughput."""
    t0 = time.time()
    pool = load_text_pool()
    train, test = split_pool(pool)
    featurizer = featurizer_for(a.features)
    texts = sorted({t for g in pool for t in ("user: " + g.prompt, *g.responses)})
    feats = TableFeatures(featurizer, texts)
    comms = [1, 2, 3]
    nodes = [tensors(synth_records(a.contributors, a.pairs, 7, c, train, lexicon_texts=pool, featurizer=feats), feats, a.pairs)
             for c in comms]
    tests = [tensors(synth_records(400, 8, 7, c, test, lexicon_texts=pool, label="rule", sample_seed=99, featurizer=feats), feats, 8)
             for c in comms]
    print(f"set-up {time.time() - t0:.0f} s: {len(comms)} communities x {a.contributors} contributors x {a.pairs} pairs, "
          f"{a.features} features, {len(tests) * tests[0].n_pairs} held-out pairs", flush=True)

    rows: list[tuple[str, float]] = []
    pooled = ContributorTensors.concat(nodes)
    torch.manual_seed(0)
    h = RewardHead(feats.dim, a.hidden)
    train_nonprivate(h, pooled, steps=600, batch_size=512, lr=1e-3)
    ceiling = accuracy(h, tests)
    rows.append(("non-private, centralized (ceiling)", ceiling))
    print(rows[-1], flush=True)
    kw = dict(rounds=a.rounds, local_steps=a.local_steps, C=a.clip, lr=a.lr, expected_batch=a.batch, hidden=a.hidden)
    if not a.quick:
        rows.append(("federated, non-private", federated(nodes, tests, epsilon=None, **kw)))
        print(rows[-1], flush=True)
    eps_list = [8.0] if a.quick else [float(e) for e in a.epsilons.split(",")]
    for eps in eps_list:
        rows.append((f"federated, user-level DP, epsilon {eps:g}", federated(nodes, tests, epsilon=eps, **kw)))
        print(rows[-1], flush=True)
    fed8 = dict(rows).get("federated, user-level DP, epsilon 8")
    singles = []
    if not a.quick:
        for i, c in enumerate(comms):
            singles.append(federated([nodes[i]], tests, epsilon=8.0, **kw))
            rows.append((f"community {c} alone, user-level DP, epsilon 8", singles[-1]))
            print(rows[-1], flush=True)
    np_tp, dp_tp = throughput(nodes[0], a.hidden)

    print()
    print(f"{'setting':<48} {'held-out accuracy':>18} {'share of ceiling gain':>22}")
    for name, acc in rows:
        print(f"{name:<48} {acc:>18.3f} {(acc - 0.5) / (ceiling - 0.5):>22.1%}")
    if fed8 is not None and singles:
        print(f"\npooling helps: federated DP at epsilon 8 ({fed8:.3f}) vs best single community ({max(singles):.3f})")
    print(f"\n{'throughput (pairs/s, head {0}->{1}->1, batch 256)'.format(2 * feats.dim, a.hidden):<48} {'':>18}")
    print(f"{'non-private':<48} {np_tp:>18,.0f}")
    print(f"{'user-level DP-SGD (Opacus ghost clipping)':<48} {dp_tp:>18,.0f}   ratio {dp_tp / np_tp:.2f}")
    if a.json:
        a.json.write_text(json.dumps({"rows": rows, "throughput": [np_tp, dp_tp]}, indent=2))


def print_round_times(simulation: bool, deployment: bool) -> None:
    """Wall time per round of the real apps (3 small nodes, SecAgg+ off and on), from runs of 1 and 3
    rounds: per round = (t3 - t1) / 2, the rest is start-up, hello and ledger collection."""
    import tempfile

    from coordinator.server_app import FederationConfig
    from coordinator.simulation import run_simulation_federation
    from tests.e2e.conftest import make_community

    hashed = preset_config("hashed")
    print(f"\n{'engine':<44} {'secagg':>7} {'s per round':>12} {'fixed s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        nodes = [make_community(Path(tmp) / f"n{i}", f"c{i}", i, n_contributors=200) for i in range(3)]
        engines = []
        if simulation:
            def sim(rounds, secagg, tag):
                run_simulation_federation([n.path for n in nodes], FederationConfig(
                    out=f"{tmp}/s{tag}", rounds=rounds, local_steps=20, featurizer=hashed, secagg=secagg,
                    federation_id=f"bench-sim-{tag}"), "node.client_app:app")
            engines.append(("Flower Simulation Engine", sim))
        if deployment:
            from deploy.local import LocalDeployment

            def dep(rounds, secagg, tag):
                with LocalDeployment([n.path for n in nodes], Path(tmp) / f"w{tag}") as d:
                    d.run(rounds, Path(tmp) / f"d{tag}", featurizer=hashed, local_steps=20, secagg=secagg,
                          federation_id=f"bench-dep-{tag}")
            engines.append(("Deployment Engine, loopback, TLS + auth", dep))
        for name, fn in engines:
            for secagg in (False, True):
                times = {}
                for rounds in (1, 3):
                    t = time.time()
                    fn(rounds, secagg, f"{rounds}{int(secagg)}")
                    times[rounds] = time.time() - t
                per = (times[3] - times[1]) / 2
                print(f"{name:<44} {'on' if secagg else 'off':>7} {per:>12.1f} {times[1] - per:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
