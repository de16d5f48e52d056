"""SecAgg+ stages and message keys, named once for both ends, and the stage-order check.

Owns the protocol's vocabulary (the way Flower names SecAgg+'s in
flwr/common/secure_aggregation/secaggplus_constants.py): its five stages in protocol order, the
keys of what each stage's messages carry, and the arithmetic modulus. protos/wire.py builds its
SecAgg message types and keys from these; node/client_app.py and coordinator/secure_sum.py use them
through it. The stage-order check means a node answers a stage only right after the one before it, so a
coordinator cannot replay a stage to the same node. Against a coordinator that substitutes keys, shrinks
the roster, picks a tiny threshold or tells different nodes different survivor lists stand the signed
run plan and signed keys (run_plan.py) and the CONSISTENCY stage (Bonawitz et al. 2017 section 6,
https://eprint.iacr.org/2017/281), checked by each node against its own policy (ARCHITECTURE.md
invariant 3). Every such refusal is a SecAggError whose message starts `policy rule <name>:`.
"""

from __future__ import annotations

MOD_BITS = 32  # masked vectors and sums live in Z_{2^32}
MOD = 1 << MOD_BITS


class SecAggError(Exception):
    """The protocol cannot go on (too few nodes, a stage out of order, a share routed wrongly), or a node
    refuses by its policy (the message then starts `policy rule <name>:`, one of `Rule`)."""


class Rule:
    """The names of the rules a node enforces on a coordinator's SecAgg+ messages (`policy rule <name>:`)."""

    PLAN_SIGNATURE = "secagg_plan_signature"  # the run plan's coordinator signature does not verify
    ROSTER = "secagg_roster"  # this node's roster entry is not its own ledger key / ids not in the roster
    MIN_PEERS = "secagg_min_peers"  # fewer other roster members than trust.secagg_min_peers
    THRESHOLD = "secagg_threshold_fraction"  # threshold <= fraction x (neighbourhood + 1), or below 2
    DEGREE = "secagg_degree"  # a sparse graph below Bell et al.'s degree, or its threshold below their bound
    PINNED_PEERS = "trust.peers"  # a roster member that is not one of the policy's pinned keys
    SIGNED_KEYS = "secagg_signed_keys"  # a peer's key pair not signed by its roster ledger key for this plan
    PLAN_ONCE = "secagg_plan_once"  # a run plan this node already took part in (one view per plan)
    CONSISTENCY = "secagg_consistency"  # fewer than t valid signatures over exactly this node's view
    INBOX = "secagg_inbox"  # too few peers' shares to mask with, or a survivor whose shares never came
    VALUE_ONCE = "secagg_value_once"  # a value already masked under another run plan (differencing two sums)
    MIN_SURVIVORS = "secagg_min_survivors"  # fewer survivors than the value's owner requires
    MODE = "secagg_mode"  # the plan's mode (float / integer) does not match the value the node holds
    STAGE_ORDER = "secagg_stage_order"  # a stage asked out of order or twice (constants.Stage.check_next)
    MALFORMED = "secagg_malformed"  # a coordinator message that does not parse: ids, hex, lengths, JSON

    def __new__(cls) -> Rule:
        """Not instantiable: a namespace of constants."""
        raise TypeError(f"{cls.__name__} cannot be instantiated")


def refuse(rule: str, why: str) -> SecAggError:
    """The SecAggError of a refusal by rule: its message starts `policy rule <rule>:`."""
    return SecAggError(f"policy rule {rule}: {why}")


class Stage:
    """The stages of SecAgg+, in protocol order; each is one coordinator -> node -> coordinator trip.

    The values are the Flower query actions the node registers (message type "query.<stage>").
    """

    KEYS = "secagg_keys"  # node: two fresh X25519 key pairs -> its public keys (c_pk, s_pk)
    SHARES = "secagg_shares"  # node: Shamir-share b_u and s_u^SK among neighbours, encrypted to each
    MASKED = "secagg_masked"  # node: its quantized input plus self and pairwise masks
    CONSISTENCY = "secagg_consistency"  # node: signs its view (plan digest, survivors, dropped), once per plan
    UNMASK = "secagg_unmask"  # node: b-shares of survivors, s-shares of dropped nodes, given >= t view signatures
    ALL = (KEYS, SHARES, MASKED, CONSISTENCY, UNMASK)

    def __new__(cls) -> Stage:
        """Not instantiable: a namespace of constants."""
        raise TypeError(f"{cls.__name__} cannot be instantiated")

    @classmethod
    def check_next(cls, done: str, stage: str) -> None:
        """Raise SecAggError unless `stage` comes right after `done` ("" when no stage is done)."""
        if stage not in cls.ALL:
            raise refuse(Rule.STAGE_ORDER, f"unknown SecAgg+ stage {stage!r} (stages: {', '.join(cls.ALL)})")
        at = cls.ALL.index(done) if done else -1
        want = cls.ALL.index(stage)
        if want <= at:
            raise refuse(Rule.STAGE_ORDER, f"SecAgg+ stage {stage} was already answered")
        if want > at + 1:
            raise refuse(Rule.STAGE_ORDER, f"SecAgg+ stage {stage} before {cls.ALL[at + 1]}")


class Key:
    """Record names and config keys of the stage messages (Flower RecordDict / ConfigRecord keys)."""

    # coordinator -> node
    ME = "me"  # KEYS: the node's protocol id (1..n)
    PARAMS = "params"  # (legacy name, unused since the signed run plan)
    RUN_PLAN = "run_plan"  # KEYS: run_plan.SignedPlan.to_json() (the roster, threshold, neighbours, seed)
    PKS = "pks"  # SHARES: JSON {id: [c_pk hex, s_pk hex, key signature hex]} of every node that sent keys
    INBOX = "inbox"  # MASKED: record {from id: ciphertext} of shares routed to this node
    SURVIVORS = "survivors"  # CONSISTENCY, UNMASK: ids that sent a masked input
    DROPPED = "dropped"  # CONSISTENCY, UNMASK: ids that shared keys but sent no masked input
    VIEW_SIGS = "view_sigs"  # UNMASK: JSON {id: view signature hex} collected in CONSISTENCY
    # node -> coordinator
    KEYS = "keys"  # KEYS reply record: C_PK, S_PK, KEY_SIG
    C_PK = "c_pk"  # X25519 public key of the share channel
    S_PK = "s_pk"  # X25519 public key of the pairwise masks
    KEY_SIG = "key_sig"  # Ed25519 signature by the node's ledger key over (plan digest, id, c_pk, s_pk)
    VIEW_SIG = "view_sig"  # CONSISTENCY reply: signature by the ledger key over (plan digest, survivors, dropped)
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
