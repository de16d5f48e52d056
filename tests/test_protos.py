"""Generated protobuf code is committed; it must match the .proto files exactly."""

from pathlib import Path

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
    stale = {p.name for p in root.glob("*_pb2.py")} - names
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
