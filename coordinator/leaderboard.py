"""A model leaderboard from DP battle counts: Bradley-Terry, pooled and per community, with
confidence intervals that include the DP noise as well as sampling.

Input: battle counts per model pair and outcome, the sum of the nodes' noisy answers to the
`battle_counts` query (cells (m1, m2, outcome), m1 < m2, outcome "a" = m1 won, "b", "tie",
"both_bad"), with the variance of the DP noise in each cell.

Post-processing of noisy counts (post-processing cannot weaken DP), in this order:
1. negative counts are clamped to 0 (a count cannot be negative);
2. a pair is kept only if its noisy total over the four outcomes (before clamping) exceeds z
   standard deviations of the noise on that total (sqrt of the four cells' summed variance), with
   z = Phi^-1(1 - FALSE_PAIR_RATE / n_pairs): a Bonferroni-corrected one-sided test that the pair
   was compared at all, so that over all the pairs asked about, a pair nobody compared enters the
   leaderboard with probability at most FALSE_PAIR_RATE (keeping noise-only pairs would invent
   battles between models nobody compared);
3. models left without any kept pair are not ranked;
4. models that no chain of kept pairs connects (e.g. two communities that judged disjoint sets of
   models) form separate components: each is ranked on its own (ranks restart at 1), because
   Bradley-Terry cannot compare ratings across components (the ridge centres each one at 1000).
Inconsistent counts (e.g. a tie count larger than the pair total would allow) need no other repair:
after clamping each cell is a valid count, and the fit only uses win totals.

The fit (Chiang et al. 2024, "Chatbot Arena: An Open Platform for Evaluating LLMs by Human
Preference", https://arxiv.org/abs/2403.04132, Sec. 5; Bradley & Terry 1952, "Rank Analysis of
Incomplete Block Designs: I. The Method of Paired Comparisons", Biometrika 39(3/4),
https://doi.org/10.2307/2334029): P(i beats j) = sigma(s_i - s_j), maximum likelihood on
the win counts. As in the Arena's code, a tie counts as half a win for each side, and "both bad" is
a tie ("tie (bothbad)"). We solve by Newton's method with a tiny ridge (RIDGE) so the scores exist
when a model won or lost every battle, centre them, and report them on the Arena's Elo-like scale
1000 + 400 * s / ln(10).

Intervals: parametric bootstrap (Efron & Tibshirani 1993, "An Introduction to the Bootstrap",
ch. 6, https://doi.org/10.1201/9780429246593). Each replicate redraws every
cell as Poisson(clamped count) — sampling — plus Gaussian noise with the cell's reported DP noise
variance — the privacy noise — then post-processes and refits exactly as above; the interval is the
2.5/97.5 percentiles. (This randomness is simulation for an interval, not privacy noise: it is
drawn from a seeded numpy generator so the published intervals are reproducible.)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

import numpy as np

from protos.wire import OUTCOMES

RIDGE = 1e-3
FALSE_PAIR_RATE = 0.05  # chance, over all pairs asked, that an uncompared pair is kept
ELO_SCALE = 400.0 / math.log(10.0)
ELO_BASE = 1000.0
POST_PROCESSING = (
    "negative noisy counts clamped to 0; a model pair kept only when its clamped total reaches "
    "z noise standard deviations of that total, z Bonferroni-corrected so that an uncompared pair is kept with "
    f"probability at most {FALSE_PAIR_RATE:g} over all pairs; models without a kept pair not ranked; "
    "ties and both-bad count as half a win for each side (Chatbot Arena)"
)


def cells_from_items(items: Iterable[tuple[tuple, float]]) -> dict[tuple[str, str], np.ndarray]:
    """{(m1, m2, outcome): value} -> {(m1, m2): array of 4 values in OUTCOMES order}."""
    out: dict[tuple[str, str], np.ndarray] = {}
    for key, v in items:
        m1, m2, o = key
        out.setdefault((m1, m2), np.zeros(4))[OUTCOMES.index(o)] += float(v)
    return out


def post_process(cells: dict[tuple[str, str], np.ndarray], variances: dict[tuple[str, str], np.ndarray] | float = 0.0
                 ) -> dict[tuple[str, str], np.ndarray]:
    """Rules 1-2 of the module docstring: clamp at 0, drop pairs indistinguishable from noise."""
    from scipy.stats import norm

    z = float(norm.isf(FALSE_PAIR_RATE / max(1, len(cells))))
    out = {}
    for pair, raw in cells.items():
        raw = np.asarray(raw, dtype=float)
        var = variances.get(pair, np.zeros(4)) if isinstance(variances, dict) else np.full(4, float(variances))
        sd_total = math.sqrt(float(np.sum(var)))
        c = np.maximum(raw, 0.0)
        if c.sum() <= 0 or raw.sum() <= z * sd_total:
            continue
        out[pair] = c
    return out


def win_matrix(cells: dict[tuple[str, str], np.ndarray], models: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """W[i, j] = wins of model i over model j, ties (and both-bad) as half a win each."""
    if models is None:
        models = sorted({m for p in cells for m in p})
    idx = {m: i for i, m in enumerate(models)}
    W = np.zeros((len(models), len(models)))
    for (m1, m2), c in cells.items():
        if m1 not in idx or m2 not in idx:
            continue
        half = 0.5 * (c[2] + c[3])
        W[idx[m1], idx[m2]] += c[0] + half
        W[idx[m2], idx[m1]] += c[1] + half
    return models, W


def fit_bradley_terry(W: np.ndarray, ridge: float = RIDGE, iters: int = 100) -> np.ndarray:
    """Centred Bradley-Terry log-strengths maximising sum_ij W_ij log sigma(s_i - s_j) - ridge/2 |s|^2."""
    n = W.shape[0]
    s = np.zeros(n)
    N = W + W.T
    for _ in range(iters):
        d = s[:, None] - s[None, :]
        p = 1.0 / (1.0 + np.exp(-d))
        grad = (W - N * p).sum(axis=1) - ridge * s
        w = N * p * (1 - p)
        H = w.copy()
        np.fill_diagonal(H, 0.0)
        H[np.diag_indices(n)] = -w.sum(axis=1) + np.diag(w) - ridge
        step = np.linalg.lstsq(H, -grad, rcond=None)[0]  # H is singular along (1,...,1) when ridge = 0
        s = s + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return s - s.mean()


def to_elo(s: np.ndarray) -> np.ndarray:
    """Bradley-Terry scores on the Arena's Elo-like scale: ELO_BASE + ELO_SCALE * s."""
    return ELO_BASE + ELO_SCALE * s


