"""The data card: YAML header + Datasheets sections, paradigms, privacy facts, DP counts, licence."""

import yaml

from coordinator.datacard import bundle_licence, render


def test_datacard_header_and_sections():
    nodes = [{"node_id": "n1", "name": "clinic", "paradigm": "specific/prescriptive", "claimed_epsilon": 1.2,
              "delta": 1e-6, "accountant": "pld"},
             {"node_id": "n2", "name": "forum", "paradigm": "broad/descriptive", "claimed_epsilon": 0.0, "delta": 1e-6,
              "accountant": ""}]
    policies = {"n1": {"licences": ["CC-BY-4.0"], "epsilon_cap": 8.0}, "n2": {"licences": ["CC-BY-SA-4.0"]}}
    stats = {"queries": [{"query": {"name": "coverage"}, "pooled_noise_sd_per_cell": 3.2,
                          "pooled": [{"key": ["language", "en"], "value": 40}, {"key": ["language", "fr"], "value": -2}]}]}
    card = render("fed-1", nodes, policies, stats, None, "2026-01-01T00:00:00+00:00")
    head, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    meta = yaml.safe_load(head)
    assert meta["federation_id"] == "fed-1" and meta["licence"] == "CC-BY-SA-4.0"
    c = {x["name"]: x for x in meta["communities"]}
    assert c["clinic"]["paradigm"] == {"dimensions": "specific", "definitions": "prescriptive"}
    assert c["forum"]["paradigm"]["definitions"] == "descriptive" and c["clinic"]["privacy"]["claimed_epsilon"] == 1.2
    totals = meta["feedback_dp_counts"]["coverage"]["totals"]
    # unbiased: the unclamped sum, a 95% interval of +- 1.96 sd; what spans zero shows no total
    assert totals["language:en"] == {"estimate": 40.0, "ci95": [33.728, 46.272], "sd": 3.2, "spans_zero": False}
    assert totals["language:fr"]["estimate"] is None and totals["language:fr"]["spans_zero"]
    assert totals["language:fr"]["ci95"] == [-8.272, 4.272]
    assert "| coverage | language:fr | not distinguishable from 0 | [-8, 4] |" in card
    for section in ("## Motivation", "## Composition", "## Collection process", "## Uses", "## Limitations",
                    "## Distribution"):
        assert section in body
    assert "specific / prescriptive" in body


def test_datacard_without_queries_and_licences():
    card = render("fed-2", [{"node_id": "n", "name": "x", "paradigm": ""}])
    assert "No aggregate queries" in card
    assert bundle_licence([["CC0-1.0", "Apache-2.0"]]) == "CC-BY-4.0"
    assert bundle_licence([["proprietary"]]).startswith("see communities")
