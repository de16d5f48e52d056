"""The signed SecAgg+ run plan, the signed key pairs, and the node's checks of both against its own policy.

Owns what stops a malicious coordinator before any share leaves a node (Bonawitz et al. 2017 section 6,
"Practical Secure Aggregation", https://eprint.iacr.org/2017/281; Bell et al. 2020 section 4,
https://eprint.iacr.org/2020/704); protects ARCHITECTURE.md invariant 3.

- `RunPlan`: one aggregation's public parameters. The roster names each participant by its protocol id
  AND its ledger Ed25519 public key (the key its node id is derived from, privacy/keys.py). `digest()` binds
  the run id, the group (round or query), the roster, the threshold, the neighbour graph's degree and seed,
  and the encoding: anything signed over the digest belongs to this aggregation only.
- `SignedPlan`: the plan signed by the coordinator's Ed25519 key (coordinator/signing.py), kept for the
  bundle; a coordinator cannot later disown the roster or threshold it announced.
- `check_plan`: the node's own checks (each refusal a SecAggError `policy rule <name>: ...`, constants.Rule):
  its entry is its own ledger key; at least trust.secagg_min_peers other members, in the roster and in its
  neighbourhood; a sparse graph at Bell et al.'s degree and threshold (check_sparse_graph); a threshold
  t >= 2 with t > trust.secagg_threshold_fraction x (neighbourhood size + 1), so that no two disjoint
  parts of a neighbourhood can each reach t (two survivor views cannot both be confirmed by honest nodes
  alone); pinned peers when set.
- `sign_keys` / `check_key_signature`: every advertised SecAgg key pair (c_pk, s_pk) is signed by the
  node's ledger key over (plan digest, protocol id, c_pk, s_pk). A peer checks it against the ROSTER key of
  that id, so a coordinator can neither substitute keys (it holds no node's ledger key) nor replay a key
  pair from an earlier aggregation (another digest). This is Bonawitz et al.'s PKI assumption realised by
  the nodes' ledger keys, which the bundle publishes and auditors pin.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from privacy.keys import raw_public_key
from privacy.secagg.constants import Rule, SecAggError, refuse
from privacy.secagg.graph import degree_for, feasible_threshold

if TYPE_CHECKING:
    from privacy.secagg.protocol import Params

MODES = ("float", "integer")  # float: quantised by SecAgg (quantization.py); integer: values already in Z_{2^32}
_PLAN_DOMAIN = b"cairn/secagg/run-plan/v1\n"
_KEY_DOMAIN = b"cairn/secagg/key-pair/v1\n"


MAX_ID = (1 << 31) - 1  # protocol ids are 1..n: anything larger is a hostile plan, refused before any work
_TIE = 1e-9  # t within this of fraction x n counts as NOT above it: 0.57 x 100 is 56.99999999999999 in floats


def above(t: int, fraction: float, n: int) -> bool:
    """t > fraction x n, a rounding tie counted as not above (the safe side): fraction 0.57 with n = 100 must
    not accept t = 57 because the float product falls just below 57."""
    return t > fraction * n + _TIE * max(1, n)


def default_threshold(n: int, fraction: float = 0.5) -> int:
    """The least t >= 2 with t > fraction x n (n = neighbourhood size + 1): a strict majority by default."""
    return max(2, math.floor(fraction * n + _TIE * max(1, n)) + 1)


@dataclass(frozen=True)
class RunPlan:
    """One aggregation's public, coordinator-signed parameters (module docstring)."""

    run_id: str  # the federation id (Record.RUN) the aggregation belongs to
    group: str  # the round or query: "secagg-3", "query/battle_counts", ...
    roster: tuple[tuple[int, str], ...]  # (protocol id, ledger public key hex), sorted by id
    threshold: int
    neighbours: int  # SecAgg+ degree; 0 = every other node
    seed_hex: str  # the neighbour graph's seed (32 random bytes), fixed by this signed plan
    clip: float
    levels: int
    dim: int
    mode: str = "float"  # "float" | "integer" (MODES)

    def __post_init__(self):
        # every field a hostile coordinator controls is checked here, cheaply, before any graph or key work;
        # a failure is a refusal naming secagg_malformed (tests/privacy/secagg/test_attacks_hostile.py)
        if self.mode not in MODES:
            raise refuse(Rule.MALFORMED, f"run plan mode must be one of {MODES}, got {self.mode!r}")
        ids = [u for u, _ in self.roster]
        if any(type(u) is not int or not 1 <= u <= MAX_ID for u in ids) or ids != sorted(set(ids)):
            raise refuse(Rule.MALFORMED, f"run plan roster ids must be distinct integers in 1..{MAX_ID}, increasing")
        keys = [k for _, k in self.roster]
        if not all(_is_hex(k, 32) for k in keys) or not _is_hex(self.seed_hex, 32):
            raise refuse(Rule.MALFORMED, "run plan ledger keys and seed must be 64 lowercase hex digits each")
        if len(set(keys)) != len(keys):
            raise refuse(Rule.MALFORMED, "run plan roster names one ledger key twice")
        if any(not isinstance(x, int) for x in (self.threshold, self.neighbours, self.levels, self.dim)) or \
                self.neighbours < 0 or self.levels < 1 or self.dim < 1 or not math.isfinite(self.clip) or self.clip <= 0:
            raise refuse(Rule.MALFORMED, "run plan threshold, neighbours, levels, dim must be integers (>= 0, >= 1, "
                                         ">= 1) and clip a positive finite number")
        try:
            self.params()  # the arithmetic checks (Params)
        except SecAggError as e:
            raise refuse(Rule.MALFORMED, str(e)) from None

    def _once(self, name: str, make):
        """A value derived from the (frozen) plan, computed once: the O(n) work behind params(), key_of()
        and digest() must not repeat for every neighbour a node checks (issue 11 item 2: O(k) per node)."""
        if name not in self.__dict__:
            object.__setattr__(self, name, make())
        return self.__dict__[name]

    def params(self) -> Params:
        """The protocol parameters the state machines use."""
        from privacy.secagg.protocol import Params  # protocol.py imports this module

        return self._once("_params", lambda: Params(tuple(u for u, _ in self.roster), self.threshold, self.clip,
                                                    self.levels, self.dim, self.neighbours, self.seed_hex))

    def key_of(self, u: int) -> bytes | None:
        """The ledger public key (raw) the roster names for protocol id u, None when u is not in it."""
        return self._once("_keys", lambda: {v: bytes.fromhex(k) for v, k in self.roster}).get(u)

    def canonical(self) -> bytes:
        """The bytes that are signed and hashed: a domain tag, then sorted-key compact JSON."""
        d = asdict(self)
        d["roster"] = [[u, k] for u, k in self.roster]
        return _PLAN_DOMAIN + json.dumps(d, sort_keys=True, separators=(",", ":")).encode()

    def digest(self) -> bytes:
        """SHA-256 of `canonical()`: what key and view signatures bind to."""
        return self._once("_digest", lambda: hashlib.sha256(self.canonical()).digest())

    def to_dict(self) -> dict:
        """The plan as JSON-ready values."""
        return json.loads(self.canonical()[len(_PLAN_DOMAIN):])

    @classmethod
    def from_dict(cls, d: dict) -> RunPlan:
        """A plan from `to_dict`'s form (checked as on construction)."""
        try:
            d = dict(d)
            d["roster"] = tuple((int(u), str(k)) for u, k in d["roster"])
            return cls(**d)
        except (TypeError, KeyError, ValueError, OverflowError) as e:
            raise refuse(Rule.MALFORMED, f"malformed run plan: {e}") from None


