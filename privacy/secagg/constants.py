"""SecAgg+ stages and message keys, named once for both ends, and the stage-order check.

Owns the protocol's vocabulary (the way Flower names SecAgg+'s in
flwr/common/secure_aggregation/secaggplus_constants.py): its four stages in protocol order, the
keys of what each stage's messages carry, and the arithmetic modulus. protos/wire.py builds its
SecAgg message types and keys from these; node/client_app.py and coordinator/server_app.py use them
through it. The stage-order check means a node answers a stage only right after the one before it, so a
coordinator cannot replay a stage to the same node. It does NOT stop a coordinator that tells different
nodes different survivor lists, picks a tiny threshold or substitutes keys (ARCHITECTURE.md invariant 3):
that takes signed keys, a policy threshold and a consistency round (issue 11).
"""

from __future__ import annotations

MOD_BITS = 32  # masked vectors and sums live in Z_{2^32}
MOD = 1 << MOD_BITS


class SecAggError(Exception):
    """The protocol cannot go on (too few nodes, a stage out of order, a share routed wrongly)."""


class Stage:
    """The stages of SecAgg+, in protocol order; each is one coordinator -> node -> coordinator trip.

    The values are the Flower query actions the node registers (message type "query.<stage>").
    """

    KEYS = "secagg_keys"  # node: two fresh X25519 key pairs -> its public keys (c_pk, s_pk)
    SHARES = "secagg_shares"  # node: Shamir-share b_u and s_u^SK among neighbours, encrypted to each
    MASKED = "secagg_masked"  # node: its quantized input plus self and pairwise masks
    UNMASK = "secagg_unmask"  # node: b-shares of survivors, s-shares of dropped nodes
    ALL = (KEYS, SHARES, MASKED, UNMASK)

    def __new__(cls) -> Stage:
        """Not instantiable: a namespace of constants."""
        raise TypeError(f"{cls.__name__} cannot be instantiated")

    @classmethod
    def check_next(cls, done: str, stage: str) -> None:
        """Raise SecAggError unless `stage` comes right after `done` ("" when no stage is done)."""
        if stage not in cls.ALL:
            raise SecAggError(f"unknown SecAgg+ stage {stage!r} (stages: {', '.join(cls.ALL)})")
        at = cls.ALL.index(done) if done else -1
        want = cls.ALL.index(stage)
        if want <= at:
            raise SecAggError(f"SecAgg+ stage {stage} was already answered")
        if want > at + 1:
            raise SecAggError(f"SecAgg+ stage {stage} before {cls.ALL[at + 1]}")


class Key:
    """Record names and config keys of the stage messages (Flower RecordDict / ConfigRecord keys)."""

    # coordinator -> node
    ME = "me"  # KEYS: the node's protocol id (1..n)
    PARAMS = "params"  # KEYS: Params.to_json()
    PKS = "pks"  # SHARES: JSON {id: [c_pk hex, s_pk hex]} of every node that sent keys
    INBOX = "inbox"  # MASKED: record {from id: ciphertext} of shares routed to this node
    SURVIVORS = "survivors"  # UNMASK: ids that sent a masked input
    DROPPED = "dropped"  # UNMASK: ids that shared keys but sent no masked input
    # node -> coordinator
    KEYS = "keys"  # KEYS reply record: C_PK, S_PK
    C_PK = "c_pk"  # X25519 public key of the share channel
    S_PK = "s_pk"  # X25519 public key of the pairwise masks
    SHARES = "shares"  # SHARES reply: {to id: ciphertext}; UNMASK reply: {of id: kind byte + share}
    # what the node keeps between stages (Flower context.state)
    STATE_RECORD = "secagg"
    STATE = "state"

    def __new__(cls) -> Key:
        """Not instantiable: a namespace of constants."""
        raise TypeError(f"{cls.__name__} cannot be instantiated")


class ShareKind:
    """Which secret a revealed share belongs to (its first byte in the UNMASK reply)."""

    SELF_MASK = "b"  # of a survivor's self-mask seed b_u
    MASK_KEY = "s"  # of a dropped node's pairwise-mask key s_u^SK

    def __new__(cls) -> ShareKind:
        """Not instantiable: a namespace of constants."""
        raise TypeError(f"{cls.__name__} cannot be instantiated")
