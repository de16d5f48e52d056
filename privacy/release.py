"""The release gate: the ONLY path by which a node's DP result leaves (ARCHITECTURE.md invariants 2 and 3).

    gate = ReleaseGate(ledger, policy)
    rel = gate.release("battle_counts", request, make_payload, contributors=n, cells=k)
    send(rel.payload)

Order of operations, each step refusing with PolicyViolation(rule=...) naming the policy rule:
 1. kind allowed (allowed_releases), answer size (max_release_cells);
 2. a repeated identical request (same kind and canonical request JSON) gets the cached earlier
    payload: no new noise, no new budget, no new ledger entry; one answered for secure aggregation
    is never served in the clear (secagg_only, issue 11);
 3. budget left (epsilon_cap): nothing is computed once the cap is spent; then enough contributors
    (min_contributors), decided on a NOISY count (`check_contributors`): the exact number of
    eligible contributors n is the node's secret, it is never written to the ledger nor said in a
    refusal (issue 10, finding 2);
 4. the payload is made, by the node's own code, under the node's Budget (never the coordinator's
    numbers): make_payload(budget) -> (payload_bytes, DpEvent);
 5. the event is checked: per-query epsilon (max_query_epsilon, aggregates), DP-SGD sampling rate
    (max_sampling_rate) and noise floor (min_noise_multiplier) for training;
 6. the ledger entry and the payload are committed in one durable transaction, with the cumulative
    cap re-checked inside it (epsilon_cap) by the Renyi privacy filter (privacy/accounting/filter.py),
    sound when the coordinator chose this release after seeing earlier answers;
 7. only then is the payload returned. A crash between 6 and 7 leaves the budget spent and the
    payload cached, never a release unaccounted; the retried request gets the cached payload.

Budget queries and the cap check read the ledger's running accounting state (privacy/ledger_accounting.py),
never a replay of its history (issue 16); a release's own epsilon is computed once per event shape
(privacy/accounting `epsilon_of` caches single events).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Callable

from privacy import samplers
from privacy.accounting import EpsilonReport, epsilon_of, flatten
from privacy.events import (
    DiscreteGaussianEvent,
    DistributedDiscreteGaussianEvent,
    DpEvent,
    EventError,
    PoissonSampledEvent,
    SelfComposedEvent,
    dpsgd_params,
)
from privacy.ledger import AlreadyReleased, CapExceeded, Ledger
from privacy.policy import Policy
from protos import ledger_pb2

AGGREGATE_KINDS_EXEMPT = ("train",)  # max_query_epsilon applies to aggregate queries, not training
THRESHOLD_PREFIX = "threshold:"  # ledger kind of a noisy min_contributors test: "threshold:<release kind>"
TOO_FEW = "too few eligible contributors (noisy threshold)"  # the whole refusal: no count in it
SECAGG_ONLY = "secagg_only"  # rule: a value released for secure aggregation never leaves in the clear


class PolicyViolation(Exception):
    """A release refused by the community's policy; `rule` is the policy field that refused it."""

    def __init__(self, rule: str, message: str):
        self.rule = rule
        super().__init__(f"refused by policy rule privacy.{rule}: {message}")


@dataclass(frozen=True)
class Budget:
    """What make_payload may spend: the node's policy, never the coordinator's request."""

    max_epsilon: float  # most this release may cost on its own, at `delta`
    remaining_epsilon: float  # cap minus spent, at `delta`
    delta: float
    min_noise_multiplier: float
    max_sampling_rate: float


@dataclass(frozen=True)
class Release:
    """What left the node: the payload and the signed ledger entry that accounts for it."""

    payload: bytes
    entry: ledger_pb2.LedgerEntry
    cached: bool  # True: the earlier answer to the same request, nothing new spent
    request_hash: str

    @property
    def seq(self) -> int:
        """The ledger entry's sequence number."""
        return self.entry.body.seq

    @property
    def entry_hash(self) -> str:
        """The ledger entry's hash, hex."""
        return bytes(self.entry.entry_hash).hex()

    @property
    def claimed_epsilon(self) -> float:
        """Cumulative epsilon claimed by the ledger entry."""
        return self.entry.body.claimed_epsilon


