import numpy as np
import pytest

from coordinator.aggregation import aggregate, trimmed_mean


def test_fedavg_is_the_mean():
    ups = [np.array([1.0, 2.0]), np.array([3.0, 6.0])]
    assert np.allclose(aggregate(ups), [2.0, 4.0])


@pytest.mark.parametrize("method", ["median", "trimmed_mean"])
def test_robust_aggregation_resists_a_poisoned_update(method):
    rng = np.random.default_rng(0)
    honest = [rng.normal(0.1, 0.01, 1000) for _ in range(4)]
    poisoned = np.full(1000, -1e6)
    robust = aggregate(honest + [poisoned], method)
    assert np.abs(robust - 0.1).max() < 0.05
    assert np.abs(aggregate(honest + [poisoned], "fedavg") - 0.1).max() > 1e5  # the mean is not robust


def test_trim_bounds_checked():
    with pytest.raises(ValueError):
        trimmed_mean([np.zeros(2), np.zeros(2)], trim=1)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate([np.zeros(2)], "mode")


def test_query_refusals_are_summarised_by_the_rule_they_name():
    from coordinator.server_app import refusal_summary

    refused = {
        "n1": "refused by policy rule privacy.allowed_releases: release kind 'coverage' is not allowed",
        "n2": "refused by policy rule privacy.allowed_releases: release kind 'coverage' is not allowed",
        "n3": "refused by policy rule privacy.min_contributors: 1 eligible contributors, the policy needs at least 20",
        "n4": "no reply (node failed or timed out)",
    }
    assert refusal_summary(refused) == " (by other: 1, privacy.allowed_releases: 2, privacy.min_contributors: 1)"
    assert refusal_summary({}) == ""
