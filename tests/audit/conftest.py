"""One real bundle per test session (3 communities, 2 rounds, SecAgg+), copied per tamper test."""

import hashlib
import logging
import shutil
from pathlib import Path

import pytest
from google.protobuf import json_format

from protos import bundle_pb2

logging.getLogger("absl").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def federation(tmp_path_factory):
    from cairn.federate import run_simulation_federation
    from coordinator.server_app import FederationConfig
    from tests.e2e.conftest import make_community

    import os

    from node.node_dir import NodeDir

    reuse = os.environ.get("CAIRN_AUDIT_REUSE_FEDERATION")  # development only: a directory from an earlier run
    if reuse and (Path(reuse) / "bundle" / "manifest.pb").exists():
        return Path(reuse) / "bundle", [NodeDir(Path(reuse) / f"n{i}") for i in range(3)]
    root = tmp_path_factory.mktemp("audit-fed")
    nodes = [make_community(root / f"n{i}", f"community-{i}", i, n_contributors=30, pairs_each=2) for i in range(3)]
    cfg = FederationConfig(out=str(root / "bundle"), rounds=2, local_steps=5, featurizer={"name": "hashed-ngram", "dim": 384},
                           secagg=True, federation_id="fed-audit")
    summary = run_simulation_federation([n.path for n in nodes], cfg)
    # every node must have trained and handed over its ledger; a federation that lost nodes (e.g. Ray
    # killed workers for memory) is an environment failure, not something these tests can audit
    assert len(summary["nodes"]) == 3 and summary["rounds"] == 2, f"incomplete federation: {summary}"
    return Path(summary["bundle"]), nodes


@pytest.fixture
def bundle(federation, tmp_path):
    """A fresh copy of the session's bundle, free to tamper with."""
    src, _ = federation
    dst = tmp_path / "bundle"
    shutil.copytree(src, dst)
    return dst


def load_manifest(bundle: Path) -> bundle_pb2.BundleManifest:
    return bundle_pb2.BundleManifest.FromString((bundle / "manifest.pb").read_bytes())


def save_manifest(bundle: Path, manifest: bundle_pb2.BundleManifest) -> None:
    (bundle / "manifest.pb").write_bytes(manifest.SerializeToString(deterministic=True))
    (bundle / "manifest.json").write_text(json_format.MessageToJson(manifest, preserving_proto_field_name=True))


def rehash(bundle: Path) -> None:
    """What a dishonest coordinator does after tampering: re-publish the manifest with the new files'
    hashes, so that only the deeper checks (signatures, chains, pinned heads, lineage, epsilon) can tell."""
    m = load_manifest(bundle)
    for f in m.files:
        data = (bundle / f.path).read_bytes()
        f.sha256, f.size = hashlib.sha256(data).hexdigest(), len(data)
    save_manifest(bundle, m)
