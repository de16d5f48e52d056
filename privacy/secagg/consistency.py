"""The consistency round: no node reveals a share until enough of its neighbours confirm the same view.

Bonawitz et al. 2017 section 6 (https://eprint.iacr.org/2017/281, "ConsistencyCheck" of Figure 4):
after the masked inputs, each surviving node signs its view — (plan digest, sorted survivors, sorted
dropped) — with its ledger key; the coordinator relays the signatures; a node reveals shares only when
at least t valid signatures from distinct members of its neighbourhood-plus-itself cover EXACTLY the view
it signed itself, and the survivor and dropped lists it is then asked to unmask for are that view. A node
signs one view per plan. With t > half of every neighbourhood-plus-self (run_plan.check_plan) two
different views cannot both gather t HONEST signatures in one neighbourhood, so a coordinator that tells
node A "v survived" and node B "v dropped" gets neither reveal it needs to recover v's input (the attack
that recovered one node's input exactly at n=5, t=2). Members the coordinator controls sign both views:
with c of them the bound is 2t > k + 1 + c (raise trust.secagg_threshold_fraction to tolerate more); and
in a sparse graph each holder counts signatures in ITS neighbourhood, so the threshold must also meet
Bell et al.'s bound (run_plan.check_sparse_graph; tests/privacy/secagg/test_attacks_graph.py splits the
ring below it). Protects ARCHITECTURE.md invariant 3.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy.secagg.constants import Rule, refuse
from privacy.secagg.run_plan import RunPlan, verifies

_VIEW_DOMAIN = b"cairn/secagg/view/v1\n"


def view_message(digest: bytes, survivors: Iterable[int], dropped: Iterable[int]) -> bytes:
    """The bytes a node signs for its view of the aggregation with this plan digest."""
    s, d = sorted(set(survivors)), sorted(set(dropped))
    return _VIEW_DOMAIN + digest + f"{','.join(map(str, s))}|{','.join(map(str, d))}".encode()


def sign_view(ledger_key: Ed25519PrivateKey, digest: bytes, survivors: Iterable[int], dropped: Iterable[int]) -> bytes:
    """The node's signature over its view (64 bytes)."""
    return ledger_key.sign(view_message(digest, survivors, dropped))


def check_view(plan: RunPlan, me: int, survivors: list[int], dropped: list[int], inbox: set[int] | None = None,
               min_peers: int = 1) -> None:
    """The view a node is asked to sign: ids in the roster, disjoint, the node itself a survivor, at least
    `min_peers` (trust.secagg_min_peers) OTHER survivors; and (Bonawitz et al. 2017 Fig. 4 round 4, U3 within
    U2 and |U3| >= t) with `inbox` (the neighbours whose shares it received) every surviving neighbour in it
    and at least t survivors in its neighbourhood-plus-self. The roster's size is not what is summed: a
    coordinator that lets all but one peer "drop" sums the node with one member it controls (the shrunken
    roster again, through dropouts), so the survivors are counted against min_peers too."""
    if len(survivors) + len(dropped) > 2 * len(plan.roster):  # before any set is built from a hostile list
        raise refuse(Rule.MALFORMED, "the survivor and dropped lists are longer than the roster")
    ids = {u for u, _ in plan.roster}
    if set(survivors) & set(dropped):
        raise refuse(Rule.CONSISTENCY, "a node cannot be both survivor and dropped")
    if not set(survivors) | set(dropped) <= ids:
        raise refuse(Rule.ROSTER, "the survivor or dropped list names a node outside the run plan's roster")
    if me not in survivors:
        raise refuse(Rule.CONSISTENCY, "this node sent its masked input but is not listed as a survivor")
    if len(set(survivors) - {me}) < min_peers:
        raise refuse(Rule.MIN_PEERS, f"{len(set(survivors) - {me})} other survivors; this node's policy needs at "
                                     f"least {min_peers}")
    if inbox is None:
        return
    near = set(survivors) & set(plan.params().neighbourhood(me))
    if not near <= inbox:
        raise refuse(Rule.INBOX, "a neighbour listed as survivor never sent this node its shares")
    if len(near) + 1 < plan.threshold:
        raise refuse(Rule.CONSISTENCY, f"{len(near) + 1} survivors in this node's neighbourhood (itself included); "
                                       f"threshold is {plan.threshold}")


def check_view_signatures(plan: RunPlan, me: int, signed: tuple[list[int], list[int]], survivors: list[int],
                          dropped: list[int], signatures: dict[int, bytes]) -> int:
    """Refuses (CONSISTENCY) unless the lists to unmask for are exactly the view this node signed and at
    least t distinct members of its neighbourhood-plus-self signed that view; returns how many did."""
    if (sorted(set(survivors)), sorted(set(dropped))) != (sorted(set(signed[0])), sorted(set(signed[1]))):
        raise refuse(Rule.CONSISTENCY, "the survivor and dropped lists differ from the view this node signed")
    msg = view_message(plan.digest(), signed[0], signed[1])
    hood = set(plan.params().neighbourhood(me)) | {me}
    valid = sum(1 for v, sig in signatures.items() if v in hood and verifies(plan.key_of(v), sig, msg))
    if valid < plan.threshold:
        raise refuse(Rule.CONSISTENCY, f"only {valid} valid signatures from this node's neighbourhood over its view; "
                                       f"threshold is {plan.threshold}")
    return valid