def canonical_json(obj) -> bytes:
    """Deterministic JSON (sorted keys, no spaces, no NaN) of a request."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def request_hash(kind: str, request: dict, secagg: bool = False) -> str:
    """Cache key: hex SHA-256 of the canonical JSON of {kind, request} (round ids are not part of it,
    so re-asking the same query in a later round still gets the cached answer). A release made for
    secure aggregation is cached under its own key ({kind, request, secagg: true}), so the gate knows
    it may leave only masked (`ReleaseGate.cached`, issue 11)."""
    body = {"kind": kind, "request": request, **({"secagg": True} if secagg else {})}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def ddg_params_of(event: DpEvent) -> tuple[float, float] | None:
    """(central noise multiplier, sampling rate) of a distributed DP-SGD event (privacy/distributed_dp.py
    `ddg_event`): the trust assumption's shares' total sigma over the clip, sqrt(shares) * sigma * gamma / clip,
    and the Poisson rate (1.0 when not subsampled); None for any other event."""
    q = 1.0
    while isinstance(event, (SelfComposedEvent, PoissonSampledEvent)):
        q = event.sampling_probability if isinstance(event, PoissonSampledEvent) else q
        event = event.event
    if not isinstance(event, DistributedDiscreteGaussianEvent):
        return None
    return math.sqrt(event.shares) * event.sigma * event.gamma / event.clip, q


def ddg_shares_of(event: DpEvent) -> int | None:
    """The honest shares (h) a distributed DP-SGD event's noise is sized for, or None for any other event."""
    while isinstance(event, (SelfComposedEvent, PoissonSampledEvent)):
        event = event.event
    return int(event.shares) if isinstance(event, DistributedDiscreteGaussianEvent) else None


def _base_kind(kind: str) -> str:
    return kind.split(":", 1)[1] if kind.startswith("query:") else kind


