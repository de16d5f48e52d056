"""Issue 11's benchmark tables (run by bench/reward_model.py): where the noise goes, and what it costs.

Table 1, one run: non-private, central DP (trusted curator, the bound), distributed DP (min_honest =
all communities, and = half of them) and local DP (each community its own noise, FedAvg), at each
epsilon, for each (communities x members) configuration; held-out accuracy on rule-labelled pairs
whose prompts no contributor saw, and the gain over chance (0.5) in points.
Table 2: communities with their own taste (`--gamma`): the global distributed-DP model against the
same model fine-tuned on each community's own data by its own DP-SGD.

Every mode uses the same head, the same clipping norm, Poisson rate q and number of DP-SGD steps T
(local DP: R rounds of T/R local steps each, so each community's members are sampled T times too).
With `--q-grid`, (q, T) is a per-mode hyperparameter: every mode runs on the same grid (T scaled so the
expected passes over the data stay the same), a grid table shows every point, and table 1's cell is each
mode's best point by mean accuracy on separate validation pairs (another draw of rule-labelled
contributors over the held-out prompts, `sample_seed` 98: no contributor or pair of the test set), with
the q and T it used; the cell reports the test accuracy of that point.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import dp_modes as M

CHANCE = 0.5


@dataclass
class Setup:
    """Everything one configuration trains on."""

    n: int  # communities
    members: int  # members per community
    nodes: list = field(default_factory=list)
    tests: list = field(default_factory=list)
    valid: list = field(default_factory=list)  # validation pairs that choose (q, T) under --q-grid (not the tests)

    @property
    def label(self) -> str:
        return f"{self.n} x {self.members:,}"


def rate(a, s: Setup) -> float:
    """The Poisson rate of a configuration: `--q`, lowered so that the expected batch over the union stays
    within `--max-batch` (a bench choice to bound the run time; every mode of a configuration uses it)."""
    return min(a.q, a.max_batch / (s.n * s.members))


def grid(a, s: Setup) -> list[tuple[float, int]]:
    """The shared (q, T) grid every mode of configuration `s` is tuned over: `rate(a, s)` with `--steps`, and each
    rate of `--q-grid` below it with T = round(steps x rate / q), so the expected passes over the data stay
    the same. Without `--q-grid`, only (rate, steps)."""
    base = rate(a, s)
    qs = [base] + [float(x) for x in (a.q_grid or "").split(",") if x and float(x) < base - 1e-9]
    return [(q, max(1, round(a.steps * base / q))) for q in qs]


def modes(a, s: Setup) -> list[tuple[str, str, int | None]]:
    """(row label, mode, min_honest) of table 1 for configuration `s`."""
    half = max(1, math.ceil(s.n / 2))
    rows = [("central DP (trusted curator)", "central", None),
            (f"distributed DP, min_honest {s.n} (all)", "distributed", s.n)]
    if half != s.n:
        rows.append((f"distributed DP, min_honest {half} (half)", "distributed", half))
    rows.append(("local DP (own noise, FedAvg)", "local", None))
    if a.diagnostic:  # the same mechanism at central DP's z: how much of the gap is accounting, not noise
        rows.append((f"diagnostic: distributed mechanism at central z, min_honest {s.n}", "distributed-central-z", s.n))
    return rows


def run_mode(a, s: Setup, mode: str, eps: float, h: int | None, seed: int, tick, q: float | None = None,
             steps: int | None = None) -> tuple:
    """(trained head, z) of one mode at one epsilon for one seed, at rate q and T steps (default: rate(a, s), --steps)."""
    q = rate(a, s) if q is None else q
    steps = a.steps if steps is None else steps
    kw = dict(q=q, C=a.clip, lr=a.lr, hidden=a.cmp_hidden, seed=seed)
    if mode == "central":
        head, z = M.central(s.nodes, epsilon=eps, steps=steps, **kw)
    elif mode == "local":
        head, z = M.local(s.nodes, epsilon=eps, rounds=a.local_rounds, local_steps=max(1, steps // a.local_rounds), **kw)
    else:
        zc = M.noise_multiplier_for(eps, M.DELTA, q, steps) if mode == "distributed-central-z" else None
        head, z = M.distributed(s.nodes, epsilon=eps, steps=steps, min_honest=h, tick=tick, z=zc, **kw)
    return head, z


_WORK: dict = {}  # what forked workers inherit: the arguments and the built configurations


def _job(key: tuple) -> tuple[tuple, float, float, float, float]:
    """One (configuration, mode, epsilon, seed) in a worker: (key, test accuracy, z, seconds, validation
    accuracy (nan without validation pairs))."""
    import torch

    torch.set_num_threads(1)  # many small jobs side by side: one thread each
    a, setups = _WORK["a"], _WORK["setups"]
    label_s, label, mode, h, eps, seed, q, steps = key
    s = setups[label_s]
    t = time.time()
    if mode == "nonprivate":
        head = M.non_private(s.nodes, steps=steps, q=q, lr=a.lr, hidden=a.cmp_hidden, seed=seed)
        z = 0.0
    else:
        head, z = run_mode(a, s, mode, eps, h, seed, None, q, steps)
    valid = M.accuracy(head, s.valid) if s.valid else float("nan")
    return key, M.accuracy(head, s.tests), z, time.time() - t, valid


def table1(a, setups: list[Setup], console: Console) -> dict:
    """Train every mode of every configuration (`--jobs` worker processes, forked after the set-up, the most
    expensive jobs first); print the markdown table; return the figures."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    eps_list = [float(e) for e in a.epsilons.split(",")]
    seeds = range(a.first_seed, a.first_seed + a.seeds)
    keys = [(s.label, "non-private", "nonprivate", None, None, seed, *g) for s in setups for g in grid(a, s)[:1]
            for seed in seeds]
    keys += [(s.label, label, mode, h, eps, seed, *g) for s in setups for label, mode, h in modes(a, s)
             for eps in eps_list for seed in seeds for g in grid(a, s)]
    if a.modes:  # only these modes (e.g. --modes distributed-central-z with --diagnostic)
        keys = [k for k in keys if k[2] in a.modes.split(",")]
    cost = {"distributed": 3.0, "distributed-central-z": 2.8, "local": 1.5}  # rough relative cost, to start the long jobs first
    size = {s.label: min(a.max_batch, a.q * s.n * s.members) + 20 * s.n for s in setups}
    keys.sort(key=lambda k: -cost.get(k[2], 1.0) * size[k[0]] * (1 + 0.002 * k[7]))  # per-step overhead too
    _WORK.update(a=a, setups={s.label: s for s in setups})
    got: dict = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as prog:
        overall = prog.add_task(f"table 1 ({a.jobs} worker(s))", total=len(keys))
        with ProcessPoolExecutor(max_workers=a.jobs, mp_context=mp.get_context("fork")) as ex:
            for fut in as_completed([ex.submit(_job, k) for k in keys]):
                key, acc, z, secs, valid = fut.result()
                got.setdefault((*key[:5], *key[6:]), []).append((acc, z, valid))
                prog.advance(overall)
                prog.console.log(f"{key[0]:>9} {key[1]:<40} eps {key[4] or 0:>3g} q {key[6]:.3g} T {key[7]} "
                                 f"seed {key[5]}: acc {acc:.3f} z {z:.3f} ({secs:.0f} s)")
    # every (q, T) of the grid: (mean test accuracy over seeds, z); each mode's cell is its best grid point by
    # mean VALIDATION accuracy (the test pairs never choose), the same rule for every mode
    full = {(k[0], k[1], k[4], k[5], k[6]): (float(np.mean([v[0] for v in vs])), float(np.mean([v[1] for v in vs])))
            for k, vs in got.items()}
    chooser = {(k[0], k[1], k[4], k[5], k[6]): float(np.mean([v[2] for v in vs])) for k, vs in got.items()}
    res: dict = {}
    best: dict = {}
    for (ls, label, e, q, steps), (acc, z) in sorted(full.items(), key=lambda kv: (kv[0][3], kv[0][4])):
        by = chooser[(ls, label, e, q, steps)]
        by = acc if np.isnan(by) else by  # a single grid point: nothing to choose
        if (ls, label, e) not in best or by > best[(ls, label, e)]:
            best[(ls, label, e)] = by
            res[(ls, label, e)] = (acc, z, q, steps)
    if any(len(grid(a, s)) > 1 for s in setups):
        print_grid(full, eps_list, chooser)
    print_table1(a, setups, res, eps_list)
    return res


