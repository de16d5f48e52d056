"""The node's quote for a coordinator's plan: what the proposed releases would take its budget to.

The cap is enforced by a Renyi privacy filter over the ledger's events (privacy/accounting/filter.py,
`adaptive_epsilon`), which is looser than adding each release's own (PLD) epsilon, so only the node
can say what a plan costs. Before anything is spent the coordinator proposes: training (its request)
and the queries it means to ask, each at its epsilon. The node projects the filter's figure after
each release — the noisy min_contributors test first (privacy/release.py `check_contributors`), then
the release's event — and fits training: the largest training epsilon, at most the one proposed,
whose projection stays within `train_share` of the remaining budget and leaves room for every
proposed query that fits at all. The reply is what the ledger itself would publish after those
releases: no count of the community's members is in it (training's plan does not depend on one,
node/training.py `make_plan`). Invariant served: ARCHITECTURE.md invariant 2 (the node decides);
the gate still refuses anything over the cap.

Query events are projected as one discrete Gaussian calibrated to the query's epsilon (for a
Gaussian-noise release calibrated to a given PLD epsilon, the Renyi curve does not depend on how the
noise is split over cells: the composition of Gaussians is a Gaussian, Dong, Roth & Su 2022,
"Gaussian Differential Privacy", JRSS B, https://arxiv.org/abs/1905.02383, Corollary 3.3). The key
discovery (node/discovery.py) is Gaussian noise too; the small delta of its threshold is not
projected, so a quote may fall short of the ledger by a few hundredths — the gate still decides.

Incremental (issue 16): the quote starts from the ledger's running filter state (`Ledger.filter_state()`,
privacy/accounting/running.py) and adds each projected release to a copy of it, so a plan never replays
the ledger's history; each query's noise is calibrated once (privacy/accounting/calibration.py caches it).
"""

from __future__ import annotations

from typing import Sequence

from privacy.accounting import FilterState, epsilon_of, new_state, state_report
from privacy.accounting.calibration import discrete_gaussian_sigma_for
from privacy.events import DiscreteGaussianEvent, DpEvent, SelfComposedEvent, dpsgd_event

FIT_STEPS = 12  # geometric bisection steps on the training's noise multiplier
MAX_NOISE = 256.0  # no training when even this much noise does not fit
DISCOVERY_KIND = "discover_keys"


def query_event(kind: str, epsilon: float, delta: float) -> DpEvent:
    """The projected event of one aggregate release of `kind` at `epsilon` (see the module docstring)."""
    return DiscreteGaussianEvent(discrete_gaussian_sigma_for(float(epsilon), delta, 1, 1), 1)


def running(history: Sequence[DpEvent] | FilterState) -> FilterState:
    """The filter's running state of `history` (events, or a ledger's state as it is)."""
    if isinstance(history, FilterState):
        return history
    st = new_state()
    for e in history:
        st.add(e)
    return st