def bt_scores(cells: dict[tuple[str, str], np.ndarray]) -> dict[str, float]:
    """Elo-scale scores from (already post-processed) cells."""
    models, W = win_matrix(cells)
    if not models:
        return {}
    return dict(zip(models, to_elo(fit_bradley_terry(W)).tolist()))


def components(cells: dict[tuple[str, str], np.ndarray], models: list[str]) -> list[int]:
    """Connected component of each model in the graph of kept pairs, numbered 1.. by size (largest first)."""
    parent = {m: m for m in models}

    def find(m):
        while parent[m] != m:
            parent[m] = parent[parent[m]]
            m = parent[m]
        return m

    for a, b in cells:
        if a in parent and b in parent:
            parent[find(a)] = find(b)
    roots = [find(m) for m in models]
    size, first = Counter(roots), {}
    for m, r in sorted(zip(models, roots)):
        first.setdefault(r, m)  # each component's alphabetically first model breaks ties in size
    number = {r: i + 1 for i, r in enumerate(sorted(size, key=lambda r: (-size[r], first[r])))}
    return [number[r] for r in roots]


def leaderboard(cells: dict[tuple[str, str], np.ndarray], variances: dict[tuple[str, str], np.ndarray] | float = 0.0,
                replicates: int = 200, seed: int = 0, level: float = 0.95) -> dict:
    """The ranked table with bootstrap intervals (sampling + DP noise) from noisy cells."""
    kept = post_process(cells, variances)
    models, W = win_matrix(kept)
    if not models:
        return {"models": [], "pairs_used": 0, "pairs_dropped": len(cells), "components": 0}
    point = to_elo(fit_bradley_terry(W))
    rng = np.random.default_rng(seed)
    boot = np.full((replicates, len(models)), np.nan)
    pairs = list(kept)
    lam = np.array([kept[p] for p in pairs])
    sd = np.sqrt(np.array([variances.get(p, np.zeros(4)) if isinstance(variances, dict) else np.full(4, float(variances))
                           for p in pairs]))
    for b in range(replicates):
        draw = rng.poisson(lam) + rng.normal(0.0, 1.0, lam.shape) * sd
        rep = post_process(dict(zip(pairs, draw)), variances)
        if not rep:
            continue
        ms, Wb = win_matrix(rep, models)
        present = Wb.sum(axis=0) + Wb.sum(axis=1) > 0
        if present.sum() < 2:
            continue
        sb = np.full(len(models), np.nan)
        sb[present] = to_elo(fit_bradley_terry(Wb[np.ix_(present, present)]))
        boot[b] = sb
    alpha = (1 - level) / 2
    lo = np.nanquantile(boot, alpha, axis=0) if np.isfinite(boot).any() else point
    hi = np.nanquantile(boot, 1 - alpha, axis=0) if np.isfinite(boot).any() else point
    battles = W.sum(axis=1) + W.sum(axis=0)
    comp = components(kept, models)
    order = sorted(range(len(models)), key=lambda i: (comp[i], -point[i]))
    rows, rank = [], 0
    for k, i in enumerate(order):
        rank = 1 if k == 0 or comp[i] != comp[order[k - 1]] else rank + 1
        rows.append({
            "rank": rank, "component": comp[i], "model": models[i], "rating": round(float(point[i]), 2),
            "ci_low": round(float(min(lo[i], point[i])), 2), "ci_high": round(float(max(hi[i], point[i])), 2),
            "battles": round(float(battles[i]), 1),
        })
    out = {"models": rows, "pairs_used": len(kept), "pairs_dropped": len(cells) - len(kept), "components": max(comp),
           "bootstrap": {"replicates": replicates, "seed": seed, "level": level}}
    if max(comp) > 1:
        out["components_note"] = ("models in different components were never compared, directly or through other "
                                  "models: each component is ranked on its own scale")
    return out


