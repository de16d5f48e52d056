"""Secure aggregation: the coordinator learns only the sum of the nodes' (already DP) updates.

SecAgg (Bonawitz et al., CCS 2017, "Practical Secure Aggregation for Privacy-Preserving Machine
Learning") with the SecAgg+ neighbourhood option (Bell et al., CCS 2020): each node masks its
quantized vector with a self mask PRG(b_u) and pairwise masks ±PRG(s_uv) that cancel in the sum.
Seeds b_u and mask keys s_u^SK are Shamir-shared (threshold t) among neighbours, so the sum is
recovered even when nodes drop out after sending their masked input (dropout tolerance), while
fewer than t colluders learn nothing about any single input.

This module is transport-free: `SecAggNode` and `SecAggServer` are state machines whose messages
the Flower apps carry (node/client_app.py, coordinator/server_app.py). Primitives: X25519 key
agreement, HKDF-SHA256, AES-256-GCM for share transport and AES-256-CTR as the mask PRG, from
`cryptography`; Shamir sharing over GF(2^128) from pycryptodome. Arithmetic is mod 2^32.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field

import numpy as np
from Crypto.Protocol.SecretSharing import Shamir
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MOD_BITS = 32
MOD = 1 << MOD_BITS


class SecAggError(Exception):
    pass


# --- primitives ---------------------------------------------------------------------------------


def _raw_priv(k: X25519PrivateKey) -> bytes:
    return k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def _raw_pub(k: X25519PublicKey) -> bytes:
    return k.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _agree(priv_raw: bytes, pub_raw: bytes, info: bytes) -> bytes:
    shared = X25519PrivateKey.from_private_bytes(priv_raw).exchange(X25519PublicKey.from_public_bytes(pub_raw))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def prg(seed: bytes, n: int) -> np.ndarray:
    """n uint32 words of AES-256-CTR keystream under `seed` (32 bytes)."""
    enc = Cipher(algorithms.AES(seed), modes.CTR(b"\x00" * 16)).encryptor()
    return np.frombuffer(enc.update(b"\x00" * (4 * n)), dtype="<u4").astype(np.uint64)


def _share(secret: bytes, t: int, n: int) -> list[bytes]:
    """Shamir-share a 32-byte secret: share i (1-based) = index byte + two 16-byte chunks."""
    parts = [Shamir.split(t, n, secret[i : i + 16]) for i in (0, 16)]
    return [bytes([parts[0][i][0]]) + parts[0][i][1] + parts[1][i][1] for i in range(n)]


def _combine(shares: list[bytes]) -> bytes:
    out = b""
    for off in (1, 17):
        out += Shamir.combine([(s[0], s[off : off + 16]) for s in shares])
    return out


def quantize(x: np.ndarray, clip: float, levels: int, rng: np.random.Generator) -> np.ndarray:
    """Clip to [-clip, clip] and map to {0..levels} with unbiased stochastic rounding."""
    y = (np.clip(x, -clip, clip) + clip) * (levels / (2 * clip))
    low = np.floor(y)
    return (low + (rng.random(y.shape) < (y - low))).astype(np.uint64)


def dequantize_sum(total: np.ndarray, n: int, clip: float, levels: int) -> np.ndarray:
    return total.astype(np.float64) * (2 * clip / levels) - n * clip


@dataclass(frozen=True)
class Params:
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
        ids = sorted(self.node_ids)
        if not self.neighbours or self.neighbours >= len(ids) - 1:
            return [v for v in ids if v != u]
        # SecAgg+ ring graph (symmetric): the ceil(k/2) following and preceding nodes in a public order.
        i, half = ids.index(u), (self.neighbours + 1) // 2
        return sorted({ids[(i + d) % len(ids)] for d in range(-half, half + 1) if d})

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, s: str) -> "Params":
        d = json.loads(s)
        d["node_ids"] = tuple(d["node_ids"])
        return cls(**d)


# --- node side ----------------------------------------------------------------------------------


@dataclass
class SecAggNode:
    """One node's side. Stages: public_keys -> share_keys -> masked_input -> unmask."""

    me: int
    params: Params
    c_sk: bytes = b""  # X25519 key for the share channel
    s_sk: bytes = b""  # X25519 key for pairwise masks
    b: bytes = b""  # self-mask seed
    pks: dict = field(default_factory=dict)  # v -> (c_pk, s_pk)
    inbox: dict = field(default_factory=dict)  # v -> ciphertext of v's shares for me
    sent_input: bool = False
    revealed: bool = False
    own_shares: tuple = (b"", b"")  # this node's own shares of b_u and s_u^SK

    def to_bytes(self) -> bytes:
        """Serialise the state between stages (it stays on the node, e.g. in Flower's context.state)."""
        h = bytes.hex
        return json.dumps({
            "me": self.me, "params": self.params.to_json(), "c_sk": h(self.c_sk), "s_sk": h(self.s_sk),
            "b": h(self.b), "pks": {str(v): [h(c), h(s)] for v, (c, s) in self.pks.items()},
            "inbox": {str(v): h(ct) for v, ct in self.inbox.items()}, "sent_input": self.sent_input,
            "revealed": self.revealed, "own_shares": [h(x) for x in self.own_shares],
        }).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "SecAggNode":
        d, u = json.loads(data), bytes.fromhex
        return cls(
            me=d["me"], params=Params.from_json(d["params"]), c_sk=u(d["c_sk"]), s_sk=u(d["s_sk"]), b=u(d["b"]),
            pks={int(v): (u(c), u(s)) for v, (c, s) in d["pks"].items()},
            inbox={int(v): u(ct) for v, ct in d["inbox"].items()}, sent_input=d["sent_input"],
            revealed=d["revealed"], own_shares=tuple(u(x) for x in d["own_shares"]),
        )

    def public_keys(self) -> tuple[bytes, bytes]:
        c, s = X25519PrivateKey.generate(), X25519PrivateKey.generate()
        self.c_sk, self.s_sk = _raw_priv(c), _raw_priv(s)
        return _raw_pub(c.public_key()), _raw_pub(s.public_key())

    def share_keys(self, pks: dict[int, tuple[bytes, bytes]]) -> dict[int, bytes]:
        """Shamir-share b_u and s_u^SK among neighbours; one AES-GCM ciphertext per neighbour."""
        nbrs = [v for v in self.params.neighbourhood(self.me) if v in pks]
        if len(nbrs) + 1 < self.params.threshold:
            raise SecAggError(f"only {len(nbrs) + 1} nodes shared keys; threshold is {self.params.threshold}")
        self.pks = {v: pks[v] for v in nbrs}
        self.b = os.urandom(32)
        holders = [self.me] + nbrs
        b_sh = _share(self.b, self.params.threshold, len(holders))
        s_sh = _share(self.s_sk, self.params.threshold, len(holders))
        self.own_shares = (b_sh[0], s_sh[0])
        out = {}
        for i, v in enumerate(nbrs, start=1):
            key = _agree(self.c_sk, pks[v][0], b"cairn/secagg/channel")
            plain = struct.pack(">QQ", self.me, v) + b_sh[i] + s_sh[i]
            nonce = os.urandom(12)
            out[v] = nonce + AESGCM(key).encrypt(nonce, plain, b"shares")
        return out

    def masked_input(self, x: np.ndarray, inbox: dict[int, bytes], rng: np.random.Generator | None = None) -> np.ndarray:
        """y_u = q(x) + PRG(b_u) + sum_{v>u} PRG(s_uv) - sum_{v<u} PRG(s_uv)  (mod 2^32)."""
        if x.shape != (self.params.dim,):
            raise SecAggError(f"input has shape {x.shape}, expected ({self.params.dim},)")
        self.inbox = {v: ct for v, ct in inbox.items() if v in self.pks}
        rng = rng or np.random.default_rng(int.from_bytes(os.urandom(16), "big"))
        y = quantize(x, self.params.clip, self.params.levels, rng) + prg(self.b, self.params.dim)
        for v in self.inbox:  # neighbours that completed share_keys
            m = prg(_agree(self.s_sk, self.pks[v][1], b"cairn/secagg/mask"), self.params.dim)
            y = y + m if v > self.me else y + (MOD - m)
        self.sent_input = True
        return y % MOD

    def unmask(self, survivors: list[int], dropped: list[int]) -> dict[int, tuple[str, bytes]]:
        """Reveal b-shares of survivors and s-shares of dropped nodes, never both for one node."""
        if set(survivors) & set(dropped):
            raise SecAggError("a node cannot be both survivor and dropped")
        if self.revealed:
            raise SecAggError("unmask was already answered")
        if not self.sent_input:
            raise SecAggError("unmask before masked input")
        self.revealed = True
        out = {}
        for v, ct in self.inbox.items():
            key = _agree(self.c_sk, self.pks[v][0], b"cairn/secagg/channel")
            plain = AESGCM(key).decrypt(ct[:12], ct[12:], b"shares")
            src, dst = struct.unpack(">QQ", plain[:16])
            if (src, dst) != (v, self.me):
                raise SecAggError("share ciphertext was routed to the wrong node")
            b_share, s_share = plain[16:49], plain[49:82]
            if v in survivors:
                out[v] = ("b", b_share)
            elif v in dropped:
                out[v] = ("s", s_share)
        if self.me in survivors:
            out[self.me] = ("b", self.own_shares[0])
        return out