def make_plan(run_id: str, group: str, ledger_keys: list[str], *, clip: float, levels: int, dim: int,
              mode: str = "float", threshold: int | None = None, neighbours: int = 0,
              seed_hex: str | None = None) -> RunPlan:
    """A plan over `ledger_keys` (hex, in protocol id order 1..n); the threshold defaults to a strict
    majority of the largest neighbourhood plus one, the seed to 32 fresh random bytes."""
    roster = tuple((i + 1, k) for i, k in enumerate(ledger_keys))
    seed = seed_hex if seed_hex is not None else os.urandom(32).hex()
    if threshold is None:
        from privacy.secagg.protocol import Params

        probe = Params(tuple(u for u, _ in roster), 2, clip, levels, dim, neighbours, seed)
        threshold = default_threshold(max(len(probe.neighbourhood(u)) for u, _ in roster) + 1)
    return RunPlan(run_id, group, roster, threshold, neighbours, seed, clip, levels, dim, mode)


@dataclass(frozen=True)
class SignedPlan:
    """A run plan with the coordinator's Ed25519 signature over its canonical bytes."""

    plan: RunPlan
    coordinator_key_hex: str  # raw Ed25519 public key of the signer
    signature_hex: str

    def verify(self) -> RunPlan:
        """The plan when the signature verifies under the key it names; else refuses (PLAN_SIGNATURE)."""
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.coordinator_key_hex)).verify(
                bytes.fromhex(self.signature_hex), self.plan.canonical())
        except (InvalidSignature, ValueError):
            raise refuse(Rule.PLAN_SIGNATURE, "the run plan's coordinator signature does not verify") from None
        return self.plan

    def to_json(self) -> str:
        """What the coordinator sends in KEYS and writes to the bundle."""
        return json.dumps({"plan": self.plan.to_dict(), "coordinator_key": self.coordinator_key_hex,
                           "signature": self.signature_hex}, sort_keys=True)

    @classmethod
    def from_json(cls, s: str | bytes) -> SignedPlan:
        """A signed plan from `to_json` (not yet verified: call `verify`)."""
        try:
            d = json.loads(s)
            return cls(RunPlan.from_dict(d["plan"]), str(d["coordinator_key"]), str(d["signature"]))
        except (TypeError, KeyError, ValueError, OverflowError, RecursionError) as e:  # deep JSON: refused too
            raise refuse(Rule.MALFORMED, f"malformed signed run plan: {type(e).__name__}: {str(e)[:200]}") from None


