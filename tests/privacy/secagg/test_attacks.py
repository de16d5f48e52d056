"""Issue 11 item 1: the attacks of a malicious coordinator on SecAgg+, each played for real.

Each attack is a coordinator written here against the transport-free state machines
(privacy/secagg/protocol.py SecAggNode) and the coordinator-signed run plan (privacy/secagg/run_plan.py).
Each test plays it twice:
- with the one defence it targets switched off (a monkeypatched check, or a policy that allows it): the
  coordinator reconstructs the victim's quantized input EXACTLY (integer equality with q(x), the value the
  victim masked), which proves the attack is real and the defence is what stops it;
- with the defences on: a node refuses with SecAggError `policy rule <name>: ...` naming the rule, before
  it hands out any share (or key) that the reconstruction needs.
Mask arithmetic: y_u = q(x_u) + PRG(b_u) + sum_{v>u} PRG(s_uv) - sum_{v<u} PRG(s_uv) mod 2^32 (Bonawitz et
al. 2017, Protocol 0, https://eprint.iacr.org/2017/281): whoever holds b_u and every s_uv of u's mask
holds q(x_u). The security bound the split-view tests exercise: two contradictory views each need t
shares, so with c colluding members the coordinator wins iff 2t <= n + c (Bonawitz et al. 2017 section 6);
one test shows it with every defence on at the default fraction, and the policy setting that refuses it.
Two attacks found while writing these (a withheld inbox; one cached release unmasked in two aggregations)
are in test_attacks_node.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import privacy.secagg.protocol as protocol
from privacy.keys import raw_public_key
from privacy.policy import Trust
from privacy.secagg.consistency import sign_view
from privacy.secagg.constants import MOD, SecAggError
from privacy.secagg.crypto import CHANNEL_INFO, MASK_INFO, agree, combine, new_key_pair, open_shares, prg, seal_shares, share
from privacy.secagg.quantization import quantize
from privacy.secagg.run_plan import check_key_signature, check_plan, make_plan, sign_plan

CLIP, LEVELS, DIM = 1.0, 1 << 16, 16


def rule(name: str) -> str:
    """The refusal's message prefix (constants.refuse)."""
    return rf"^policy rule {name}:"


class Aggregation:
    """One aggregation as a coordinator sees it: the nodes' state machines, their ledger keys (it holds
    those of the members it controls, `sybils`), the signed plan, each node's input and trust."""

    def __init__(self, n: int, threshold: int, *, group: str = "secagg-1", ledger_keys: dict | None = None,
                 trust: Trust | None = None, sybils: tuple[int, ...] = (), seed: int = 0, values: dict | None = None):
        self.ledger_keys = ledger_keys or {u: Ed25519PrivateKey.generate() for u in range(1, n + 1)}
        self.ids = sorted(self.ledger_keys)
        plan = make_plan("fed", group, [raw_public_key(self.ledger_keys[u]).hex() for u in self.ids],
                         clip=CLIP, levels=LEVELS, dim=DIM, threshold=threshold, mode="integer" if values else "float")
        self.plan = sign_plan(plan, Ed25519PrivateKey.generate()).verify()  # what every node checks first
        self.nodes = {u: protocol.SecAggNode(u, self.plan) for u in self.ids}
        self.trust = {u: Trust(secagg_min_peers=1) if u in sybils else (trust or Trust()) for u in self.ids}
        rng = np.random.default_rng(seed)
        self.xs = {u: rng.uniform(-0.5, 0.5, DIM) for u in self.ids}
        self.values = values or {}  # mode "integer": each node's vector in Z_{2^32}, masked as is
        self.sybils = sybils
        self.pks: dict = {}

    def truth(self, u: int) -> np.ndarray:
        """q(x_u): the integer vector node u masks (its quantization draws are seeded by u)."""
        if self.values:
            return self.values[u]
        return quantize(self.xs[u], CLIP, LEVELS, np.random.default_rng(u))

    def keys(self) -> dict:
        """Stage KEYS at every node: {u: (c_pk, s_pk, signature)}."""
        self.pks = {u: self.nodes[u].public_keys(self.ledger_keys[u], self.trust[u]) for u in self.ids}
        return self.pks

    def shares(self, told: dict | None = None) -> dict:
        """Stage SHARES at every node, each told `told.get(u, self.pks)`; returns inbox[v][u] (u's ciphertext for v)."""
        told = told or {}
        cts = {u: self.nodes[u].share_keys(told.get(u, self.pks)) for u in self.ids}
        return {v: {u: c[v] for u, c in cts.items() if v in c} for v in self.ids}

    def masked(self, u: int, inbox: dict) -> np.ndarray:
        if self.values:
            return self.nodes[u].masked_integers(self.values[u], inbox)
        return self.nodes[u].masked_input(self.xs[u], inbox, np.random.default_rng(u))

    def honest_until_masked(self) -> dict:
        """KEYS, SHARES, MASKED played honestly at every node: {u: y_u}."""
        self.keys()
        inbox = self.shares()
        return {u: self.masked(u, inbox[u]) for u in self.ids}

    def sign(self, u: int, survivors: list[int], dropped: list[int]) -> bytes:
        """Node u's view signature: through its state machine (honest u), or directly (a member the
        coordinator controls signs every view it likes)."""
        if u in self.sybils and self.nodes[u].view:  # its state machine signed one view already
            return sign_view(self.ledger_keys[u], self.plan.digest(), survivors, dropped)
        return self.nodes[u].sign_view(self.ledger_keys[u], survivors, dropped)

    def mask_key_of(self, u: int, s_sk: bytes, v: int) -> bytes:
        """The pairwise mask seed s_uv, knowing u's mask key s_sk (and v's public mask key)."""
        return agree(s_sk, self.pks[v][1], MASK_INFO)


