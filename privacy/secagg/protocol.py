"""The SecAgg+ protocol as two transport-free state machines: SecAggNode and SecAggServer.

Owns who may learn what: each node masks its quantized vector with a self mask PRG(b_u) and
pairwise masks +-PRG(s_uv) that cancel in the sum (Bonawitz et al. 2017, Protocol 0,
https://eprint.iacr.org/2017/281). Seeds b_u and mask keys s_u^SK are Shamir-shared (threshold t)
among neighbours (SecAgg+: Bell et al. 2020, https://eprint.iacr.org/2020/704), so the sum is
recovered even when nodes drop out after sending their masked input, while fewer than t colluders
learn nothing about any single input. Protects ARCHITECTURE.md invariant 3 against a MALICIOUS
coordinator (Bonawitz et al. 2017 section 6): a node answers the stages in order only
(constants.Stage.check_next); it takes part only in a coordinator-signed run plan whose roster, size and
threshold its own policy accepts (run_plan.check_plan); it uses only peer keys signed by the roster's
ledger keys for this very plan (no substitution, no replay); and it reveals shares only after >= t of its
neighbourhood signed the same survivor/dropped view it signed (consistency.py), never both shares of one
node. What remains trusted: fewer than t colluding members of any neighbourhood (SecAgg+'s assumption).

The Flower apps carry the messages (node/client_app.py, coordinator/secure_sum.py). Arithmetic is
mod 2^32.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy.keys import raw_public_key
from privacy.policy import Trust
from privacy.secagg.consistency import check_view, check_view_signatures, sign_view
from privacy.secagg.constants import MOD, Rule, SecAggError, ShareKind, Stage, refuse
from privacy.secagg.crypto import (
    CHANNEL_INFO,
    MASK_INFO,
    SHARE_LEN,
    agree,
    combine,
    new_key_pair,
    open_shares,
    prg,
    public_of,
    seal_shares,
    share,
)
from privacy.secagg.quantization import quantize
from privacy.secagg.run_plan import RunPlan, check_key_signature, check_plan, sign_keys


@dataclass(frozen=True)
class Params:
    """One aggregation's public parameters, chosen by the coordinator and sent to every node."""

    node_ids: tuple[int, ...]  # the nodes sampled for this aggregation
    threshold: int  # shares needed to reconstruct; > half the neighbourhood for security
    clip: float  # coordinate-wise clipping range of the input
    levels: int  # quantization levels per node; n * levels must stay below 2^32
    dim: int
    neighbours: int = 0  # SecAgg+ degree; 0 = every node (plain SecAgg)
    seed: str = ""  # hex seed of the neighbour graph (run_plan.RunPlan.seed_hex)

    def __post_init__(self):
        if len(self.node_ids) < 2:
            raise SecAggError("secure aggregation needs at least 2 nodes")
        if not 1 < self.threshold <= len(self.node_ids):
            raise SecAggError(f"threshold {self.threshold} must be in 2..{len(self.node_ids)}")
        if len(self.node_ids) * self.levels >= MOD:
            raise SecAggError("n * levels overflows the 2^32 modulus: lower levels")

    def neighbourhood(self, u: int) -> list[int]:
        """The nodes u shares secrets and pairwise masks with: all others, or its neighbours in SecAgg+'s
        random Harary graph of degree `neighbours` drawn from `seed` (graph.py; Bell et al. 2020 §3)."""
        from privacy.secagg.graph import neighbours_of  # cached per (ids, degree, seed)

        ids = sorted(self.node_ids)
        if not self.neighbours or self.neighbours >= len(ids) - 1:
            return [v for v in ids if v != u]
        return neighbours_of(ids, self.neighbours, bytes.fromhex(self.seed), u)

    def to_json(self) -> str:
        """The parameters as JSON, as the coordinator sends them."""
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, s: str) -> Params:
        """Parameters from `to_json`'s form (checked as on construction)."""
        d = json.loads(s)
        d["node_ids"] = tuple(d["node_ids"])
        return cls(**d)