def sign_plan(plan: RunPlan, key: Ed25519PrivateKey) -> SignedPlan:
    """The coordinator's signature over the plan (its bundle signing key, coordinator/signing.py)."""
    return SignedPlan(plan, raw_public_key(key).hex(), key.sign(plan.canonical()).hex())


def check_plan(plan: RunPlan, me: int, own_ledger_key: bytes, trust) -> None:
    """The node's checks of a plan against its own policy's `[trust]` (privacy/policy.py Trust) before it
    generates any key. Raises SecAggError `policy rule <name>: ...` on the first rule the plan breaks."""
    mine = plan.key_of(me)
    if mine is None or mine != own_ledger_key:
        raise refuse(Rule.ROSTER, f"the roster's entry {me} is not this node's ledger key")
    peers = len(plan.roster) - 1
    if peers < trust.secagg_min_peers:
        raise refuse(Rule.MIN_PEERS, f"the roster names {peers} other nodes; this node's policy needs at least "
                                     f"{trust.secagg_min_peers}")
    hood = len(plan.params().neighbourhood(me)) + 1
    if hood - 1 < trust.secagg_min_peers:
        raise refuse(Rule.MIN_PEERS, f"this node's neighbourhood holds {hood - 1} other nodes; its policy needs at "
                                     f"least {trust.secagg_min_peers}")
    check_sparse_graph(plan)
    if plan.threshold < 2 or not above(plan.threshold, trust.secagg_threshold_fraction, hood):
        raise refuse(Rule.THRESHOLD, f"threshold {plan.threshold} must be >= 2 and > "
                                     f"{trust.secagg_threshold_fraction:g} x {hood} (this node's neighbourhood and itself)")
    if trust.peers:
        pinned = set(trust.peers)
        for u, k in plan.roster:
            if k not in pinned:
                raise refuse(Rule.PINNED_PEERS, f"roster member {u} ({k[:16]}...) is not one of the pinned peers")