def print_grid(full: dict, eps_list: list[float], chooser: dict) -> None:
    """Every grid point of every mode (the figures each tuned cell was chosen from)."""
    print()
    print("Grid. Mean test accuracy (gain over chance, points; z) at each (q, T) of the shared grid; "
          "[v: mean validation accuracy, which chooses each mode's point].")
    print()
    print("| communities x members | mode | q | T | " + " | ".join(f"epsilon {e:g}" for e in eps_list) + " |")
    print("|---|---|---|---|" + "---|" * len(eps_list))
    rows = sorted({(k[0], k[1], k[3], k[4]) for k in full}, key=lambda r: (r[0], r[1], -r[2]))
    for ls, label, q, steps in rows:
        eps = eps_list if label != "non-private" else [None]
        cells = [cell(*full[k]) + f" [v {chooser[k]:.3f}]" if (k := (ls, label, e, q, steps)) in full else "-"
                 for e in eps]
        print(f"| {ls} | {label} | {q:.3g} | {steps} | " + " | ".join(cells) + " |")


def cell(acc: float, z: float | None = None, q: float | None = None, steps: int | None = None) -> str:
    """An accuracy with its gain over chance in points (and the noise multiplier, and the tuned q and T);
    "-" when not run."""
    if acc is None:
        return "-"
    out = f"{acc:.3f} (+{100 * (acc - CHANCE):.1f})"
    out += f", z {z:.2f}" if z else ""
    return out + (f", q {q:.3g} T {steps}" if q is not None else "")