class ReleaseGate:
    """The only path by which a DP result leaves a node: policy checks, cache, ledger, then release."""

    def __init__(self, ledger: Ledger, policy: Policy, after_commit: Callable[[object], None] | None = None):
        self.ledger = ledger
        self.policy = policy
        # Test hook: called after the ledger commit and before the payload is returned, to inject
        # a crash (an exception, or os._exit in a subprocess).
        self.after_commit = after_commit

    # --- budget -----------------------------------------------------------------------------------

    def spent(self) -> EpsilonReport:
        """Cumulative epsilon of the node's ledger at the policy's delta."""
        return self.ledger.spent(self.policy.delta)

    def spent_epsilon(self) -> float:
        """Cumulative epsilon spent at the policy's delta."""
        return self.spent().epsilon

    def remaining_epsilon(self) -> float:
        """The policy's cap minus what is spent (never below 0)."""
        return max(0.0, self.policy.epsilon_cap - self.spent_epsilon())

    def budget(self, kind: str = "") -> Budget:
        """What one release of `kind` may spend, from the node's policy."""
        remaining = self.remaining_epsilon()
        per_query = remaining if _base_kind(kind) in AGGREGATE_KINDS_EXEMPT else min(remaining, self.policy.max_query_epsilon)
        return Budget(per_query, remaining, self.policy.delta, self.policy.min_noise_multiplier,
                      self.policy.max_sampling_rate)

    # --- checks -----------------------------------------------------------------------------------

    def check_request(self, kind: str, cells: int = 1) -> None:
        """Per-request rules, before anything is computed: kind allowed, answer size."""
        p = self.policy
        if _base_kind(kind) not in p.allowed_releases:
            raise PolicyViolation("allowed_releases", f"release kind {kind!r} is not allowed by this community "
                                  f"(allowed: {', '.join(p.allowed_releases)})")
        if cells > p.max_release_cells:
            raise PolicyViolation("max_release_cells", f"answer has {cells} cells, the policy allows at most "
                                  f"{p.max_release_cells}")

    def check_contributors(self, kind: str, contributors: int, round_id: str = "") -> None:
        """The policy's min_contributors, decided without revealing the exact count n.

        Noisy threshold: release the bit [n + Z >= min_contributors], Z ~ discrete Gaussian(sigma =
        policy.min_contributors_noise) from the secure sampler (Canonne, Kamath & Steinke 2020,
        https://arxiv.org/abs/2004.00010; the count has sensitivity 1 under add/remove one person).
        The bit is post-processing of the noisy count, so it costs DiscreteGaussianEvent(sigma, 1),
        appended to the ledger as its own entry ("threshold:<kind>", cap checked) BEFORE the noise is
        drawn and the decision made (ARCHITECTURE.md invariant 2): a refusal spends it too. With
        min_contributors_noise = 0 the policy declares the threshold exact (and public)."""
        p = self.policy
        sigma = float(p.min_contributors_noise)
        if sigma == 0:
            if contributors < p.min_contributors:
                raise PolicyViolation("min_contributors", "too few eligible contributors (exact threshold, made public "
                                      "by this community's policy: privacy.min_contributors_noise = 0)")
            return
        try:
            self.ledger.append(THRESHOLD_PREFIX + kind, DiscreteGaussianEvent(sigma, 1), p.delta, p.sha256(),
                               round_id=round_id, epsilon_cap=p.epsilon_cap)
        except CapExceeded as e:
            raise PolicyViolation("epsilon_cap", f"the noisy min_contributors test would take cumulative epsilon to "
                                  f"{e.projected.epsilon:.4f} > cap {p.epsilon_cap} at delta {p.delta}") from None
        if int(contributors) + int(samplers.discrete_gaussian(sigma)) < p.min_contributors:
            raise PolicyViolation("min_contributors", TOO_FEW)

    def check_event(self, kind: str, event: DpEvent) -> EpsilonReport:
        """Per-release rules on the event the node is about to release; returns its own cost."""
        p = self.policy
        for (_, q), _ in flatten([event]).items():
            if q < 1.0 and q > p.max_sampling_rate:
                raise PolicyViolation("max_sampling_rate", f"sampling probability {q} > {p.max_sampling_rate}")
        if _base_kind(kind) == "train":
            sgd = dpsgd_params(event)
            ddg = ddg_params_of(event) if sgd is None else None
            z = sgd.noise_multiplier if sgd is not None else (ddg[0] if ddg is not None else None)
            if z is None:
                raise PolicyViolation("min_noise_multiplier", "a train release must be one DP-SGD event "
                                      "(privacy.events.dpsgd_event or privacy.distributed_dp.ddg_event), so that its "
                                      "noise can be checked")
            if z < p.min_noise_multiplier:
                raise PolicyViolation("min_noise_multiplier", f"noise multiplier {z:.4g} is below "
                                      f"the policy floor {p.min_noise_multiplier}")
            h = ddg_shares_of(event) if ddg is not None else None
            if h is not None and h > p.trust.min_honest_nodes:  # each share too small for the honest nodes counted on
                raise PolicyViolation("trust.min_honest_nodes", f"noise shares sized for {h} honest nodes; this "
                                      f"community counts on at most {p.trust.min_honest_nodes}")
        # cheap structural rules above first; the accountant only for what passes them
        own = epsilon_of([event], p.delta)
        if _base_kind(kind) not in AGGREGATE_KINDS_EXEMPT and own.epsilon > p.max_query_epsilon:
            raise PolicyViolation("max_query_epsilon", f"this query would cost epsilon {own.epsilon:.4f} "
                                  f"> {p.max_query_epsilon} at delta {p.delta} (too little noise)")
        if not math.isfinite(own.epsilon):
            raise PolicyViolation("epsilon_cap", "the release has unbounded epsilon")
        return own

    # --- the release ------------------------------------------------------------------------------

    def cached(self, kind: str, request: dict, secagg: bool = False) -> tuple[ledger_pb2.LedgerEntry, bytes] | None:
        """The (entry, payload) that answered this request before, or None. A value released for secure
        aggregation is only ever released masked (issue 11; ARCHITECTURE.md invariant 3): re-asked without
        secagg it is refused (rule secagg_only), never served in the clear. One released in the clear is
        served again under secagg (it is public already): no fresh noise either way."""
        hit = self.ledger.cached(request_hash(kind, request, secagg))
        if hit is not None:
            return hit
        other = self.ledger.cached(request_hash(kind, request, not secagg))
        if other is not None and not secagg:
            raise PolicyViolation(SECAGG_ONLY, "this request was answered for secure aggregation (ledger entry "
                                  f"{other[0].body.seq}): its value leaves this node only masked, re-ask it with secagg")
        return other

    def release(
        self,
        kind: str,
        request: dict,
        make_payload: Callable[[Budget], tuple[bytes, DpEvent]] | None = None,
        contributors: int | None = 0,
        round_id: str = "",
        *,
        cells: int = 1,
        event: DpEvent | None = None,
        payload: bytes | None = None,
        plan: tuple[str, DpEvent] | None = None,
        secagg: bool = False,
    ) -> Release:
        """Release through the policy and the ledger. Give `make_payload(budget)` (preferred: no
        noise is drawn for a cached or refused request), or an already computed `payload` and its
        `event`. `contributors`: the exact eligible count, used only by `check_contributors` (never
        written anywhere); None when the caller already ran that test for this release (a training
        plan runs it once, at its first round, for all its rounds). `plan`: (plan id, the whole plan's
        event) when this release is one round of a training plan fixed in advance (privacy/ledger.py).
        `secagg`: the payload leaves only masked, by secure aggregation (see `cached`)."""
        if (make_payload is None) == (payload is None):
            raise TypeError("give exactly one of make_payload or payload (with event)")
        if payload is not None and event is None:
            raise TypeError("a precomputed payload needs its event")
        self.check_request(kind, cells)
        rh = request_hash(kind, request, secagg)
        hit = self.cached(kind, request, secagg)
        if hit is not None:
            return Release(hit[1], hit[0], True, rh)
        budget = self.budget(kind)
        if budget.remaining_epsilon <= 0:
            raise PolicyViolation("epsilon_cap", f"the cap of {self.policy.epsilon_cap} at delta {self.policy.delta} "
                                  "is spent")
        if contributors is not None:
            self.check_contributors(kind, contributors, round_id)
            budget = self.budget(kind)  # the test spent a little
        if make_payload is not None:
            payload, event = make_payload(budget)
        if not isinstance(payload, (bytes, bytearray)):
            raise TypeError("payload must be bytes")
        payload = bytes(payload)
        if event is None:
            raise EventError("make_payload returned no DP event: nothing leaves without its event")
        self.check_event(kind, event)
        try:
            committed = self.ledger.append(
                kind, event, self.policy.delta, self.policy.sha256(),
                round_id=round_id, request_hash=rh, payload=payload, epsilon_cap=self.policy.epsilon_cap, plan=plan)
        except CapExceeded as e:
            raise PolicyViolation("epsilon_cap", f"cumulative epsilon would be {e.projected.epsilon:.4f} > cap "
                                  f"{self.policy.epsilon_cap} at delta {self.policy.delta} ({e.projected.label})") from None
        except AlreadyReleased as e:  # answered concurrently by another process: serve that answer
            return Release(e.payload, e.entry, True, rh)
        if self.after_commit is not None:
            self.after_commit(committed.entry)
        return Release(payload, committed.entry, False, rh)
