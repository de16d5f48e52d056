"""Empirical epsilon lower bounds from samples of M(D) and M(D') (a statistical DP test).

For an output set S, (eps, delta)-DP requires P[M(D) in S] <= e^eps P[M(D') in S] + delta, so
eps >= ln((P_D(S) - delta) / P_D'(S)). With Clopper-Pearson bounds (lower on the numerator, upper on
the denominator, Bonferroni over all sets tried), the bound holds with probability >= 1 - alpha.
Sets tried: every threshold set {x >= t} and {x <= t}, in both directions.
"""

import math

import numpy as np
from scipy import stats


def _cp_lower(k, n, a):
    return 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))


def _cp_upper(k, n, a):
    return 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))


def empirical_epsilon_lower_bound(x, y, delta, alpha=1e-6, min_count=30):
    x, y = np.sort(np.asarray(x)), np.sort(np.asarray(y))
    n, m = len(x), len(y)
    ts = np.unique(np.concatenate([x, y]))
    sets = []
    for t in ts:
        kx_ge, ky_ge = n - np.searchsorted(x, t, "left"), m - np.searchsorted(y, t, "left")
        kx_le, ky_le = np.searchsorted(x, t, "right"), np.searchsorted(y, t, "right")
        sets += [(kx_ge, ky_ge), (kx_le, ky_le)]
    sets = [s for s in sets if max(s) >= min_count]
    a = alpha / (2 * max(len(sets), 1))
    best = 0.0
    for kx, ky in sets:
        for (k1, n1), (k2, n2) in (((kx, n), (ky, m)), ((ky, m), (kx, n))):
            num = _cp_lower(k1, n1, a) - delta
            den = _cp_upper(k2, n2, a)
            if num > 0 and den > 0:
                best = max(best, math.log(num / den))
    return best
