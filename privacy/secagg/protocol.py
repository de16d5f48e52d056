"""The SecAgg+ protocol as two transport-free state machines: SecAggNode and SecAggServer.

Owns who may learn what: each node masks its quantized vector with a self mask PRG(b_u) and
pairwise masks +-PRG(s_uv) that cancel in the sum (Bonawitz et al. 2017, Protocol 0,
https://eprint.iacr.org/2017/281). Seeds b_u and mask keys s_u^SK are Shamir-shared (threshold t)
among neighbours (SecAgg+: Bell et al. 2020, https://eprint.iacr.org/2020/704), so the sum is
recovered even when nodes drop out after sending their masked input, while fewer than t colluders
learn nothing about any single input. Protects ARCHITECTURE.md invariant 3: a node answers the
stages in order only (constants.Stage.check_next). Against an honest-but-curious coordinator it never
reveals both shares of one node; a malicious one can (different survivor lists to different nodes, a
threshold of 2, substituted keys): the checks that stop it are issue 11's.

The Flower apps carry the messages (node/client_app.py, coordinator/server_app.py). Arithmetic is
mod 2^32.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from privacy.secagg.constants import MOD, SecAggError, ShareKind, Stage
from privacy.secagg.crypto import CHANNEL_INFO, MASK_INFO, agree, combine, new_key_pair, open_shares, prg, seal_shares, share
from privacy.secagg.quantization import quantize


@dataclass(frozen=True)
class Params:
    """One aggregation's public parameters, chosen by the coordinator and sent to every node."""

    node_ids: tuple[int, ...]  # the nodes sampled for this aggregation
    threshold: int  # shares needed to reconstruct; > half the neighbourhood for security
    clip: float  # coordinate-wise clipping range of the input
    levels: int  # quantization levels per node; n * levels must stay below 2^32
    dim: int
    neighbours: int = 0  # SecAgg+ degree; 0 = every node (plain SecAgg)

    def __post_init__(self):
        if len(self.node_ids) < 2:
            raise SecAggError("secure aggregation needs at least 2 nodes")
        if not 1 < self.threshold <= len(self.node_ids):
            raise SecAggError(f"threshold {self.threshold} must be in 2..{len(self.node_ids)}")
        if len(self.node_ids) * self.levels >= MOD:
            raise SecAggError("n * levels overflows the 2^32 modulus: lower levels")

    def neighbourhood(self, u: int) -> list[int]:
        """The nodes u shares secrets and pairwise masks with (all others, or SecAgg+'s ring)."""
        ids = sorted(self.node_ids)
        if not self.neighbours or self.neighbours >= len(ids) - 1:
            return [v for v in ids if v != u]
        # SecAgg+ ring graph (symmetric): the ceil(k/2) following and preceding nodes in a public order.
        i, half = ids.index(u), (self.neighbours + 1) // 2
        return sorted({ids[(i + d) % len(ids)] for d in range(-half, half + 1) if d})

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
    """One node's side. Stages (constants.Stage): KEYS -> SHARES -> MASKED -> UNMASK."""

    me: int
    params: Params
    c_sk: bytes = b""  # X25519 key for the share channel
    s_sk: bytes = b""  # X25519 key for pairwise masks
    b: bytes = b""  # self-mask seed
    pks: dict = field(default_factory=dict)  # v -> (c_pk, s_pk)
    inbox: dict = field(default_factory=dict)  # v -> ciphertext of v's shares for me
    stage: str = ""  # the last stage answered ("" before the first)
    own_shares: tuple = (b"", b"")  # this node's own shares of b_u and s_u^SK

    def _enter(self, stage: str) -> None:
        Stage.check_next(self.stage, stage)
        self.stage = stage

    def to_bytes(self) -> bytes:
        """Serialise the state between stages (it stays on the node, e.g. in Flower's context.state)."""
        h = bytes.hex
        return json.dumps({
            "me": self.me, "params": self.params.to_json(), "c_sk": h(self.c_sk), "s_sk": h(self.s_sk),
            "b": h(self.b), "pks": {str(v): [h(c), h(s)] for v, (c, s) in self.pks.items()},
            "inbox": {str(v): h(ct) for v, ct in self.inbox.items()}, "stage": self.stage,
            "own_shares": [h(x) for x in self.own_shares],
        }).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SecAggNode:
        """The node state written by `to_bytes`."""
        d, u = json.loads(data), bytes.fromhex
        return cls(
            me=d["me"], params=Params.from_json(d["params"]), c_sk=u(d["c_sk"]), s_sk=u(d["s_sk"]), b=u(d["b"]),
            pks={int(v): (u(c), u(s)) for v, (c, s) in d["pks"].items()},
            inbox={int(v): u(ct) for v, ct in d["inbox"].items()}, stage=d["stage"],
            own_shares=tuple(u(x) for x in d["own_shares"]),
        )

    def public_keys(self) -> tuple[bytes, bytes]:
        """Stage KEYS: fresh key pairs; returns the public keys (c_pk, s_pk)."""
        self._enter(Stage.KEYS)
        (self.c_sk, c_pk), (self.s_sk, s_pk) = new_key_pair(), new_key_pair()
        return c_pk, s_pk

    def share_keys(self, pks: dict[int, tuple[bytes, bytes]]) -> dict[int, bytes]:
        """Stage SHARES: Shamir-share b_u and s_u^SK among neighbours; one AES-GCM ciphertext per neighbour."""
        self._enter(Stage.SHARES)
        nbrs = [v for v in self.params.neighbourhood(self.me) if v in pks]
        if len(nbrs) + 1 < self.params.threshold:
            raise SecAggError(f"only {len(nbrs) + 1} nodes shared keys; threshold is {self.params.threshold}")
        self.pks = {v: pks[v] for v in nbrs}
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
        """Stage MASKED: y_u = q(x) + PRG(b_u) + sum_{v>u} PRG(s_uv) - sum_{v<u} PRG(s_uv)  (mod 2^32)."""
        if x.shape != (self.params.dim,):
            raise SecAggError(f"input has shape {x.shape}, expected ({self.params.dim},)")
        self._enter(Stage.MASKED)
        self.inbox = {v: ct for v, ct in inbox.items() if v in self.pks}
        rng = rng or np.random.default_rng(int.from_bytes(os.urandom(16), "big"))
        y = quantize(x, self.params.clip, self.params.levels, rng) + prg(self.b, self.params.dim)
        for v in self.inbox:  # neighbours that completed share_keys
            m = prg(agree(self.s_sk, self.pks[v][1], MASK_INFO), self.params.dim)
            y = y + m if v > self.me else y + (MOD - m)
        return y % MOD

    def unmask(self, survivors: list[int], dropped: list[int]) -> dict[int, tuple[str, bytes]]:
        """Stage UNMASK: reveal b-shares of survivors and s-shares of dropped nodes, never both for one node."""
        if set(survivors) & set(dropped):
            raise SecAggError("a node cannot be both survivor and dropped")
        self._enter(Stage.UNMASK)
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
    """The coordinator's side: relays what it cannot read and recovers only the sum."""

    params: Params
    pks: dict = field(default_factory=dict)
    routed: dict = field(default_factory=dict)  # u -> set of v whose shares u received
    inputs: dict = field(default_factory=dict)
    stage: str = ""  # the last stage completed

    def _enter(self, stage: str) -> None:
        Stage.check_next(self.stage, stage)
        self.stage = stage

    def collect_public_keys(self, pks: dict[int, tuple[bytes, bytes]]) -> dict[int, tuple[bytes, bytes]]:
        """Stage KEYS: the public keys to broadcast; refuses too few nodes or repeated keys."""
        self._enter(Stage.KEYS)
        if len(pks) < self.params.threshold:
            raise SecAggError(f"{len(pks)} nodes sent keys; threshold is {self.params.threshold}")
        if len({p for pair in pks.values() for p in pair}) != 2 * len(pks):
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

    def aggregate(self, reveals: dict[int, dict[int, tuple[str, bytes]]]) -> tuple[np.ndarray, int]:
        """Stage UNMASK: reconstruct masks from >= t shares each; returns (sum of inputs, number of inputs)."""
        self._enter(Stage.UNMASK)
        survivors = sorted(self.inputs)
        dropped = sorted(set(self.routed) - set(self.inputs))
        shares: dict[tuple[str, int], list[bytes]] = {}
        for _holder, rev in reveals.items():
            for v, (kind, sh) in rev.items():
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