# --- node side ----------------------------------------------------------------------------------


@dataclass
class SecAggNode:
    """One node's side of the plan `plan` (run_plan.RunPlan). Stages (constants.Stage): KEYS -> SHARES ->
    MASKED -> CONSISTENCY -> UNMASK. The ledger key signs (KEYS, CONSISTENCY) but is never kept in the state."""

    me: int
    plan: RunPlan
    c_sk: bytes = b""  # X25519 key for the share channel
    s_sk: bytes = b""  # X25519 key for pairwise masks
    b: bytes = b""  # self-mask seed
    pks: dict = field(default_factory=dict)  # v -> (c_pk, s_pk) of neighbours whose signed keys verified
    inbox: dict = field(default_factory=dict)  # v -> ciphertext of v's shares for me
    stage: str = ""  # the last stage answered ("" before the first)
    own_shares: tuple = (b"", b"")  # this node's own shares of b_u and s_u^SK
    view: tuple = ()  # (survivors, dropped) this node signed in CONSISTENCY: one view per plan
    min_peers: int = 1  # trust.secagg_min_peers, fixed at KEYS: also the fewest OTHER survivors it signs for

    @property
    def params(self) -> Params:
        """The protocol parameters of the plan."""
        return self.plan.params()

    def _enter(self, stage: str) -> None:
        Stage.check_next(self.stage, stage)
        self.stage = stage

    def to_bytes(self) -> bytes:
        """Serialise the state between stages (it stays on the node, e.g. in Flower's context.state)."""
        h = bytes.hex
        return json.dumps({
            "me": self.me, "plan": self.plan.to_dict(), "c_sk": h(self.c_sk), "s_sk": h(self.s_sk),
            "b": h(self.b), "pks": {str(v): [h(c), h(s)] for v, (c, s) in self.pks.items()},
            "inbox": {str(v): h(ct) for v, ct in self.inbox.items()}, "stage": self.stage,
            "own_shares": [h(x) for x in self.own_shares], "view": [list(x) for x in self.view],
            "min_peers": self.min_peers,
        }).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SecAggNode:
        """The node state written by `to_bytes`."""
        d, u = json.loads(data), bytes.fromhex
        return cls(
            me=d["me"], plan=RunPlan.from_dict(d["plan"]), c_sk=u(d["c_sk"]), s_sk=u(d["s_sk"]), b=u(d["b"]),
            pks={int(v): (u(c), u(s)) for v, (c, s) in d["pks"].items()},
            inbox={int(v): u(ct) for v, ct in d["inbox"].items()}, stage=d["stage"],
            own_shares=tuple(u(x) for x in d["own_shares"]), view=tuple(list(x) for x in d["view"]),
            min_peers=int(d.get("min_peers", 1)),
        )

    def public_keys(self, ledger_key: Ed25519PrivateKey, trust: Trust | None = None) -> tuple[bytes, bytes, bytes]:
        """Stage KEYS: checks the plan against this node's policy (run_plan.check_plan; `trust` is the policy's
        [trust], the defaults when None), then fresh key pairs; returns (c_pk, s_pk, signature by the ledger key)."""
        self._enter(Stage.KEYS)
        trust = trust if trust is not None else Trust()
        check_plan(self.plan, self.me, raw_public_key(ledger_key), trust)
        self.min_peers = max(1, trust.secagg_min_peers)
        (self.c_sk, c_pk), (self.s_sk, s_pk) = new_key_pair(), new_key_pair()
        return c_pk, s_pk, sign_keys(ledger_key, self.plan.digest(), self.me, c_pk, s_pk)

    def share_keys(self, pks: dict[int, tuple[bytes, bytes, bytes]]) -> dict[int, bytes]:
        """Stage SHARES: checks the signature of every key pair it uses (its neighbours' and its own) against
        the roster, refusing on any that fails, then Shamir-shares b_u and s_u^SK among neighbours; one AES-GCM
        ciphertext per neighbour. `pks` may hold only this node's neighbourhood (O(k) per node, SecAgg+)."""
        self._enter(Stage.SHARES)
        hood = set(self.params.neighbourhood(self.me)) | {self.me}
        for v, (c_pk, s_pk, sig) in pks.items():  # every key this node uses: its neighbours' and its own
            if v in hood or self.plan.key_of(v) is None:
                check_key_signature(self.plan, v, c_pk, s_pk, sig)
        mine = pks.get(self.me)
        if mine is None or tuple(mine[:2]) != (public_of(self.c_sk), public_of(self.s_sk)):
            raise refuse(Rule.SIGNED_KEYS, "the key list does not carry this node's own keys as it sent them")
        nbrs = [v for v in self.params.neighbourhood(self.me) if v in pks]
        if len(nbrs) + 1 < self.params.threshold:
            raise SecAggError(f"only {len(nbrs) + 1} nodes shared keys; threshold is {self.params.threshold}")
        self.pks = {v: (pks[v][0], pks[v][1]) for v in nbrs}
        self.b = os.urandom(32)
        holders = [self.me] + nbrs
        b_sh = share(self.b, self.params.threshold, len(holders))
        s_sh = share(self.s_sk, self.params.threshold, len(holders))
        self.own_shares = (b_sh[0], s_sh[0])
        return {
            v: seal_shares(agree(self.c_sk, pks[v][0], CHANNEL_INFO), self.me, v, b_sh[i], s_sh[i])
            for i, v in enumerate(nbrs, start=1)
        }

    def masked_input(self, x: np.ndarray, inbox: dict[int, bytes], rng: np.random.Generator | None = None) -> np.ndarray:
        """Stage MASKED (mode "float"): y_u = q(x) + PRG(b_u) + sum_{v>u} PRG(s_uv) - sum_{v<u} PRG(s_uv)  (mod 2^32)."""
        if self.plan.mode != "float":
            raise refuse(Rule.MODE, f"the plan aggregates {self.plan.mode} values; this node holds a float vector")
        if x.shape != (self.params.dim,):
            raise SecAggError(f"input has shape {x.shape}, expected ({self.params.dim},)")
        rng = rng or np.random.default_rng(int.from_bytes(os.urandom(16), "big"))
        return self._mask(quantize(x, self.params.clip, self.params.levels, rng), inbox)

    def masked_integers(self, values: np.ndarray, inbox: dict[int, bytes]) -> np.ndarray:
        """Stage MASKED (mode "integer"): `values` already in Z_{2^32} (uint64, each < 2^32, e.g. distributed
        DP's quantised sum plus noise share) masked as is, without quantization."""
        if self.plan.mode != "integer":
            raise refuse(Rule.MODE, f"the plan aggregates {self.plan.mode} values; this node holds integers")
        v = np.asarray(values)
        if v.shape != (self.params.dim,) or v.dtype != np.uint64 or (v.size and int(v.max()) >= MOD):
            raise SecAggError(f"integer input must be uint64 < 2^32 of shape ({self.params.dim},)")
        return self._mask(v, inbox)

    def _mask(self, q: np.ndarray, inbox: dict[int, bytes]) -> np.ndarray:
        self._enter(Stage.MASKED)
        self.inbox = {v: ct for v, ct in inbox.items() if v in self.pks}
        for v, ct in self.inbox.items():  # every ciphertext must open now: a forged one is not a peer's shares
            try:
                open_shares(agree(self.c_sk, self.pks[v][0], CHANNEL_INFO), bytes(ct), v, self.me)
            except (SecAggError, ValueError, TypeError, InvalidTag):
                raise refuse(Rule.INBOX, f"the shares routed from node {v} do not open for this node") from None
        # Bonawitz et al. 2017 Fig. 4 round 2 (|U2| >= t): masked with fewer than t - 1 peers, the input would
        # be hidden by its self mask alone, which t honest reveals of b_u then remove (a withheld inbox)
        if len(self.inbox) + 1 < self.params.threshold:
            raise refuse(Rule.INBOX, f"shares came from {len(self.inbox)} neighbours; masking needs at least "
                                     f"{self.params.threshold - 1}")
        y = q + prg(self.b, self.params.dim)
        for v in self.inbox:  # neighbours that completed share_keys
            m = prg(agree(self.s_sk, self.pks[v][1], MASK_INFO), self.params.dim)
            y = y + m if v > self.me else y + (MOD - m)
        return y % MOD

    def sign_view(self, ledger_key: Ed25519PrivateKey, survivors: list[int], dropped: list[int]) -> bytes:
        """Stage CONSISTENCY: sign (plan digest, survivors, dropped) with the ledger key; once per plan."""
        Stage.check_next(self.stage, Stage.CONSISTENCY)
        check_view(self.plan, self.me, survivors, dropped, set(self.inbox), self.min_peers)
        self._enter(Stage.CONSISTENCY)
        self.view = (sorted(set(survivors)), sorted(set(dropped)))
        return sign_view(ledger_key, self.plan.digest(), *self.view)

    def unmask(self, survivors: list[int], dropped: list[int], signatures: dict[int, bytes], *,
               min_survivors: int = 0, rule: str = Rule.MIN_SURVIVORS) -> dict[int, tuple[str, bytes]]:
        """Stage UNMASK: given >= t view signatures from its neighbourhood over exactly the view it signed
        (consistency.check_view_signatures) and at least `min_survivors` survivors (the owner's requirement,
        refused under `rule`), reveal b-shares of survivors and s-shares of dropped nodes, never both for one node."""
        if set(survivors) & set(dropped):
            raise refuse(Rule.CONSISTENCY, "a node cannot be both survivor and dropped")
        self._enter(Stage.UNMASK)
        check_view_signatures(self.plan, self.me, self.view, survivors, dropped, signatures)
        if len(set(survivors)) < min_survivors:
            raise refuse(rule, f"{len(set(survivors))} survivors; the value's owner requires at least {min_survivors}")
        out = {}
        for v, ct in self.inbox.items():
            b_share, s_share = open_shares(agree(self.c_sk, self.pks[v][0], CHANNEL_INFO), ct, v, self.me)
            if v in survivors:
                out[v] = (ShareKind.SELF_MASK, b_share)
            elif v in dropped:
                out[v] = (ShareKind.MASK_KEY, s_share)
        if self.me in survivors:
            out[self.me] = (ShareKind.SELF_MASK, self.own_shares[0])
        return out


