"""Calibration: the noise returned reaches the target epsilon (sound) and 1% less does not (tight)."""

import pytest

from privacy.accounting import epsilon_of
from privacy.accounting.calibration import discrete_gaussian_sigma_for, discrete_laplace_scale_for, noise_multiplier_for
from privacy.events import DiscreteGaussianEvent, DiscreteLaplaceEvent, SelfComposedEvent, dpsgd_event

DELTA = 1e-6


def test_noise_multiplier_calibration_is_sound_and_tight():
    q, steps, target = 0.05, 100, 2.0
    nm = noise_multiplier_for(target, DELTA, q, steps)
    achieved = epsilon_of([dpsgd_event(q, nm, steps)], DELTA).epsilon
    assert achieved <= target
    below = epsilon_of([dpsgd_event(q, nm * 0.99, steps)], DELTA).epsilon
    assert below > target


def test_discrete_calibrations():
    s = discrete_gaussian_sigma_for(1.0, DELTA, sensitivity=2, count=3)
    ev = SelfComposedEvent(DiscreteGaussianEvent(s, 2), 3)
    assert epsilon_of([ev], DELTA).epsilon <= 1.0
    assert epsilon_of([SelfComposedEvent(DiscreteGaussianEvent(s * 0.99, 2), 3)], DELTA).epsilon > 1.0
    assert discrete_laplace_scale_for(0.5, 0.0, sensitivity=2, count=3) == pytest.approx(12.0)
    t = discrete_laplace_scale_for(0.5, DELTA, sensitivity=1, count=100)
    assert t < 0.75 * 200.0  # many uses: tighter than basic composition's 200 once delta > 0
    assert epsilon_of([SelfComposedEvent(DiscreteLaplaceEvent(t, 1), 100)], DELTA).epsilon <= 0.5
