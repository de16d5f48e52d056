import base64
import json
import re
import sqlite3

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy.accounting import adaptive_epsilon, epsilon_of
from privacy.events import DiscreteGaussianEvent, GaussianEvent, PoissonSampledEvent, SelfComposedEvent
from privacy.ledger import Ledger
from privacy.policy import Policy
from privacy.reports.node_report import budget_summary, plot_epsilon, render_html, render_markdown

POLICY = Policy(community="t", epsilon_cap=5.0, delta=1e-6)
TRAIN = SelfComposedEvent(PoissonSampledEvent(0.02, GaussianEvent(1.2)), 40)
QUERY = DiscreteGaussianEvent(8.0, 1)


@pytest.fixture(scope="module")
def summary():
    conn = sqlite3.connect(":memory:", isolation_level=None)
    ledger = Ledger(conn, Ed25519PrivateKey.generate(), "forum <one>")
    for r in range(2):
        ledger.append("train", TRAIN, 1e-6, POLICY.sha256(), round_id=f"fed/{r}")
        ledger.append("coverage", QUERY, 1e-6, POLICY.sha256(), round_id=f"fed/{r}", request_hash=f"q{r}")
    return budget_summary(ledger, POLICY)


def test_budget_summary_numbers(summary):
    # the cap's figure: the privacy filter (adaptive), not the PLD of a schedule fixed in advance (issue 10)
    total = adaptive_epsilon([TRAIN, QUERY] * 2, 1e-6).epsilon
    assert total > epsilon_of([TRAIN, QUERY] * 2, 1e-6).epsilon
    assert summary["spent"] == pytest.approx(total)
    assert summary["remaining"] == pytest.approx(5.0 - total)
    assert summary["method"] == "rdp-filter" and not summary["fixed_in_advance"] and "adaptive" in summary["label"]
    assert summary["unit"] == "contributor" and summary["delta"] == 1e-6
    assert summary["by_kind"]["train"]["epsilon"] == pytest.approx(adaptive_epsilon([TRAIN] * 2, 1e-6).epsilon)
    assert summary["plans"] == {}  # no plan committed in advance: no PLD figure anywhere
    assert summary["by_kind"]["coverage"]["releases"] == 2
    assert set(summary["by_round"]) == {"fed/0", "fed/1"}
    assert summary["timeline"][-1]["claimed_epsilon"] == pytest.approx(total)
    json.dumps(summary)  # JSON-able for `cairn node budget --json`


def test_markdown_says_it_in_plain_words(summary):
    md = render_markdown(summary)
    assert "one contributor" in md and "delta = 1e-06" in md and "Accountant: rdp-filter" in md
    assert "per community" in md and "compose" in md and "No training plan was committed in advance" in md
    assert md.count("| train | fed/") == 2 and "What is assumed" in md


def test_html_is_self_contained_with_a_png(summary, tmp_path):
    page = render_html(summary)
    assert "forum &lt;one&gt;" in page  # escaped
    m = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    assert m and base64.b64decode(m.group(1)).startswith(b"\x89PNG")
    assert "http://" not in page and "https://" not in page
    png = plot_epsilon(summary, tmp_path / "eps.png")
    assert (tmp_path / "eps.png").read_bytes() == png and png.startswith(b"\x89PNG")


def test_plan_fixed_pld_figure_only_for_a_committed_plan():
    ledger = Ledger(sqlite3.connect(":memory:", isolation_level=None), Ed25519PrivateKey.generate(), "n")
    plan = SelfComposedEvent(TRAIN, 3)
    for r in range(2):
        ledger.append("train", TRAIN, 1e-6, POLICY.sha256(), round_id=f"fed/{r}", plan=("train:fed", plan))
    ledger.append("coverage", QUERY, 1e-6, POLICY.sha256(), request_hash="q")
    s = budget_summary(ledger, POLICY)
    p = s["plans"]["train:fed"]
    assert p["epsilon"] == pytest.approx(epsilon_of([plan], 1e-6).epsilon) and p["method"] == "pld"
    assert (p["rounds_run"], p["planned_rounds"], p["schedule"]) == (2, 3, "plan-fixed")
    md = render_markdown(s)
    assert "train:fed | 2 / 3" in md and "fixed in advance (training plan committed before its first round)" in md
