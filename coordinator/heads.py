"""What the coordinator keeps of each node as replies arrive: its latest signed ledger head and its
longest signed ledger export (issue 15).

Every coordinator message names the run (Record.RUN: the federation id) and every node reply carries
the node's signed ledger head (privacy/ledger_head.py) for that run; release replies, refusals and
the hello also carry the node's signed ledger export. `RunGrid` wraps the Flower Grid so that this
happens in one place for every exchange (hello, budgets, training, SecAgg+ stages, discovery,
queries): the run record goes out, and `Collected.observe` keeps each node's latest head and longest
export. A node that drops after contributing is therefore still published with every release it
made, and the bundle carries the latest head it signed, which the auditor holds the published ledger
to (privacy/audit/heads.py).

Fewer exchanges (issue 16): the ledger export arrives with the hello and with every release reply,
so the final `query.ledger` exchange is asked only of the nodes whose latest signed head is beyond
the last export received (`behind`): normally none. A node that cannot be asked again is published
with the latest head its export reaches (the coordinator cannot publish a ledger it never received;
the node's own head, `cairn audit verify --node-head`, then shows what is missing).
The coordinator verifies nothing on the nodes' behalf beyond keeping only heads that verify and name
the node that sent them (ARCHITECTURE.md invariant 3): the auditor checks everything again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flwr.app import ConfigRecord, RecordDict

from privacy.ledger_head import HeadError, LedgerHead, parse_json, reach_problem, verify_head
from protos import ledger_pb2
from protos.wire import Key, Record

log = logging.getLogger("cairn.coordinator")


@dataclass
class Collected:
    """Per node id: every verified head it signed (by seq) and its longest ledger export."""

    run_id: str
    heads: dict[str, dict[int, LedgerHead]] = field(default_factory=dict)
    ledgers: dict[str, bytes] = field(default_factory=dict)
    ids: dict[int, str] = field(default_factory=dict)  # Flower node id -> node id (from its hello)

    def observe(self, src: int, content: RecordDict) -> None:
        """Keep the head and export `content` (a reply from Flower node `src`) carries."""
        nid = self.ids.get(src)
        if nid is None and Record.INFO in content:  # the hello: the node names itself
            nid = self.ids[src] = str(content[Record.INFO][Key.NODE_ID])
        if nid is None:
            return
        if Record.HEAD in content:
            try:
                head = parse_json(str(content[Record.HEAD][Key.SIGNED_HEAD]))
                problems = verify_head(head) + ([] if head.node_id == nid else [f"names node {head.node_id[:16]}"])
            except (HeadError, KeyError) as e:
                problems, head = [str(e)], None
            if problems or head is None:
                log.warning("node %s: ignored a ledger head: %s", nid[:12], "; ".join(problems))
            elif head.run_id != self.run_id:
                log.warning("node %s: ignored a ledger head signed for run %r", nid[:12], head.run_id)
            else:
                self.heads.setdefault(nid, {}).setdefault(head.seq, head)
        if Record.LEDGER in content:
            data = bytes(content[Record.LEDGER][Key.EXPORT])
            export = ledger_pb2.LedgerExport.FromString(data)
            if export.node_id != nid:
                log.warning("node %s: ignored a ledger export of node %s", nid[:12], export.node_id[:12])
                return
            old = self.ledgers.get(nid)
            if old is None or len(export.entries) >= len(ledger_pb2.LedgerExport.FromString(old).entries):
                self.ledgers[nid] = data

    def latest(self, nid: str) -> LedgerHead | None:
        """The latest head node `nid` signed during the run."""
        heads = self.heads.get(nid)
        return heads[max(heads)] if heads else None

    def behind(self) -> list[str]:
        """Node ids whose latest signed head the export received does not reach (the `ledger` exchange asks them)."""
        out = []
        for nid in sorted(self.heads):
            export = ledger_pb2.LedgerExport.FromString(self.ledgers[nid]) if nid in self.ledgers else None
            head = self.latest(nid)
            if head is not None and reach_problem(head, list(export.entries) if export else []) is not None:
                out.append(nid)
        return out

    def published_head(self, nid: str) -> LedgerHead | None:
        """The head the bundle carries for `nid`: the latest one its export reaches (the latest, normally)."""
        entries = list(ledger_pb2.LedgerExport.FromString(self.ledgers[nid]).entries) if nid in self.ledgers else []
        for seq in sorted(self.heads.get(nid, {}), reverse=True):
            if reach_problem(self.heads[nid][seq], entries) is None:
                if seq != max(self.heads[nid]):
                    log.warning("node %s: its ledger export stops before its latest signed head (seq %d); the bundle "
                                "carries its head at seq %d", nid[:12], max(self.heads[nid]), seq)
                return self.heads[nid][seq]
        return None


class RunGrid:
    """A Flower Grid that names the run in every message and keeps what every reply carries."""

    def __init__(self, grid, collected: Collected):
        self._grid = grid
        self.collected = collected

    def send_and_receive(self, messages, *, timeout=None):
        """Grid.send_and_receive, with Record.RUN added to each message and each reply observed."""
        messages = list(messages)
        for m in messages:
            m.content[Record.RUN] = ConfigRecord({Key.RUN_ID: self.collected.run_id})
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for rep in replies:
            if not rep.has_error():
                try:
                    self.collected.observe(rep.metadata.src_node_id, rep.content)
                except Exception as e:  # noqa: BLE001 - a malformed reply never stops the run; the auditor judges
                    log.warning("node %s: unreadable head or ledger in a reply: %s", rep.metadata.src_node_id, e)
        return replies

    def __getattr__(self, name):
        return getattr(self._grid, name)


def dropped_ids(rounds) -> list[str]:
    """The node ids a RoundsRecord records as dropped in some round, sorted."""
    return sorted({d for r in rounds.rounds for d in r.dropped})
