"""The signed run plan, signed keys, the consistency round and the policy's [trust] section (issue 11 item 1):
each check a node makes against a malicious coordinator refuses naming its rule."""

import dataclasses

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy.keys import raw_public_key
from privacy.policy import Policy, PolicyError, Trust, load_policy
from privacy.secagg.constants import SecAggError
from privacy.secagg.protocol import SecAggNode
from privacy.secagg.run_plan import RunPlan, SignedPlan, check_plan, default_threshold, sign_plan
from tests.privacy.secagg.harness import Federation


def test_plan_digest_binds_every_field_and_the_signature_verifies():
    fed = Federation(4)
    assert SignedPlan.from_json(fed.signed.to_json()).verify() == fed.plan
    digests = {fed.plan.digest()}
    for change in ({"group": "secagg-2"}, {"run_id": "other"}, {"threshold": 4}, {"seed_hex": "00" * 32},
                   {"dim": 9}, {"mode": "integer"}, {"roster": fed.plan.roster[:3]}):
        digests.add(dataclasses.replace(fed.plan, **change).digest())
    assert len(digests) == 8
    forged = SignedPlan(dataclasses.replace(fed.plan, threshold=2), fed.signed.coordinator_key_hex, fed.signed.signature_hex)
    with pytest.raises(SecAggError, match="^policy rule secagg_plan_signature:"):
        forged.verify()
    assert RunPlan.from_dict(fed.plan.to_dict()) == fed.plan


def test_default_threshold_is_a_strict_majority():
    assert [default_threshold(n) for n in (2, 3, 4, 5, 7, 8)] == [2, 2, 3, 3, 4, 5]
    assert default_threshold(10, 0.7) == 8


def test_node_checks_the_plan_against_its_own_policy():
    fed = Federation(5, threshold=3)
    me = raw_public_key(fed.ledger_keys[1])
    check_plan(fed.plan, 1, me, Trust())
    with pytest.raises(SecAggError, match="^policy rule secagg_roster:"):
        check_plan(fed.plan, 2, me, Trust())  # entry 2 is another node's key (a roster that swaps this node out)
    with pytest.raises(SecAggError, match="^policy rule secagg_min_peers: the roster names 4 other nodes"):
        check_plan(fed.plan, 1, me, Trust(secagg_min_peers=5))
    with pytest.raises(SecAggError, match="^policy rule secagg_threshold_fraction:"):
        check_plan(dataclasses.replace(fed.plan, threshold=2), 1, me, Trust())  # 2 is not > 0.5 x 5
    with pytest.raises(SecAggError, match="^policy rule secagg_threshold_fraction:"):
        check_plan(fed.plan, 1, me, Trust(secagg_threshold_fraction=0.75))  # 3 is not > 3.75
    pinned = tuple(k for _, k in fed.plan.roster[:4])
    with pytest.raises(SecAggError, match=r"^policy rule trust\.peers: roster member 5"):
        check_plan(fed.plan, 1, me, Trust(peers=pinned))
    check_plan(fed.plan, 1, me, Trust(peers=pinned + (fed.plan.roster[4][1],)))
    two = Federation(2)
    with pytest.raises(SecAggError, match="^policy rule secagg_min_peers:"):
        two.nodes[1].public_keys(two.ledger_keys[1], Trust())  # the default wants 2 peers


def test_key_signatures_bind_the_plan_and_the_roster_key():
    fed = Federation(3)
    pks = fed.keys()
    other = Federation(3, ledger_keys=fed.ledger_keys, group="secagg-0")  # an earlier round of the same nodes
    old = other.keys()
    for bad, rule in (({**pks, 2: old[2]}, "secagg_signed_keys"),  # replayed key pair from another plan
                      ({**pks, 2: (pks[3][0], pks[3][1], pks[2][2])}, "secagg_signed_keys"),  # substituted keys
                      ({**pks, 2: pks[2][:2] + (Ed25519PrivateKey.generate().sign(b"x"),)}, "secagg_signed_keys"),
                      ({**pks, 9: pks[2]}, "secagg_roster")):
        node = SecAggNode.from_bytes(fed.nodes[1].to_bytes())
        with pytest.raises(SecAggError, match=f"^policy rule {rule}:"):
            node.share_keys(bad)
    node = SecAggNode.from_bytes(fed.nodes[1].to_bytes())
    with pytest.raises(SecAggError, match="^policy rule secagg_signed_keys: the key list does not carry this node's"):
        node.share_keys({**pks, 1: SecAggNode(1, fed.plan).public_keys(fed.ledger_keys[1], fed.trust)})