def quote(policy, history: Sequence[DpEvent] | FilterState, train_request, queries: list[tuple[str, float]], train_share: float) -> dict:
    """Fit the plan (see the module docstring). `train_request`: node.training.TrainRequest or None.
    Returns {"train_epsilon": fitted (0 = no training fits), "queries": [kinds that fit], "after":
    [[release, cumulative epsilon after it], ...] in order, "spent": the filter's figure now}.

    Training is fitted on its noise multiplier z (the filter's figure falls as z grows): the smallest
    z, at least the policy's floor, that keeps the projection within the limits; its own (PLD)
    epsilon, at most the one proposed, is what the coordinator then asks for (node/training.py
    calibrates z from it, so the real training costs at most what is projected)."""
    delta, cap = policy.delta, policy.epsilon_cap
    sigma = float(policy.min_contributors_noise)
    threshold = [DiscreteGaussianEvent(sigma, 1)] if sigma > 0 else []
    base = running(history)
    spent = state_report(base, delta).epsilon
    r = train_request
    q = min(policy.max_sampling_rate, float(r.sampling_rate)) if r is not None else 0.0

    def plan_event(z: float) -> DpEvent:
        return SelfComposedEvent(dpsgd_event(q, z, r.local_steps, r.max_grad_norm), r.rounds)

    def project(z: float | None, kinds: list[tuple[str, float]]) -> list[list]:
        st, out = base.copy(), []
        if z is not None:
            for e in [*threshold, plan_event(z)]:
                st.add(e)
            out.append(["train", state_report(st, delta).epsilon])
        for kind, eps in kinds:
            for e in [*threshold, query_event(kind, eps, delta)]:
                st.add(e)
            out.append([kind, state_report(st, delta).epsilon])
        return out

    limit = spent + train_share * (cap - spent)

    def fits(p: list[list]) -> bool:
        return (not p or p[-1][1] <= cap) and (not p or p[0][0] != "train" or p[0][1] <= limit)

    kinds = list(queries)
    while kinds and not fits(project(None, kinds)):  # the queries alone: drop from the end what cannot fit
        kinds.pop()
    best_z = None
    if r is not None and "train" in policy.allowed_releases and r.epsilon > 0:
        lo = max(float(policy.min_noise_multiplier), 1e-3)
        if fits(project(lo, kinds)):
            best_z = lo
        elif fits(project(MAX_NOISE, kinds)):
            hi = MAX_NOISE
            for _ in range(FIT_STEPS):
                mid = (lo * hi) ** 0.5
                lo, hi = (lo, mid) if fits(project(mid, kinds)) else (mid, hi)
            best_z = hi
    train_eps = 0.0
    if best_z is not None:
        train_eps = min(float(r.epsilon), epsilon_of([plan_event(best_z)], delta).epsilon)
    return {"train_epsilon": train_eps, "queries": [k for k, _ in kinds], "after": project(best_z, kinds),
            "spent": spent}


def quote_request(policy, history: Sequence[DpEvent] | FilterState, plan_json: str) -> str:
    """The reply to a budget request carrying the coordinator's proposal (protos.wire.Key.PLAN):
    the quote as JSON. A malformed proposal is refused by rule (QueryError) before any work."""
    import json

    from node.training import TrainRequest, request_problem
    from privacy.policy import query_epsilon_problem
    from protos.wire import QUERY_KINDS, QueryError

    try:
        doc = json.loads(plan_json)
    except (ValueError, RecursionError) as e:  # nesting past the stack: refused, not a traceback
        raise QueryError(f"budget request: field 'plan' is not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise QueryError(f"budget request: field 'plan' must be a JSON object, got {type(doc).__name__}")
    try:
        train = TrainRequest.from_config(doc["train"]) if doc.get("train") else None
        raw_queries = doc.get("queries", [])
        if not isinstance(raw_queries, list) or len(raw_queries) > 64:
            raise ValueError("'queries' must be a list of at most 64 [kind, epsilon] pairs")
        queries = [(str(k), e) for k, e in raw_queries]
        share = doc.get("train_share", 0.5)
        if isinstance(share, bool) or not isinstance(share, (int, float)):
            raise ValueError(f"'train_share' must be a number, got {share!r}")
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise QueryError(f"budget request: field 'plan' is not a plan proposal ({e})") from None
    if train is not None and (problem := request_problem(train, policy)):
        raise QueryError(f"budget request: field 'plan.train': {problem}")
    if not 0 < share <= 1:
        raise QueryError(f"budget request: field 'plan.train_share' must be in (0, 1], got {share!r}")
    for k, e in queries:
        if k not in (*QUERY_KINDS, DISCOVERY_KIND):
            raise QueryError(f"budget request: field 'plan.queries' names an unknown kind {k!r}")
        problem = query_epsilon_problem(policy, e, f"field 'plan.queries' epsilon of {k}")
        if problem is None and e > policy.epsilon_cap:
            problem = f"field 'plan.queries' epsilon of {k} {e:g} is above the cap {policy.epsilon_cap:g}"
        if problem:
            raise QueryError(f"budget request: {problem}")
    queries = [(k, float(e)) for k, e in queries]
    return json.dumps(quote(policy, history, train, queries, float(share)))