def unmask_alone(y: np.ndarray, me: int, b: bytes, mask_seeds: dict[int, bytes]) -> np.ndarray:
    """What the coordinator computes from one masked input y_me once it holds b_me and the seed of every
    pairwise mask y_me carries: q(x_me) = y_me - PRG(b_me) -+ PRG(s_me,v)  (mod 2^32)."""
    x = (y + MOD - prg(b, len(y))) % MOD
    for v, seed in mask_seeds.items():
        m = prg(seed, len(y))
        x = (x + MOD - m) % MOD if v > me else (x + m) % MOD
    return x


def off(monkeypatch, name: str, replacement) -> None:
    """Switch one node-side check off (the attack's 'defence off' half)."""
    monkeypatch.setattr(protocol, name, replacement)


# --- 1. key substitution ---------------------------------------------------------------------------


def key_substitution(agg: Aggregation, victim: int = 1, forged: dict | None = None) -> np.ndarray:
    """The coordinator tells the victim that every peer's keys are key pairs it made itself (with the peers'
    own signatures, over other keys: it holds no ledger key), or `forged` {v: ((c_sk, c_pk), (s_sk, s_pk), sig)}.
    The victim encrypts its shares of b_u AND s_u^SK to keys the coordinator holds and masks with seeds it
    can derive: it learns q(x_victim) from y_victim alone, with no UNMASK at all."""
    real = agg.keys()
    forged = forged or {v: (new_key_pair(), new_key_pair(), real[v][2]) for v in agg.ids if v != victim}
    told = {**real, **{v: (c[1], s[1], sig) for v, (c, s, sig) in forged.items()}}
    inbox = agg.shares({victim: told})  # <- the victim checks the key signatures here
    # the victim's inbox as the coordinator forges it, under the channel keys it made (real ones would not open)
    fake = share(b"\x00" * 32, agg.plan.threshold, len(agg.ids))
    inbox[victim] = {v: seal_shares(agree(c[0], real[victim][0], CHANNEL_INFO), v, victim, fake[v - 1], fake[v - 1])
                     for v, (c, _, _) in forged.items()}
    y = agg.masked(victim, inbox[victim])
    opened = {v: open_shares(agree(c[0], real[victim][0], CHANNEL_INFO), inbox[v][victim], victim, v)
              for v, (c, _, _) in forged.items()}
    t = agg.plan.threshold
    b = combine([b_sh for b_sh, _ in opened.values()][:t])
    return unmask_alone(y, victim, b, {v: agree(s[0], real[victim][1], MASK_INFO) for v, (_, s, _) in forged.items()})