def test_unmask_needs_t_signatures_over_exactly_the_signed_view():
    fed = Federation(5, threshold=3, dim=4)
    pks = fed.server.collect_public_keys(fed.keys())
    inbox = fed.server.route_shares({u: fed.nodes[u].share_keys(pks) for u in fed.ids})
    for u in fed.ids:
        fed.nodes[u].masked_input(np.zeros(4), inbox[u])
    view = ([1, 2, 3, 4, 5], [])
    sigs = {u: fed.nodes[u].sign_view(fed.ledger_keys[u], *view) for u in fed.ids}
    snap = {u: fed.nodes[u].to_bytes() for u in fed.ids}

    def unmask(u, survivors, dropped, s, **kw):
        return SecAggNode.from_bytes(snap[u]).unmask(survivors, dropped, s, **kw)

    assert len(unmask(1, *view, sigs)) == 5
    with pytest.raises(SecAggError, match="^policy rule secagg_consistency: the survivor and dropped lists differ"):
        unmask(1, [1, 2, 3, 4], [5], sigs)
    with pytest.raises(SecAggError, match="^policy rule secagg_consistency: only 2 valid"):
        unmask(1, *view, {u: sigs[u] for u in (1, 2)})
    forged = {1: sigs[1], 2: sigs[1], 3: sigs[1]}  # one node's signature filed under three ids
    with pytest.raises(SecAggError, match="^policy rule secagg_consistency: only 1 valid"):
        unmask(1, *view, forged)
    with pytest.raises(SecAggError, match="^policy rule secagg_min_survivors: 5 survivors"):
        unmask(1, *view, sigs, min_survivors=6)
    with pytest.raises(SecAggError, match="^policy rule trust.min_honest_nodes:"):
        unmask(1, *view, sigs, min_survivors=6, rule="trust.min_honest_nodes")
    assert SecAggNode.from_bytes(snap[1]).view == ([1, 2, 3, 4, 5], [])


def test_a_node_signs_only_a_view_that_lists_it_as_survivor():
    fed = Federation(3, dim=2)
    pks = fed.server.collect_public_keys(fed.keys())
    inbox = fed.server.route_shares({u: fed.nodes[u].share_keys(pks) for u in fed.ids})
    fed.nodes[1].masked_input(np.zeros(2), inbox[1])
    with pytest.raises(SecAggError, match="^policy rule secagg_consistency: this node sent its masked input"):
        fed.nodes[1].sign_view(fed.ledger_keys[1], [2, 3], [1])
    with pytest.raises(SecAggError, match="^policy rule secagg_roster:"):
        fed.nodes[1].sign_view(fed.ledger_keys[1], [1, 2, 7], [])


def test_integer_mode_is_checked():
    fed = Federation(3, mode="integer", dim=4)
    pks = fed.keys()
    fed.nodes[1].share_keys(pks)
    with pytest.raises(SecAggError, match="^policy rule secagg_mode:"):
        fed.nodes[1].masked_input(np.zeros(4), {})
    with pytest.raises(SecAggError, match="uint64 < 2\\^32"):
        fed.nodes[1].masked_integers(np.full(4, 1 << 32, dtype=np.uint64), {})


def test_trust_section_round_trips_and_old_policies_keep_their_hash(tmp_path):
    plain = Policy(community="x")
    assert "[trust]" not in plain.dumps()  # a policy from before [trust] re-dumps to the same text
    p = Policy(community="x", trust=Trust(secagg_min_peers=4, min_honest_nodes=3, peers=("ab" * 32,)))
    assert "[trust]" in p.dumps() and p.sha256() != plain.sha256()
    path = tmp_path / "policy.toml"
    p.save(path)
    assert load_policy(path) == p
    for body, field in (("secagg_threshold_fraction = 0.3", "trust.secagg_threshold_fraction"),
                        ("secagg_min_peers = 0", "trust.secagg_min_peers"), ("secagg_min_peers = true", "trust.secagg_min_peers"),
                        ('peers = ["nothex"]', "trust.peers"), ("min_honst_nodes = 2", "trust.min_honst_nodes")):
        path.write_text(plain.dumps() + f"\n[trust]\n{body}\n")
        with pytest.raises(PolicyError, match=f"{path}.*{field}"):
            load_policy(path)


def test_signed_plan_names_the_coordinator_key():
    key = Ed25519PrivateKey.generate()
    s = sign_plan(Federation(3).plan, key)
    assert s.coordinator_key_hex == raw_public_key(key).hex() and s.verify()