# --- server side --------------------------------------------------------------------------------


@dataclass
class SecAggServer:
    params: Params
    pks: dict = field(default_factory=dict)
    routed: dict = field(default_factory=dict)  # u -> set of v whose shares u received
    inputs: dict = field(default_factory=dict)

    def collect_public_keys(self, pks: dict[int, tuple[bytes, bytes]]) -> dict[int, tuple[bytes, bytes]]:
        if len(pks) < self.params.threshold:
            raise SecAggError(f"{len(pks)} nodes sent keys; threshold is {self.params.threshold}")
        if len({p for pair in pks.values() for p in pair}) != 2 * len(pks):
            raise SecAggError("duplicate public keys")
        self.pks = dict(pks)
        return self.pks

    def route_shares(self, ciphertexts: dict[int, dict[int, bytes]]) -> dict[int, dict[int, bytes]]:
        """ciphertexts[u][v] from u for v -> inbox[v][u]."""
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
        """Returns (survivors, dropped): dropped sent shares but no masked input."""
        if len(inputs) < self.params.threshold:
            raise SecAggError(f"only {len(inputs)} masked inputs; threshold is {self.params.threshold}")
        self.inputs = {u: np.asarray(y, dtype=np.uint64) % MOD for u, y in inputs.items()}
        survivors = sorted(self.inputs)
        dropped = sorted(set(self.routed) - set(self.inputs))
        return survivors, dropped

    def aggregate(self, reveals: dict[int, dict[int, tuple[str, bytes]]]) -> tuple[np.ndarray, int]:
        """Reconstruct masks from >= t shares each; returns (sum of inputs, number of inputs)."""
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
            got = shares.get(("b", u), [])
            if len(got) < t:
                raise SecAggError(f"only {len(got)} shares of node {u}'s self mask; need {t}")
            total = (total + (MOD - prg(_combine(got[:t]), self.params.dim))) % MOD
        for v in dropped:
            got = shares.get(("s", v), [])
            if len(got) < t:
                raise SecAggError(f"only {len(got)} shares of dropped node {v}'s mask key; need {t}")
            s_sk = _combine(got[:t])
            for u in survivors:
                if u not in self.routed or v not in self.routed[u]:
                    continue  # u never added a mask with v
                m = prg(_agree(s_sk, self.pks[u][1], b"cairn/secagg/mask"), self.params.dim)
                # u added +m if v > u, else -m: remove it.
                total = (total + (MOD - m)) % MOD if v > u else (total + m) % MOD
        return total, len(survivors)
