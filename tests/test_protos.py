"""The protos package: generated code matches the .proto files; the wire contract (protos/wire.py)
and the bundle format (protos/bundle.py) behave as both sides of each boundary rely on."""

import json
from pathlib import Path

import pytest

from protos import build


def test_generated_code_matches_protos(tmp_path):
    generated = build.generate(tmp_path)
    assert generated, "no .proto files compiled"
    root = Path(build.__file__).parent
    for f in generated:
        committed = root / f.name
        assert committed.exists(), f"{f.name} is not committed: run `make protos`"
        assert committed.read_text() == f.read_text(), f"{f.name} drifted from its .proto: run `make protos`"
    names = {f.name for f in generated}
    assert {"ledger_pb2.py", "events_pb2.py", "query_pb2.py", "bundle_pb2.py", "release_pb2.py"} <= names
    stale = {p.name for p in root.glob("*_pb2.py*")} - names
    assert not stale, f"generated files without a .proto: {stale}"


def test_ledger_entry_round_trip():
    from protos import events_pb2, ledger_pb2

    body = ledger_pb2.LedgerEntryBody(seq=3, release_kind="train")
    body.event.poisson_sampled.sampling_probability = 0.01
    body.event.poisson_sampled.event.gaussian.sigma = 1.1
    data = body.SerializeToString(deterministic=True)
    back = ledger_pb2.LedgerEntryBody.FromString(data)
    assert back.event.poisson_sampled.event.gaussian.sigma == 1.1
    assert back.event.WhichOneof("event") == "poisson_sampled"
    assert isinstance(back.event, events_pb2.DpEvent)


def test_wire_partitions_are_the_one_cell_layout_of_every_query_kind():
    """protos/wire.py is the only definition of the cell layout: the coordinator builds queries whose
    params it reads, and malformed params are refused with the parameter named."""
    from coordinator.queries import build_query
    from protos.wire import DISCOVERY_KIND, OUTCOMES, QUERY_KINDS, RELEASE_KINDS, QueryError, partitions

    assert RELEASE_KINDS == ("train",) + QUERY_KINDS + (DISCOVERY_KIND,)
    q = build_query("battle_counts", 1.0, models=["b", "a", "c"])
    cells = partitions(q.name, dict(q.params))
    assert cells[:4] == [("a", "b", o) for o in OUTCOMES] and len(cells) == 3 * len(OUTCOMES)
    for kind in QUERY_KINDS:
        q = build_query(kind, 1.0, models=["b", "a"], languages=["en"], dimensions=["overall"], topics=["law"])
        assert partitions(kind, dict(q.params))
    with pytest.raises(QueryError, match="models"):
        partitions("battle_counts", {"models": "not json"})
    with pytest.raises(QueryError, match="unknown query kind"):
        partitions("nope", {})


def test_message_types_name_flower_query_actions():
    from protos.wire import SECAGG_STAGES, MessageType, query_action

    assert query_action(MessageType.HELLO) == "hello"
    assert [query_action(t) for t in SECAGG_STAGES] == ["secagg_keys", "secagg_shares", "secagg_masked",
                                                        "secagg_consistency", "secagg_unmask"]
    with pytest.raises(ValueError):
        query_action(MessageType.TRAIN)  # a train message is registered with ClientApp.train()


def test_rounds_record_round_trips_through_rounds_json(tmp_path):
    """rounds.json stays a JSON array of rounds (the public layout); each round is a Round message in
    its JSON form, with defaults written out and integers as JSON numbers."""
    from protos import bundle_pb2
    from protos.bundle import ROUNDS, BundleError, read_rounds, write_rounds

    record = bundle_pb2.RoundsRecord()
    r1 = record.rounds.add(round=1, aggregation="secagg+fedavg", applied=True)
    r1.contributors.add(node_id="n1", ledger_seq=3, ledger_entry_hash="ab" * 32, claimed_epsilon=0.25,
                        sampling_probability=0.2, noise_multiplier=2.5, steps=100)
    record.rounds.add(round=2, aggregation="fedavg", applied=False, refused={"n1": "policy rule privacy.epsilon_cap"})
    write_rounds(tmp_path, record)
    doc = json.loads((tmp_path / ROUNDS).read_text())
    assert doc == [
        {"round": 1, "aggregation": "secagg+fedavg", "applied": True,
         "contributors": [{"node_id": "n1", "ledger_seq": 3, "ledger_entry_hash": "ab" * 32, "claimed_epsilon": 0.25,
                           "sampling_probability": 0.2, "noise_multiplier": 2.5, "steps": 100}],
         "refused": {}, "dropped": []},
        {"round": 2, "aggregation": "fedavg", "applied": False, "contributors": [],
         "refused": {"n1": "policy rule privacy.epsilon_cap"}, "dropped": []},
    ]
    assert read_rounds(tmp_path) == record
    # an older rounds.json, without the DP-SGD parameters, still reads (they are 0: not recorded)
    (tmp_path / ROUNDS).write_text(json.dumps([{"round": 1, "contributors": [{"node_id": "n1", "ledger_seq": 0}]}]))
    assert read_rounds(tmp_path).rounds[0].contributors[0].noise_multiplier == 0
    (tmp_path / ROUNDS).write_text(json.dumps([{"round": 1, "aplied": True}]))
    with pytest.raises(BundleError, match="does not parse"):
        read_rounds(tmp_path)
    (tmp_path / ROUNDS).write_text(json.dumps({"rounds": []}))
    with pytest.raises(BundleError, match="not a JSON array"):
        read_rounds(tmp_path)
    (tmp_path / ROUNDS).unlink()
    with pytest.raises(BundleError, match="missing"):
        read_rounds(tmp_path)
