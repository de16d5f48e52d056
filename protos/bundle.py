"""The release bundle's format, in one place: version, paths, the manifest's and the rounds record's
read and write.

Used by the coordinator (which writes bundles), the auditor (which reads them) and the tests. The
layout is a public contract (README, "Bundle"); its messages are `protos/bundle.proto`. It lets an
auditor check ARCHITECTURE.md invariants 2 and 7 from the bundle alone: every artifact names the
ledger entries that accounted for it, and the manifest that lists them is written here and only here,
byte for byte as the coordinator signs it.

    BUNDLE/
      manifest.pb / manifest.json   BundleManifest: every file with its SHA-256, every node with its
                                    ledger key and claims, artifact lineage, the coordinator's key
      manifest.sig                  the coordinator's Ed25519 signature over manifest.pb
      model/model.safetensors       the reward model, when a training round was applied ...
      model/model.json              ... and its config (featurizer, architecture, training)
      rounds.json                   RoundsRecord.rounds as a JSON array of Round messages: per round,
                                    which nodes' updates were used, with the ledger entry (seq, hash)
                                    that accounted for each, which nodes refused and which dropped
      ledgers/<node_id>.pb / .json  each node's signed ledger export (LedgerExport)
      keys/<node_id>.ed25519        each node's raw Ed25519 ledger public key (hex)
      heads/<node_id>.json          the latest ledger head each node signed during the run (privacy/
                                    ledger_head.py JSON): the published ledger must reach it (issue 15)
      datacard.md                   the data card, in every bundle
      statistics.json               DP aggregate answers, per node and summed (when queries ran)
      leaderboard.json / .png       Bradley-Terry leaderboard with intervals (when battle counts ran)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from google.protobuf import json_format

from protos import bundle_pb2

FORMAT = "cairn-bundle/2"  # /2: the manifest is signed (manifest.sig)

MANIFEST_PB = "manifest.pb"
MANIFEST_JSON = "manifest.json"
MANIFEST_SIG = "manifest.sig"
MODEL = "model/model.safetensors"
MODEL_CONFIG = "model/model.json"
ROUNDS = "rounds.json"
DATACARD = "datacard.md"
STATISTICS = "statistics.json"
LEADERBOARD = "leaderboard.json"
LEADERBOARD_PNG = "leaderboard.png"


def ledger_pb(node_id: str) -> str:
    """Path of a node's signed LedgerExport (protobuf)."""
    return f"ledgers/{node_id}.pb"


def ledger_json(node_id: str) -> str:
    """Path of the JSON rendering of that export."""
    return f"ledgers/{node_id}.json"


def key_file(node_id: str) -> str:
    """Path of a node's raw Ed25519 ledger public key (hex)."""
    return f"keys/{node_id}.ed25519"


def head_file(node_id: str) -> str:
    """Path of the latest ledger head a node signed during the run (JSON, privacy/ledger_head.py)."""
    return f"heads/{node_id}.json"


class BundleError(ValueError):
    """A path is not a readable Cairn bundle (the message names the file)."""


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (the manifest's file hashes)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_manifest(bundle: Path) -> bundle_pb2.BundleManifest:
    """The parsed manifest.pb of `bundle` (nothing verified: that is the auditor's job)."""
    pb = Path(bundle) / MANIFEST_PB
    if not pb.exists():
        raise BundleError(f"{pb}: missing (not a Cairn bundle)")
    try:
        return bundle_pb2.BundleManifest.FromString(pb.read_bytes())
    except Exception as e:  # google.protobuf.message.DecodeError
        raise BundleError(f"{pb}: does not parse: {type(e).__name__}: {e}") from None


def manifest_bytes(manifest: bundle_pb2.BundleManifest) -> bytes:
    """The exact bytes that are written to manifest.pb and signed."""
    return manifest.SerializeToString(deterministic=True)


def write_manifest(bundle: Path, manifest: bundle_pb2.BundleManifest) -> bytes:
    """Write manifest.pb and its JSON twin; returns the bytes written (what the coordinator signs)."""
    data = manifest_bytes(manifest)
    (Path(bundle) / MANIFEST_PB).write_bytes(data)
    (Path(bundle) / MANIFEST_JSON).write_text(json_format.MessageToJson(manifest, preserving_proto_field_name=True))
    return data


def rounds_json(record: bundle_pb2.RoundsRecord) -> str:
    """The text of rounds.json: a JSON array with each Round in its proto JSON form (field names as in
    the .proto, default values written out, so `applied: false` and empty lists are explicit)."""
    rounds = [json_format.MessageToDict(r, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
              for r in record.rounds]
    return json.dumps(rounds, indent=2) + "\n"


def write_rounds(bundle: Path, record: bundle_pb2.RoundsRecord) -> None:
    """Write `record` to BUNDLE/rounds.json."""
    (Path(bundle) / ROUNDS).write_text(rounds_json(record))


def read_rounds(bundle: Path) -> bundle_pb2.RoundsRecord:
    """The parsed rounds.json of `bundle` (nothing verified). Raises BundleError when the file is
    missing, is not a JSON array, or holds a field or value the Round message does not have."""
    path = Path(bundle) / ROUNDS
    if not path.exists():
        raise BundleError(f"{path}: missing")
    try:
        rounds = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rounds, list):
            raise ValueError("not a JSON array of rounds")
        record = bundle_pb2.RoundsRecord()
        for r in rounds:
            json_format.ParseDict(r, record.rounds.add())
    except (ValueError, UnicodeDecodeError, json_format.ParseError) as e:
        raise BundleError(f"{path}: does not parse: {e}") from None
    return record
