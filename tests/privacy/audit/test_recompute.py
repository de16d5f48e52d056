"""The auditor's independent epsilon recomputation (privacy/audit/recompute.py)."""

from pathlib import Path

import pytest
from dp_accounting import dp_event as dpe
from dp_accounting.pld import pld_privacy_accountant

from privacy.accounting import epsilon_of
from privacy.audit import recompute
from privacy.audit.recompute import FINE_DISCRETIZATION_INTERVAL, PLDComposer, recompute_epsilons
from privacy.events import (
    ComposedEvent,
    DiscreteGaussianEvent,
    DiscreteLaplaceEvent,
    GaussianEvent,
    PoissonSampledEvent,
    SelfComposedEvent,
    event_to_proto,
)


@pytest.mark.parametrize("event", [
    dpe.GaussianDpEvent(1.5),
    dpe.SelfComposedDpEvent(dpe.GaussianDpEvent(4.0), 7),
    dpe.LaplaceDpEvent(3.0),
    dpe.DiscreteLaplaceDpEvent(0.3, 2),
    dpe.SelfComposedDpEvent(dpe.PoissonSampledDpEvent(0.05, dpe.GaussianDpEvent(1.1)), 30),
    dpe.PoissonSampledDpEvent(0.2, dpe.LaplaceDpEvent(2.0)),
    dpe.ComposedDpEvent([dpe.GaussianDpEvent(5.0), dpe.SelfComposedDpEvent(dpe.LaplaceDpEvent(8.0), 3)]),
], ids=lambda e: type(e).__name__)
def test_composer_is_dp_accountings_pld_accountant_where_both_apply(event):
    """Same public constructors, same arguments: the same numbers as dp_accounting's PLDAccountant."""
    mine = PLDComposer(1e-3)
    mine.compose(event)
    theirs = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-3)
    theirs.compose(event)
    assert mine.epsilon(1e-6) == theirs.get_epsilon(1e-6)


def test_independent_recomputation_matches_node_accountant_and_is_separate_code():
    # the auditor never runs the node's accountant code; only verify_ledger's optional reproduction
    # (ledgers.py, recompute_epsilon=True, which the bundle audit does not use) imports it
    for module in Path(recompute.__file__).parent.glob("*.py"):
        if module.name != "ledgers.py":
            src = module.read_text()
            for name in ("privacy.accountant", "privacy.accounting", "from privacy import accountant"):
                assert name not in src, f"{module} mentions {name}"
    history = [
        SelfComposedEvent(PoissonSampledEvent(0.1, GaussianEvent(1.2, 1.0)), 20),
        SelfComposedEvent(DiscreteGaussianEvent(6.0, 1), 3),
        ComposedEvent((DiscreteLaplaceEvent(4.0, 1), GaussianEvent(8.0, 1.0))),
    ]
    mine = recompute_epsilons([event_to_proto(e) for e in history], 1e-6)
    for i in range(len(history)):
        node = epsilon_of(history[: i + 1], 1e-6).epsilon
        assert min(mine[i]) == pytest.approx(node, rel=0.01)


def test_discrete_gaussian_claim_confirmed_on_the_fine_grid():
    """A battle-count query's event, where the auditor's fast coarse grid is ~2% looser than the
    node's fine PLD: the claim must be confirmed on the fine grid, not called under-reported."""
    ev = SelfComposedEvent(DiscreteGaussianEvent(217.875, 8), 40)
    claim = epsilon_of([ev], 1e-6).epsilon
    coarse = min(recompute_epsilons([ev.to_proto()], 1e-6)[0])
    fine = min(recompute_epsilons([ev.to_proto()], 1e-6, FINE_DISCRETIZATION_INTERVAL)[0])
    assert coarse >= fine  # both pessimistic; the coarser grid is the looser bound
    assert fine == pytest.approx(claim, rel=1e-3)
