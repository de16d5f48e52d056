"""The node's release gate: its ledger (in the store's database) under its community policy.

Every DP result a node hands to the network goes through `open_gate(...).release(...)`
(privacy/release.py): policy checks, the query cache, and a durable ledger entry first
(ARCHITECTURE.md invariant 2: account before release).
"""

from __future__ import annotations

from privacy.ledger import Ledger
from privacy.release import ReleaseGate


def open_ledger(nd, store) -> Ledger:
    """The node's ledger, in its store's database, signed with its ledger key."""
    return Ledger(store.conn, nd.ledger_key(), nd.name)


def open_gate(nd, store) -> ReleaseGate:
    """The release gate over the node's ledger under its community policy."""
    return ReleaseGate(open_ledger(nd, store), nd.policy())