def test_key_substitution_recovers_an_update_and_is_refused_by_signed_keys(monkeypatch):
    agg = Aggregation(5, 3, seed=1)  # a threshold the policy accepts: only signed keys stop this
    with pytest.raises(SecAggError, match=rule("secagg_signed_keys")):
        key_substitution(agg)
    assert agg.nodes[1].b == b"" and agg.nodes[1].own_shares == (b"", b"")  # refused before sharing anything

    off(monkeypatch, "check_key_signature", lambda *a: None)
    agg = Aggregation(5, 3, seed=1)
    assert np.array_equal(key_substitution(agg), agg.truth(1))


# --- 2. different survivor / dropped lists told to different nodes -------------------------------------


def split_views(agg: Aggregation, side_a: list[int], side_b: list[int], victim: int = 1,
                colluder: int | None = None) -> np.ndarray:
    """Honest KEYS/SHARES/MASKED; then side A (the victim among them) is told "everyone survived" and side
    B "the victim dropped". Side A reveals b-shares of the victim, side B s-shares of its mask key; each side
    signs its own view, and a member the coordinator controls (`colluder`) signs both and gives both shares.
    With t of each, the coordinator holds b_victim and s_victim^SK: q(x_victim) exactly."""
    ys = agg.honest_until_masked()
    everyone = list(agg.ids)
    view_a, view_b = (everyone, []), ([v for v in everyone if v != victim], [victim])
    sigs_a = {u: agg.sign(u, *view_a) for u in side_a}
    sigs_b = {u: agg.sign(u, *view_b) for u in side_b}
    b_sh = [agg.nodes[u].unmask(*view_a, sigs_a)[victim][1] for u in side_a if u != colluder]
    s_sh = [agg.nodes[u].unmask(*view_b, sigs_b)[victim][1] for u in side_b if u != colluder]
    if colluder is not None:  # the coordinator's own member opens its inbox itself: both shares of the victim
        c = agg.nodes[colluder]
        b_c, s_c = open_shares(agree(c.c_sk, c.pks[victim][0], CHANNEL_INFO), c.inbox[victim], victim, colluder)
        b_sh, s_sh = b_sh + [b_c], s_sh + [s_c]
    t = agg.plan.threshold
    b, s_sk = combine(b_sh[:t]), combine(s_sh[:t])
    return unmask_alone(ys[victim], victim, b, {v: agg.mask_key_of(victim, s_sk, v) for v in everyone if v != victim})


def lax_threshold(plan, me, key, trust):
    """check_plan with the threshold rule switched off (every other rule kept)."""
    return check_plan(plan, me, key, dataclasses.replace(trust, secagg_threshold_fraction=0.0))


@pytest.mark.parametrize("n, t", [(5, 2), (7, 2), (7, 3)])
def test_split_views_recover_one_input_and_are_refused_by_the_threshold_rule(monkeypatch, n, t):
    """At t <= n/2 two disjoint parts of the roster each reach t: the consistency round cannot tell them
    apart (each view really has t signatures), so the node's threshold rule is the defence."""
    side_a, side_b = list(range(1, t + 1)), list(range(t + 1, 2 * t + 1))
    agg = Aggregation(n, t, seed=n + t)
    with pytest.raises(SecAggError, match=rule("secagg_threshold_fraction")):
        split_views(agg, side_a, side_b)
    for u in agg.ids:  # every node refuses the plan before it makes a key: nothing to share, nothing to reveal
        with pytest.raises(SecAggError, match=rule("secagg_threshold_fraction")):
            protocol.SecAggNode(u, agg.plan).public_keys(agg.ledger_keys[u], Trust())

    off(monkeypatch, "check_plan", lax_threshold)
    agg = Aggregation(n, t, seed=n + t)
    assert np.array_equal(split_views(agg, side_a, side_b), agg.truth(1))