# --- server side --------------------------------------------------------------------------------


@dataclass
class SecAggServer:
    """The coordinator's side of the plan: relays what it cannot read and recovers only the sum."""

    plan: RunPlan
    pks: dict = field(default_factory=dict)  # u -> (c_pk, s_pk, key signature)
    routed: dict = field(default_factory=dict)  # u -> set of v whose shares u received
    inputs: dict = field(default_factory=dict)
    views: dict = field(default_factory=dict)  # u -> u's signature over its view (CONSISTENCY)
    stage: str = ""  # the last stage completed

    @property
    def params(self) -> Params:
        """The protocol parameters of the plan."""
        return self.plan.params()

    def _enter(self, stage: str) -> None:
        Stage.check_next(self.stage, stage)
        self.stage = stage

    def collect_public_keys(self, pks: dict[int, tuple[bytes, bytes, bytes]]) -> dict[int, tuple[bytes, bytes, bytes]]:
        """Stage KEYS: the signed public keys to broadcast; refuses too few nodes or repeated keys."""
        self._enter(Stage.KEYS)
        if len(pks) < self.params.threshold:
            raise SecAggError(f"{len(pks)} nodes sent keys; threshold is {self.params.threshold}")
        if len({p for pair in pks.values() for p in pair[:2]}) != 2 * len(pks):
            raise SecAggError("duplicate public keys")
        self.pks = dict(pks)
        return self.pks

    def route_shares(self, ciphertexts: dict[int, dict[int, bytes]]) -> dict[int, dict[int, bytes]]:
        """Stage SHARES: ciphertexts[u][v] from u for v -> inbox[v][u]."""
        self._enter(Stage.SHARES)
        if len(ciphertexts) < self.params.threshold:
            raise SecAggError(f"{len(ciphertexts)} nodes shared keys; threshold is {self.params.threshold}")
        inbox: dict[int, dict[int, bytes]] = {v: {} for v in ciphertexts}
        for u, cts in ciphertexts.items():
            for v, ct in cts.items():
                if v in inbox:
                    inbox[v][u] = ct
        self.routed = {v: set(d) for v, d in inbox.items()}
        return inbox

    def collect_inputs(self, inputs: dict[int, np.ndarray]) -> tuple[list[int], list[int]]:
        """Stage MASKED: returns (survivors, dropped): dropped sent shares but no masked input."""
        self._enter(Stage.MASKED)
        if len(inputs) < self.params.threshold:
            raise SecAggError(f"only {len(inputs)} masked inputs; threshold is {self.params.threshold}")
        self.inputs = {u: np.asarray(y, dtype=np.uint64) % MOD for u, y in inputs.items()}
        survivors = sorted(self.inputs)
        dropped = sorted(set(self.routed) - set(self.inputs))
        return survivors, dropped

    def collect_views(self, signatures: dict[int, bytes]) -> dict[int, bytes]:
        """Stage CONSISTENCY: the survivors' signatures over their views, relayed to every survivor in UNMASK."""
        self._enter(Stage.CONSISTENCY)
        if len(signatures) < self.params.threshold:
            raise SecAggError(f"only {len(signatures)} nodes signed their view; threshold is {self.params.threshold}")
        self.views = dict(signatures)
        return self.views

    def aggregate(self, reveals: dict[int, dict[int, tuple[str, bytes]]]) -> tuple[np.ndarray, int]:
        """Stage UNMASK: reconstruct masks from >= t shares each; returns (sum of inputs, number of inputs)."""
        self._enter(Stage.UNMASK)
        survivors = sorted(self.inputs)
        dropped = sorted(set(self.routed) - set(self.inputs))
        shares: dict[tuple[str, int], list[bytes]] = {}
        for _holder, rev in reveals.items():
            for v, (kind, sh) in rev.items():
                # a malformed share (a holder the coordinator does not trust either) is left out, not combined;
                # a well-formed but false share still gives a wrong sum: only >= t honest reveals are checked
                if isinstance(sh, bytes) and len(sh) == SHARE_LEN and sh[:2] != b"\0\0":
                    shares.setdefault((kind, v), []).append(sh)
        total = np.zeros(self.params.dim, dtype=np.uint64)
        for u in survivors:
            total = (total + self.inputs[u]) % MOD
        t = self.params.threshold
        for u in survivors:
            got = shares.get((ShareKind.SELF_MASK, u), [])
            if len(got) < t:
                raise SecAggError(f"only {len(got)} shares of node {u}'s self mask; need {t}")
            total = (total + (MOD - prg(combine(got[:t]), self.params.dim))) % MOD
        for v in dropped:
            got = shares.get((ShareKind.MASK_KEY, v), [])
            if len(got) < t:
                raise SecAggError(f"only {len(got)} shares of dropped node {v}'s mask key; need {t}")
            s_sk = combine(got[:t])
            for u in survivors:
                if u not in self.routed or v not in self.routed[u]:
                    continue  # u never added a mask with v
                m = prg(agree(s_sk, self.pks[u][1], MASK_INFO), self.params.dim)
                # u added +m if v > u, else -m: remove it.
                total = (total + (MOD - m)) % MOD if v > u else (total + m) % MOD
        return total, len(survivors)
