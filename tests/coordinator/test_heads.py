"""coordinator/heads.py: what the coordinator keeps of each node's replies (issue 15). A forged head, a
head of another run or of another node is not kept; the longest export and the latest head are; the
final `ledger` exchange is asked only of nodes whose export stops before their latest head."""

import sqlite3

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ConfigRecord, RecordDict

from coordinator.heads import Collected, RunGrid
from privacy.events import GaussianEvent
from privacy.ledger import Ledger
from privacy.ledger_head import from_dict, head_of_entry
from protos.wire import Key, Record

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def _ledger(key, n):
    led = Ledger(sqlite3.connect(":memory:", isolation_level=None), key, "c")
    for i in range(n):
        led.append("train", GaussianEvent(4.0), 1e-6, "p" * 64, round_id=f"fed/{i}", request_hash=str(i), payload=b"x")
    return led


def _reply(head=None, export=None, info=None) -> RecordDict:
    rec = {}
    if head is not None:
        rec[Record.HEAD] = ConfigRecord({Key.SIGNED_HEAD: head.to_json()})
    if export is not None:
        rec[Record.LEDGER] = ConfigRecord({Key.EXPORT: export.SerializeToString(deterministic=True)})
    if info is not None:
        rec[Record.INFO] = ConfigRecord({Key.NODE_ID: info})
    return RecordDict(rec)


def test_keeps_latest_head_and_longest_export_and_refuses_forgeries():
    led = _ledger(KEY, 3)
    entries, nid = led.entries(), led.node_id
    c = Collected("fed")
    c.observe(7, _reply(head_of_entry(KEY, entries[0], "fed"), led.export(), info=nid))  # the hello names the node
    assert c.behind() == [] and c.latest(nid).seq == 0
    c.observe(7, _reply(head_of_entry(KEY, entries[2], "fed")))  # a SecAgg reply: head only, beyond the export?
    assert c.latest(nid).seq == 2 and c.behind() == []  # the hello's export already holds all 3 entries
    forged = from_dict({**head_of_entry(KEY, entries[2], "fed").to_dict(), "seq": 5})
    c.observe(7, _reply(forged))
    c.observe(7, _reply(head_of_entry(KEY, entries[2], "another-run")))
    c.observe(7, _reply(head_of_entry(OTHER, None, "fed")))  # another node's genuine head
    c.observe(8, _reply(head_of_entry(KEY, entries[2], "fed")))  # a Flower node that never said hello
    assert sorted(c.heads[nid]) == [0, 2] and list(c.heads) == [nid]
    assert c.published_head(nid).seq == 2


def test_ledger_exchange_only_for_nodes_behind_and_fallback_head():
    led = _ledger(KEY, 1)
    nid = led.node_id
    c = Collected("fed")
    c.observe(1, _reply(head_of_entry(KEY, led.head(), "fed"), led.export(), info=nid))
    led.append("train", GaussianEvent(4.0), 1e-6, "p" * 64, round_id="fed/9", request_hash="9", payload=b"x")
    c.observe(1, _reply(head_of_entry(KEY, led.head(), "fed")))  # a release whose export never arrived
    assert c.behind() == [nid]
    assert c.published_head(nid).seq == 0  # what the export reaches; the node's own head shows the rest


class _Grid:
    def __init__(self, replies):
        self.replies, self.sent = replies, []

    def send_and_receive(self, messages, timeout=None):
        self.sent += messages
        return self.replies

    def get_node_ids(self):
        return [1]


def test_run_grid_names_the_run_in_every_message():
    from types import SimpleNamespace

    grid = RunGrid(_Grid([]), Collected("fed-42"))
    msg = SimpleNamespace(content=RecordDict())  # a Message needs a running Flower task; RunGrid reads only content
    assert grid.send_and_receive([msg]) == [] and grid.get_node_ids() == [1]
    assert msg.content[Record.RUN][Key.RUN_ID] == "fed-42"
