"""A bundle is written whole or not at all (coordinator/bundle.py): a temporary directory renamed at
the end; a failure leaves neither the bundle directory nor a partial one."""

import pytest

from coordinator.bundle import BundleError, write_bundle
from privacy.audit import verify_bundle
from protos import bundle_pb2


def test_a_failure_while_writing_leaves_no_bundle_and_no_partial_directory(tmp_path):
    out = tmp_path / "bundle"
    with pytest.raises(BundleError, match="no bundle written"):  # a ledger export that does not parse
        write_bundle(out, None, {}, bundle_pb2.RoundsRecord(), {"ab" * 32: b"\xff\xff not a ledger"}, [], "fed-x")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_complete_bundle_replaces_an_empty_directory_and_refuses_a_full_one(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    summary = write_bundle(out, None, {}, bundle_pb2.RoundsRecord(), {}, [], "fed-y")
    assert summary["bundle"] == str(out) and (out / "manifest.json").exists() and (out / "manifest.sig").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
    result = verify_bundle(out)
    assert result.check("signature:manifest").ok
    with pytest.raises(BundleError, match="not empty"):
        write_bundle(out, None, {}, bundle_pb2.RoundsRecord(), {}, [], "fed-z")
    assert (out / "manifest.json").exists()  # nothing of the earlier bundle was lost