def print_table1(a, setups: list[Setup], res: dict, eps_list: list[float]) -> None:
    """The markdown table, then the issue's Done-when figures."""
    print()
    print(f"Table 1. Held-out accuracy (gain over chance, points; z = noise multiplier), {a.features} features, "
          f"head {a.cmp_hidden} hidden, T = {a.steps} DP-SGD steps (local DP: {a.local_rounds} rounds x "
          f"{a.steps // a.local_rounds}), clip {a.clip}, delta {M.DELTA:g}, mean of {a.seeds} seed(s). Distributed DP "
          f"calibrated on the trust-assumption event (ddg_event) with min_honest = the number of communities "
          f"(and = half of them); SecAgg masking skipped (the masks cancel exactly in the modular sum).")
    print()
    print("| communities x members (q) | mode | " + " | ".join(f"epsilon {e:g}" for e in eps_list) + " |")
    print("|---|---|" + "---|" * len(eps_list))
    for s in setups:
        base = res.get((s.label, "non-private", None), (None,))
        print(f"| {s.label} (q {rate(a, s):.3g}) | non-private | {cell(*base)} |" + " |" * (len(eps_list) - 1))
        for label, _, _ in modes(a, s):
            print(f"| {s.label} | {label} | " + " | ".join(cell(*res.get((s.label, label, e), (None,))) for e in eps_list) + " |")
    print()
    for s in setups:
        rows = {label: label for label, _, _ in modes(a, s)}
        cen, dist, loc = (next(k for k in rows if k.startswith(p)) for p in ("central", "distributed", "local"))
        for e in eps_list:
            if not all((s.label, k, e) in res for k in (cen, dist, loc)):
                continue
            c, d, lo = (res[(s.label, k, e)][0] for k in (cen, dist, loc))
            share = (d - CHANCE) / (c - CHANCE) if c > CHANCE else float("nan")
            print(f"{s.label} eps {e:g}: distributed (all honest) {d:.3f} = {share:.0%} of the central gain "
                  f"(central {c:.3f}); distributed - central {100 * (d - c):+.1f} points; "
                  f"distributed - local {100 * (d - lo):+.1f} points")


def table2(a, build, console: Console) -> None:
    """Global (distributed DP) vs specialised accuracy per community, communities with their own taste."""
    s = build(a.spec_communities, a.spec_members, gamma=a.gamma)
    q = rate(a, s)
    with console.status(f"table 2: global model, distributed DP eps {a.spec_global_eps:g}, {s.label}, gamma {a.gamma:g}"):
        head, z = M.distributed(s.nodes, epsilon=a.spec_global_eps, steps=a.steps, q=q, C=a.clip, lr=a.lr,
                                hidden=a.cmp_hidden, min_honest=s.n)
    # node/specialize.py (`cairn node specialize`) runs train_dp from the global weights on the node's own
    # members, through its store and release gate; the bench runs the same DP-SGD in-process (no node directory)
    how = "node/specialize.py's method, train_dp from the global weights, in-process; plan-fixed PLD calibration"
    print()
    print(f"Table 2. Communities with their own taste (gamma {a.gamma:g}), {s.label} members: the global model "
          f"(distributed DP, epsilon {a.spec_global_eps:g}, z {z:.2f}) vs the same model fine-tuned on each community's "
          f"own data at epsilon {a.spec_eps:g} ({how}; {a.spec_steps} steps, q {a.spec_q:g}, lr {a.spec_lr:g}); "
          f"each community spends {a.spec_global_eps + a.spec_eps:g} in all. Accuracy on the community's own held-out "
          f"rule-labelled pairs.")
    print()
    print("| community | global | specialised | difference (points) |")
    print("|---|---|---|---|")
    diffs = []
    for i, (data, test) in enumerate(zip(s.nodes, s.tests)):
        with console.status(f"table 2: specialising community {i + 1}/{s.n}"):
            kw = dict(epsilon=a.spec_eps, steps=a.spec_steps, q=a.spec_q, C=a.clip, lr=a.spec_lr, hidden=a.cmp_hidden, seed=i)
            spec = M.specialise(head, data, **kw)
        g, sp = M.accuracy(head, [test]), M.accuracy(spec, [test])
        diffs.append(sp - g)
        print(f"| c{i + 1} | {g:.3f} | {sp:.3f} | {100 * (sp - g):+.1f} |")
    print(f"\nspecialised beats global on {sum(d > 0 for d in diffs)} of {len(diffs)} communities "
          f"(mean {100 * float(np.mean(diffs)):+.1f} points)")
