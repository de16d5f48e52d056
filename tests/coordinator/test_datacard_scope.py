"""Issue 10, finding 10: the data card says that epsilon and delta are per community, that a person in
several communities composes across them, and which accountant the claims come from."""

from coordinator.datacard import render


def test_datacard_states_the_scope_of_the_guarantee():
    card = render("fed-s", [{"node_id": "n", "name": "x", "paradigm": "", "claimed_epsilon": 1.5, "delta": 1e-6,
                             "accountant": "rdp-filter"}])
    text = " ".join(card.split())
    assert "Epsilon and delta are PER COMMUNITY" in text
    assert "several communities is protected by each separately" in text and "compose" in text
    assert "rdp-filter" in text
