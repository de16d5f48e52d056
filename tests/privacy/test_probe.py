"""The one-run audit math (privacy/probe.py; Steinke, Nasr & Jagielski 2023, "Privacy Auditing with
One (1) Training Run", NeurIPS 2023, https://arxiv.org/abs/2305.08846): p-values and epsilon lower bounds."""

import math

import numpy as np
import pytest

from privacy.probe import best_lower_bound, epsilon_lower_bound, guess_and_count, p_value


def test_p_value_and_bound_math():
    # pure DP, all r guesses right: P[Bin(r, p) >= r] = p^r = alpha  =>  eps = log(p / (1 - p))
    r, alpha = 40, 0.05
    p = alpha ** (1 / r)
    assert epsilon_lower_bound(r, r, r, 0.0, alpha) == pytest.approx(math.log(p / (1 - p)), rel=1e-6)
    # chance-level guessing proves nothing; more correct guesses prove more; delta only weakens it
    assert epsilon_lower_bound(200, 40, 20, 1e-5) == 0.0
    assert epsilon_lower_bound(200, 40, 30, 1e-5) < epsilon_lower_bound(200, 40, 36, 1e-5)
    assert epsilon_lower_bound(200, 40, 36, 1e-2) < epsilon_lower_bound(200, 40, 36, 0.0)
    assert p_value(100, 20, 15, 0.5, 0.0) > p_value(100, 20, 15, 0.1, 0.0)
    scores, members = [5, 4, 3, 2, 1, 0], [True, True, False, True, False, False]
    assert guess_and_count(scores, members, 2, 2) == (4, 4)
    best, all_ = best_lower_bound(np.arange(100.0), np.arange(100) >= 50, 1e-5)
    assert best.correct == best.guesses and best.epsilon_lower_bound > 1 and len(all_) >= 3