def lone_survivor(agg: Aggregation, victim: int = 1) -> np.ndarray:
    """Every node is told the same view, "only the victim survived, everyone else dropped": the victim reveals
    its own b-share and everyone's mask-key shares, the others (told they dropped) reveal the victim's b-share
    and each other's mask-key shares. One consistent view, so no split: the coordinator holds b_victim and
    every s_v^SK, so every mask of y_victim, for a 'sum' of one input."""
    ys = agg.honest_until_masked()
    others = [v for v in agg.ids if v != victim]
    view = ([victim], others)
    sigs = {u: agg.sign(u, *view) for u in agg.ids}  # <- a node listed as dropped refuses to sign
    reveals = {u: agg.nodes[u].unmask(*view, sigs) for u in agg.ids}
    t = agg.plan.threshold
    b = combine([r[victim][1] for r in reveals.values() if victim in r][:t])
    s_sk = {v: combine([r[v][1] for r in reveals.values() if v in r][:t]) for v in others}
    return unmask_alone(ys[victim], victim, b, {v: agg.mask_key_of(v, s_sk[v], victim) for v in others})


def test_a_survivor_list_of_one_recovers_an_input_and_is_refused_by_the_consistency_round(monkeypatch):
    """Two defences stop it: the victim counts the survivors it is summed with (trust.secagg_min_peers,
    at least 1 in any valid policy), and every node told it dropped refuses to sign the view."""
    agg = Aggregation(5, 3, seed=3)
    with pytest.raises(SecAggError, match=rule("secagg_min_peers")):
        lone_survivor(agg)  # the victim signs first
    for u in agg.ids[1:]:
        with pytest.raises(SecAggError, match=rule("secagg_consistency")):
            agg.sign(u, [1], agg.ids[1:])
    assert all(node.stage != "secagg_unmask" for node in agg.nodes.values())  # nobody revealed anything

    off(monkeypatch, "check_view", lambda *a: None)
    off(monkeypatch, "check_view_signatures", lambda *a: 0)
    agg = Aggregation(5, 3, trust=Trust(secagg_min_peers=0), seed=3)  # defence off: a policy validation refuses
    assert Trust(secagg_min_peers=0).problems()
    assert np.array_equal(lone_survivor(agg), agg.truth(1))


# --- 3. a threshold of 2 ---------------------------------------------------------------------------------


def test_threshold_two_lets_one_colluder_and_one_fooled_node_recover_an_input(monkeypatch):
    """t=2 of 6 with one member the coordinator controls (node 6): the victim's own b-share plus the colluder's,
    and one fooled node's s-share plus the colluder's, are all it needs; each view has 2 = t signatures, so
    only the threshold rule stops it (refused at KEYS, before any key or share exists)."""
    agg = Aggregation(6, 2, sybils=(6,), seed=6)
    with pytest.raises(SecAggError, match=rule("secagg_threshold_fraction")):
        split_views(agg, [1, 6], [2, 6], colluder=6)

    off(monkeypatch, "check_plan", lax_threshold)
    agg = Aggregation(6, 2, sybils=(6,), seed=6)
    assert np.array_equal(split_views(agg, [1, 6], [2, 6], colluder=6), agg.truth(1))


def test_one_colluder_defeats_a_bare_majority_so_a_wary_community_raises_the_fraction():
    """The bound 2t > n + c: at n=7 the default fraction 0.5 allows t=4, and one colluding member (7) signs
    both views and gives both shares, so the victim's input is recovered WITH every defence on. A community
    that fears one colluder sets trust.secagg_threshold_fraction = 2/3, and its node refuses that plan."""
    agg = Aggregation(7, 4, sybils=(7,), seed=7)
    assert np.array_equal(split_views(agg, [1, 2, 3, 7], [4, 5, 6, 7], colluder=7), agg.truth(1))

    agg = Aggregation(7, 4, sybils=(7,), trust=Trust(secagg_threshold_fraction=2 / 3), seed=7)
    with pytest.raises(SecAggError, match=rule("secagg_threshold_fraction")):
        split_views(agg, [1, 2, 3, 7], [4, 5, 6, 7], colluder=7)


# --- 4. a shrunken roster --------------------------------------------------------------------------------


def honest_sum(agg: Aggregation) -> np.ndarray:
    """Every stage played honestly, nobody dropped: the modular sum of the masked values."""
    ys = agg.honest_until_masked()
    everyone = list(agg.ids)
    sigs = {u: agg.sign(u, everyone, []) for u in everyone}
    reveals = {u: agg.nodes[u].unmask(everyone, [], sigs) for u in everyone}
    total = sum(ys.values()) % MOD
    t = agg.plan.threshold
    for u in everyone:
        total = (total + MOD - prg(combine([r[u][1] for r in reveals.values() if u in r][:t]), DIM)) % MOD
    return total


