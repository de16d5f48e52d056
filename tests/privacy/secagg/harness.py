"""A SecAgg+ run over the transport-free state machines, honest by default, for tests to attack.

`Federation(n, ...)` holds each node's ledger key and policy trust, the signed plan and the node and
server state machines; `run(xs)` plays every stage honestly. Attack tests call the stages one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy.keys import raw_public_key
from privacy.policy import Trust
from privacy.secagg.protocol import SecAggNode, SecAggServer
from privacy.secagg.quantization import dequantize_sum
from privacy.secagg.run_plan import RunPlan, make_plan, sign_plan


@dataclass
class Federation:
    """n nodes (ids 1..n), their ledger keys and trust, one coordinator key, one signed plan."""

    n: int
    threshold: int | None = None
    neighbours: int = 0
    dim: int = 8
    clip: float = 1.0
    levels: int = 1 << 20
    mode: str = "float"
    trust: Trust = field(default_factory=lambda: Trust(secagg_min_peers=1))
    group: str = "secagg-1"
    ledger_keys: dict = field(default_factory=dict)
    coordinator_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    def __post_init__(self):
        self.ledger_keys = self.ledger_keys or {u: Ed25519PrivateKey.generate() for u in range(1, self.n + 1)}
        self.plan = self.make_plan()
        self.signed = sign_plan(self.plan, self.coordinator_key)
        self.nodes = {u: SecAggNode(u, self.plan) for u in self.ids}
        self.server = SecAggServer(self.plan)

    @property
    def ids(self) -> list[int]:
        return sorted(self.ledger_keys)

    def make_plan(self, **over) -> RunPlan:
        kw = dict(clip=self.clip, levels=self.levels, dim=self.dim, mode=self.mode, threshold=self.threshold,
                  neighbours=self.neighbours)
        kw.update(over)
        group = kw.pop("group", self.group)
        return make_plan("fed-test", group, [raw_public_key(self.ledger_keys[u]).hex() for u in self.ids], **kw)

    def keys(self) -> dict:
        return {u: self.nodes[u].public_keys(self.ledger_keys[u], self.trust) for u in self.ids}

    def run(self, xs, drop_after_shares=(), min_survivors=0):
        """Every stage, honestly: returns (sum as floats or the modular sum, masked inputs, survivors)."""
        pks = self.server.collect_public_keys(self.keys())
        inbox = self.server.route_shares({u: self.nodes[u].share_keys(pks) for u in self.ids})
        self.nodes = {u: SecAggNode.from_bytes(n.to_bytes()) for u, n in self.nodes.items()}  # state survives
        live = [u for u in self.ids if u not in drop_after_shares]
        if self.mode == "integer":
            masked = {u: self.nodes[u].masked_integers(xs[u - 1], inbox[u]) for u in live}
        else:
            masked = {u: self.nodes[u].masked_input(xs[u - 1], inbox[u]) for u in live}
        survivors, dropped = self.server.collect_inputs(masked)
        sigs = self.server.collect_views({u: self.nodes[u].sign_view(self.ledger_keys[u], survivors, dropped)
                                          for u in survivors})
        reveals = {u: self.nodes[u].unmask(survivors, dropped, sigs, min_survivors=min_survivors) for u in survivors}
        total, count = self.server.aggregate(reveals)
        if self.mode == "integer":
            return total, masked, survivors
        return dequantize_sum(total, count, self.clip, self.levels), masked, survivors


def xs_uniform(n: int, dim: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-0.5, 0.5, dim) for _ in range(n)]
