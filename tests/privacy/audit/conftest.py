"""One real bundle per test session (3 communities, 2 rounds, SecAgg+), copied per tamper test."""

import hashlib
import logging
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protos import bundle as bundle_format
from protos import bundle_pb2

logging.getLogger("absl").setLevel(logging.ERROR)

# The coordinator's signing key (coordinator/signing.py). The tamper tests play a DISHONEST
# COORDINATOR, who holds this key and re-signs what it changed; a third party does not.
COORDINATOR_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
COORDINATOR_PUB = COORDINATOR_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@pytest.fixture(scope="session")
def federation(tmp_path_factory):
    import os

    from coordinator.server_app import FederationConfig
    from coordinator.simulation import run_simulation_federation
    from model.presets import preset_config
    from node.node_dir import NodeDir
    from tests.e2e.conftest import make_community

    reuse = os.environ.get("CAIRN_AUDIT_REUSE_FEDERATION")  # development only: a directory from an earlier run
    if reuse and (Path(reuse) / "bundle" / "manifest.pb").exists():
        return Path(reuse) / "bundle", [NodeDir(Path(reuse) / f"n{i}") for i in range(3)]
    root = tmp_path_factory.mktemp("audit-fed")
    nodes = [make_community(root / f"n{i}", f"community-{i}", i, n_contributors=30, pairs_each=2) for i in range(3)]
    key_file = root / "coordinator.key"
    key_file.write_bytes(COORDINATOR_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    cfg = FederationConfig(out=str(root / "bundle"), rounds=2, local_steps=5, featurizer=preset_config("hashed"),
                           secagg=True, federation_id="fed-audit", coordinator_key=str(key_file))
    summary = run_simulation_federation([n.path for n in nodes], cfg, "node.client_app:app")
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
    return bundle_format.read_manifest(bundle)


def save_manifest(bundle: Path, manifest: bundle_pb2.BundleManifest, key: Ed25519PrivateKey | None = COORDINATOR_KEY) -> None:
    """Write the manifest and sign it with `key` (None: leave the old signature, as a third party must)."""
    data = bundle_format.write_manifest(bundle, manifest)
    if key is not None:
        (bundle / bundle_format.MANIFEST_SIG).write_bytes(key.sign(data))


def rehash(bundle: Path, key: Ed25519PrivateKey | None = COORDINATOR_KEY) -> None:
    """What a dishonest coordinator does after tampering: re-publish the manifest with the new files'
    hashes and sign it, so that only the deeper checks (signatures, chains, pinned heads, lineage,
    epsilon) can tell. With key=None, what a third party can do: re-hash, but not re-sign."""
    m = load_manifest(bundle)
    for f in m.files:
        data = (bundle / f.path).read_bytes()
        f.sha256, f.size = hashlib.sha256(data).hexdigest(), len(data)
    save_manifest(bundle, m, key)