def kendall_tau(a: dict[str, float], b: dict[str, float]) -> float:
    """Kendall tau-b between two score tables on their common models (missing models ranked last)."""
    from scipy.stats import kendalltau

    models = sorted(set(a) | set(b))
    lo_a, lo_b = min(a.values(), default=0) - 1, min(b.values(), default=0) - 1
    tau = kendalltau([a.get(m, lo_a) for m in models], [b.get(m, lo_b) for m in models]).statistic
    return float(tau) if tau == tau else 0.0


def chart(board: dict, path, title: str = "Cairn DP leaderboard") -> None:
    """PNG: ratings with their intervals, best at the top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = board.get("models", [])
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(len(rows), 2) + 1.2))
    if rows:
        y = np.arange(len(rows))[::-1]
        r = np.array([x["rating"] for x in rows])
        lo = np.array([x["ci_low"] for x in rows])
        hi = np.array([x["ci_high"] for x in rows])
        ax.errorbar(r, y, xerr=[r - lo, hi - r], fmt="o", color="#2b6cb0", ecolor="#90a4c0", capsize=3)
        several = board.get("components", 1) > 1  # label each model's component: scales differ across them
        ax.set_yticks(y, [f"{x['model']} [{x['component']}]" if several else x["model"] for x in rows])
    else:
        ax.text(0.5, 0.5, "no model pair passed the noise threshold", ha="center", transform=ax.transAxes)
    ax.set_xlabel("Bradley-Terry rating (Elo scale), 95% CI incl. DP noise")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def from_query_result(res, names: dict[str, str] | None = None, replicates: int = 200, seed: int = 0) -> dict:
    """The published leaderboard from a `battle_counts` QueryResult (coordinator/queries.py):
    pooled over every answer in the sum, and per community from each node's own answer (not
    available under secure aggregation, where only the sum is seen)."""
    names = names or {}
    out = {
        "method": "Bradley-Terry MLE (Chiang et al. 2024), ties and both-bad as half wins; Elo scale 1000 + 400 s / ln 10",
        "intervals": "95% parametric bootstrap: Poisson sampling + Gaussian with each cell's reported DP noise variance",
        "post_processing": POST_PROCESSING,
        "query": res.query,
        "sources": res.sources(),
        "pooled": None,
        "per_community": {},
    }
    if res.pooled is not None:
        cells = cells_from_items(res.pooled_items())
        out["pooled"] = leaderboard(cells, res.pooled_variance, replicates, seed)
        out["pooled"]["noise_sd_per_cell"] = round(res.pooled_variance ** 0.5, 3)
    if res.secagg:
        out["per_community_note"] = "secure aggregation: only the sum of the answers was seen"
    for nid, a in sorted(res.answers.items()):
        if a.get("values") is None:
            continue
        cells = cells_from_items(zip(res.keys, a["values"]))
        board = leaderboard(cells, a["noise_variance_per_cell"], replicates, seed)
        board.update({"name": names.get(nid, ""), "noise_sd_per_cell": round(a["noise_variance_per_cell"] ** 0.5, 3),
                      "epsilon": a["epsilon"], "ledger_seq": a["ledger_seq"], "ledger_entry_hash": a["ledger_entry_hash"]})
        out["per_community"][nid] = board
    return out
