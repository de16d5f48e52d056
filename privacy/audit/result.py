"""The auditor's result model: named checks, each PASS, FAIL, WARN or SKIP, and what was recomputed.

`AuditResult` is what `verify_bundle` returns and what `cairn audit verify --json` prints
(`to_dict`); the bundle verifies exactly when no check FAILs (`AuditResult.ok`). The tolerances the
epsilon checks apply live here too, so that reports can state them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"

# A claim may be at most this much (relative) below the independent recomputation before it FAILs:
# floating-point noise only. Claims since issue 10 are the Renyi privacy filter's figure ("rdp-filter",
# schedule "adaptive"), which the auditor recomputes with the same closed forms: they must agree to float
# noise. The same tolerance holds a recomputed epsilon to the cap.
EPSILON_TOLERANCE = 1e-9
# A PLD figure (a legacy claim: older ledgers, no `schedule`, claim PLD for parameters fixed in advance; a
# committed plan's figure; a query's own figure in statistics.json) is held to the auditor's FINE-grid PLD:
# two pessimistic PLDs on different discretisation paths agree there to ~1.5e-9 (relative, measured), so
# this is floating-point noise, not a margin.
PLD_TOLERANCE = 1e-8
# A claim more than this much above the recomputation is loose (WARN), never unsafe.
LOOSE_FACTOR = 1.25


@dataclass
class Check:
    """One named verification: `status` is PASS / FAIL / WARN / SKIP, `problems` one line per thing found."""

    name: str  # "file:model/model.safetensors", "ledger:community-0", ...
    status: str  # PASS / FAIL / WARN / SKIP
    message: str
    node_id: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Anything but FAIL."""
        return self.status != FAIL

    def __str__(self) -> str:
        head = f"{self.status} {self.name}: {self.message}"
        return "\n".join([head, *(f"    - {p}" for p in self.problems)])


@dataclass
class EntryAudit:
    """One ledger entry as the auditor read it: the claim beside the independent recomputation."""

    seq: int
    created_at: str
    release_kind: str
    round_id: str
    contributors: int
    mechanism: str  # plain words
    params: dict
    claimed_epsilon: float
    recomputed_epsilon: float | None  # cumulative, at the node's delta
    pld_epsilon: float | None
    rdp_epsilon: float | None
    target_delta: float
    accountant: str
    policy_hash: str
    schedule: str = ""  # "adaptive" (privacy-filter claim) or "" (a legacy fixed-in-advance claim)
    recomputed_filter: float | None = None  # the privacy filter's figure, recomputed independently
    plan_id: str = ""  # the training plan fixed in advance this entry belongs to, if any
    plan_epsilon: float | None = None  # that plan's own tight (PLD) epsilon as claimed: fixed in advance
    recomputed_plan: float | None = None  # ... and recomputed


@dataclass
class NodeAudit:
    """One node of the bundle: its declared delta and claims, what was recomputed, its cap if known."""

    node_id: str
    name: str
    delta: float
    claimed_epsilon: float  # manifest
    accountant: str
    recomputed_epsilon: float | None = None
    epsilon_cap: float | None = None
    schedule: str = ""  # of the last entry: "adaptive" (privacy-filter figure) or "" (legacy, fixed in advance)
    entries: list[EntryAudit] = field(default_factory=list)


@dataclass
class AuditResult:
    """Every check made on one bundle, in order, and the per-node audit behind the epsilon checks."""

    bundle: str
    checks: list[Check] = field(default_factory=list)
    nodes: list[NodeAudit] = field(default_factory=list)
    federation_id: str = ""
    created_at: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """The bundle verifies: no check FAILed."""
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        """The checks that FAILed, in order."""
        return [c for c in self.checks if c.status == FAIL]

    def check(self, name: str) -> Check | None:
        """The check called `name`, if it was made."""
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict:
        """The JSON form `cairn audit verify --json` prints."""
        return {
            "bundle": self.bundle, "ok": self.ok, "federation_id": self.federation_id, "created_at": self.created_at,
            "seconds": self.seconds,
            "failures": [c.name for c in self.failures],
            "checks": [asdict(c) for c in self.checks],
            "nodes": [asdict(n) for n in self.nodes],
        }

    def summary_lines(self) -> list[str]:
        """One block per check, then the verdict line (what `cairn audit verify` prints)."""
        out = [str(c) for c in self.checks]
        n_fail = len(self.failures)
        out.append(f"{'VERIFIED' if self.ok else 'NOT VERIFIED'}: {len(self.checks)} checks, {n_fail} failed "
                   f"({self.bundle})")
        return out