def check_sparse_graph(plan: RunPlan) -> None:
    """A sparse neighbour graph (0 < neighbours < n - 1) is safe only at Bell et al.'s degree and threshold
    (privacy/secagg/graph.py; Bell et al. 2020, Theorem 3.6, https://eprint.iacr.org/2020/704): a coordinator
    that signs degree 1 or 2 with t = 2 and grinds the seed until the victim's neighbours are its own members
    unmasks the victim with t = 2 signatures; one that keeps the degree but lowers t splits the ring at the
    victim so that each half's neighbourhoods reach t (tests/privacy/secagg/test_attacks_graph.py). The node
    recomputes both bounds itself, with graph.py's corruption and dropout fractions. The graph's seed is
    still the coordinator's choice (grinding it costs about its log2 in the 2^-40 margin: README)."""
    n, k = len(plan.roster), plan.neighbours
    if not 0 < k < n - 1:
        return  # the complete graph: every node shares with every other
    need = degree_for(n)
    if k < need:
        raise refuse(Rule.DEGREE, f"the plan's degree {k} is below the {need} that {n} nodes need "
                                  f"(Bell et al. 2020)")
    least = feasible_threshold(n, k)
    if least is None or plan.threshold < least:
        raise refuse(Rule.DEGREE, f"threshold {plan.threshold} is below the {least} that {n} nodes of degree {k} "
                                  f"need (Bell et al. 2020)")


def key_message(digest: bytes, u: int, c_pk: bytes, s_pk: bytes) -> bytes:
    """The bytes a node's ledger key signs for its SecAgg key pair in the plan with this digest."""
    return _KEY_DOMAIN + digest + u.to_bytes(8, "big") + c_pk + s_pk


def sign_keys(ledger_key: Ed25519PrivateKey, digest: bytes, u: int, c_pk: bytes, s_pk: bytes) -> bytes:
    """The node's signature over its key pair (64 bytes)."""
    return ledger_key.sign(key_message(digest, u, c_pk, s_pk))


def _is_hex(s: object, n_bytes: int) -> bool:
    """Whether s is exactly 2 x n_bytes lowercase hex digits."""
    return isinstance(s, str) and len(s) == 2 * n_bytes and all(c in "0123456789abcdef" for c in s)


def verifies(public_raw: bytes | None, signature: bytes, message: bytes) -> bool:
    """Whether `signature` is the Ed25519 signature of `message` under the raw public key."""
    if public_raw is None:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def check_key_signature(plan: RunPlan, u: int, c_pk: bytes, s_pk: bytes, sig: bytes) -> None:
    """Refuses (SIGNED_KEYS) unless `sig` is u's roster ledger key's signature over (this plan's digest, u,
    c_pk, s_pk): a substituted key, a key from another plan (replayed), or an id off the roster."""
    if plan.key_of(u) is None:
        raise refuse(Rule.ROSTER, f"keys were sent for node {u}, which is not in the run plan's roster")
    if len(c_pk) != 32 or len(s_pk) != 32:  # key_message concatenates them: no shifting bytes between the two
        raise refuse(Rule.SIGNED_KEYS, f"node {u}'s SecAgg public keys must be 32 bytes each")
    if not verifies(plan.key_of(u), sig, key_message(plan.digest(), u, c_pk, s_pk)):
        raise refuse(Rule.SIGNED_KEYS, f"node {u}'s SecAgg keys are not signed by its roster ledger key for this plan")
