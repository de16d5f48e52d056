"""Honest statistics (issue 13): totals are unbiased sums of the nodes' unclamped noisy answers with
95% intervals from the reported noise; a dimension no node holds never shows a total.

Noise comes from the real secure sampler (privacy/samplers.py) at the sigma a node would use; the
checks are statistical, with bounds loose enough to fail by chance with probability < 1e-6."""

import math

import yaml

from coordinator.datacard import render
from coordinator.queries import QueryResult, noise_variance
from privacy.accounting.calibration import discrete_gaussian_sigma_for
from privacy.samplers import discrete_gaussian

DIMS = ("overall", "planted_empty")
BINS = 5
TRUE = {"overall": [10, 30, 60, 30, 10], "planted_empty": [0] * BINS}  # per node
NODES = 3
REPS = 200


def one_federation(sigma: float) -> dict:
    keys = [(d, str(b)) for d in DIMS for b in range(BINS)]
    res = QueryResult("rating_histogram", {"name": "rating_histogram", "params": {}, "epsilon": 1.0}, keys)
    for n in range(NODES):
        noise = discrete_gaussian(sigma, len(keys))
        values = [TRUE[d][int(b)] + int(z) for (d, b), z in zip(keys, noise)]
        res.answers[f"node{n}"] = {"ledger_seq": 1, "ledger_entry_hash": "00", "epsilon": 1.0, "mechanism": "discrete_gaussian",
                                   "noise_scale": sigma, "noise_variance_per_cell": noise_variance("discrete_gaussian", sigma),
                                   "values": values}
    res.pooled = [sum(a["values"][i] for a in res.answers.values()) for i in range(len(keys))]
    res.pooled_variance = NODES * noise_variance("discrete_gaussian", sigma)
    return res.to_dict()


def card_totals(stats: dict) -> tuple[dict, str]:
    card = render("fed", [{"node_id": "n", "name": "x", "paradigm": ""}], statistics={"queries": [stats]})
    meta = yaml.safe_load(card.split("---\n")[1])
    return meta["feedback_dp_counts"]["rating_histogram"]["totals"], card


def test_totals_are_unbiased_with_intervals_and_an_empty_dimension_shows_no_total():
    sigma = discrete_gaussian_sigma_for(1.0, 1e-6, 1, len(DIMS) * BINS)  # what a node spends 1 epsilon on
    true_total = NODES * sum(TRUE["overall"])
    sd_total = math.sqrt(BINS * NODES * sigma ** 2)
    covered = shown_empty = 0
    estimates = []
    for _ in range(REPS):
        stats = one_federation(sigma)
        # statistics.json: every pooled cell carries its interval, unclamped (negative values stay negative)
        assert all(c["ci95"][0] < c["value"] < c["ci95"][1] for c in stats["pooled"])
        totals, card = card_totals(stats)
        real, empty = totals["overall"], totals["planted_empty"]
        assert abs(real["sd"] - sd_total) < 0.01
        estimates.append(real["estimate"])
        covered += real["ci95"][0] <= true_total <= real["ci95"][1]
        if empty["spans_zero"]:
            assert empty["estimate"] is None
            assert "| rating_histogram | planted_empty | not distinguishable from 0 |" in card
        else:  # a 95% interval misses 0 about 1 time in 20; never with a large count
            shown_empty += 1
            assert abs(empty["estimate"]) < 5.5 * sd_total
    # coverage of the 95% interval (binomial(200, 0.95): 0.88..0.995 fails by chance with p < 1e-6)
    assert 0.88 <= covered / REPS <= 1.0
    assert shown_empty <= 30  # binomial(200, 0.05) exceeds 30 with p < 1e-7
    # unbiased: the mean of the estimates is the truth (within 5.5 standard errors)
    mean = sum(estimates) / REPS
    assert abs(mean - true_total) < 5.5 * sd_total / math.sqrt(REPS)