def shrunken_roster(agg: Aggregation, victim: int = 1) -> np.ndarray:
    """A roster of the victim and members the coordinator plays itself: the protocol runs honestly and the
    unmasked sum minus the coordinator's own inputs is the victim's input."""
    total = honest_sum(agg)
    for u in agg.ids:
        if u != victim:
            total = (total + MOD - agg.truth(u)) % MOD
    return total


def test_a_roster_of_two_recovers_an_input_and_is_refused_by_min_peers():
    agg = Aggregation(2, 2, sybils=(2,), seed=2)
    with pytest.raises(SecAggError, match=rule("secagg_min_peers")):
        shrunken_roster(agg)
    assert agg.nodes[1].c_sk == b""  # refused at KEYS: no key made

    agg = Aggregation(2, 2, sybils=(2,), trust=Trust(secagg_min_peers=1), seed=2)  # defence off: a lax policy
    assert np.array_equal(shrunken_roster(agg), agg.truth(1))


def test_a_roster_of_sybils_is_refused_by_pinned_peers():
    """Three members pass min_peers = 2, but two are keys the coordinator made: only the community's pinned
    peers (trust.peers) tell them from real communities."""
    honest = {u: Ed25519PrivateKey.generate() for u in (1, 2, 3)}
    pinned = Trust(peers=tuple(raw_public_key(k).hex() for k in honest.values()))
    keys = {1: honest[1], 2: Ed25519PrivateKey.generate(), 3: Ed25519PrivateKey.generate()}
    agg = Aggregation(3, 2, ledger_keys=keys, trust=pinned, sybils=(2, 3), seed=4)
    with pytest.raises(SecAggError, match=rule("trust.peers")):
        shrunken_roster(agg)

    agg = Aggregation(3, 2, ledger_keys=keys, sybils=(2, 3), seed=4)  # defence off: no pinned peers
    assert np.array_equal(shrunken_roster(agg), agg.truth(1))


# --- 5. a replayed old key -------------------------------------------------------------------------------


def test_a_replayed_key_from_an_earlier_round_is_refused_by_signed_keys(monkeypatch):
    """Round 1 ran; the coordinator kept every node's signed key advertisement, and holds the peers' round-1
    key pairs (a node's state from an earlier round that leaked; a dropped node's mask key it reconstructed
    legitimately). In round 2 (same roster) it replays them to the victim: genuine signatures by the peers'
    roster keys, but over round 1's plan digest. Accepted, they would give the coordinator every share and
    mask seed of the victim (as key substitution does)."""
    keys = {u: Ed25519PrivateKey.generate() for u in range(1, 6)}
    old = Aggregation(5, 3, group="secagg-1", ledger_keys=keys, seed=5)
    old_sigs = old.keys()
    old.shares()  # round 1 goes on; its key pairs stay in the nodes' states
    leaked = {v: ((old.nodes[v].c_sk, old_sigs[v][0]), (old.nodes[v].s_sk, old_sigs[v][1]), old_sigs[v][2])
              for v in (2, 3, 4, 5)}
    for v, ((c_sk, c_pk), (s_sk, s_pk), sig) in leaked.items():  # genuine: they verify against round 1's plan
        check_key_signature(old.plan, v, c_pk, s_pk, sig)

    new = Aggregation(5, 3, group="secagg-2", ledger_keys=keys, seed=5)
    with pytest.raises(SecAggError, match=rule("secagg_signed_keys")):
        key_substitution(new, forged=leaked)

    def any_round(plan, v, c_pk, s_pk, sig):  # defence off: a genuine signature over ANY earlier plan is accepted
        try:
            check_key_signature(plan, v, c_pk, s_pk, sig)
        except SecAggError:
            check_key_signature(old.plan, v, c_pk, s_pk, sig)

    off(monkeypatch, "check_key_signature", any_round)
    new = Aggregation(5, 3, group="secagg-2", ledger_keys=keys, seed=5)
    assert np.array_equal(key_substitution(new, forged=leaked), new.truth(1))
