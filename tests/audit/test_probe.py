"""Empirical privacy probe (Steinke, Nasr & Jagielski 2023): the bound is large with DP-SGD's noise
off and stays under the accountant's claim with it on."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from cairn.cli import cli
from node.probe import ProbeConfig, run_probe, synthetic_base
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


def test_probe_noise_off_bound_is_large():
    r = CliRunner().invoke(cli, ["audit", "probe", "--synthetic", "--noise-multiplier", "0", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    print("noise off:", res)
    assert res["noise_multiplier"] == 0 and math.isinf(res["claimed_epsilon"])
    # members are plainly visible without noise (deterministic: no noise, seeded sampling): 2.2,
    # well above anything the noise-on run reaches (< 1.5 but for ~3e-6 of runs)
    assert res["epsilon_lower_bound"] >= 2.0


def test_probe_noise_on_bound_stays_under_claim():
    res = run_probe(synthetic_base(100, 4, 64), ProbeConfig(canaries=200, steps=20, sampling_probability=0.5,
                                                            noise_multiplier=1.5, lr=0.5, delta=1e-5))
    print("noise on:", res.to_dict())
    assert 0 < res.claimed_epsilon < math.inf
    assert res.epsilon_lower_bound < res.claimed_epsilon and res.consistent
    # far below the noise-off run's 2.2: with the noise on, a bound of 1.5 needs 39/40 or 74/80 correct
    # guesses where 27/40 and 52/80 are typical (fails by chance ~3e-6 per run; 1.0 failed ~2e-3)
    assert res.epsilon_lower_bound < 1.5
