"""Release bundles: what the coordinator publishes and an auditor verifies.

    BUNDLE/
      manifest.json / manifest.pb   BundleManifest (protos/bundle.proto): every file with its SHA-256,
                                    every node with its ledger key and claims, artifact lineage, the
                                    coordinator's public key
      manifest.sig                  the coordinator's Ed25519 signature over manifest.pb
                                    (coordinator/signing.py)
      model/model.safetensors       the reward model (node/reward_model.py format), when a round was applied ...
      model/model.json              ... and its config (featurizer, architecture, training)
      rounds.json                   per round: which nodes' updates were used, with the ledger
                                    entry (seq, hash) that accounted for each
      ledgers/<node_id>.pb / .json  each node's signed ledger export (LedgerExport)
      keys/<node_id>.ed25519        each node's raw Ed25519 ledger public key (hex)
      datacard.md                   the data card (coordinator/datacard.py), in every bundle
      statistics.json               DP aggregate answers, per node and summed (when queries ran)
      leaderboard.json / .png       Bradley-Terry leaderboard with intervals (when battle counts ran)

Every artifact lists the ledger entries (node id, seq, entry hash) it derives from.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format

from coordinator.signing import public_key_bytes, sign_manifest

from node.reward_model import save_model
from privacy.ledger import export_to_json
from protos import bundle_pb2, ledger_pb2

FORMAT = "cairn-bundle/2"  # /2: the manifest is signed (manifest.sig)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_bundle(out: Path, head, model_cfg: dict, rounds: list[dict], ledgers: dict[str, bytes], infos: list[dict],
                 federation_id: str, extra_files: dict[str, tuple[bytes, str]] | None = None,
                 artifacts: dict[str, list[dict]] | None = None, statistics: dict | None = None,
                 policies: dict[str, dict] | None = None, signing_key=None) -> dict:
    """Write the bundle. `head`: the trained reward model, or None when no training round was applied
    (a query-only federation): then the bundle has no model/. `extra_files` {relpath: (bytes, kind)}; `artifacts` {relpath: [ledger sources]}
    (node_id, ledger_seq, ledger_entry_hash hex) for their lineage; `statistics` and `policies` feed
    the data card, written into every bundle. `signing_key`: the coordinator's Ed25519 key
    (coordinator/signing.py) that signs the manifest; None signs with a one-off key, which shows
    integrity since publication but names no coordinator an auditor could pin."""
    signing_key = signing_key or Ed25519PrivateKey.generate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, str] = {}
    if head is not None:
        save_model(head, model_cfg, out / "model" / "model.safetensors")
        kinds["model/model.safetensors"] = "model"
        kinds["model/model.json"] = "model-config"
    (out / "rounds.json").write_text(json.dumps(rounds, indent=2) + "\n")
    kinds["rounds.json"] = "rounds"
    (out / "ledgers").mkdir(exist_ok=True)
    (out / "keys").mkdir(exist_ok=True)
    manifest = bundle_pb2.BundleManifest(
        format=FORMAT, created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), federation_id=federation_id,
        coordinator_public_key=public_key_bytes(signing_key),
    )
    by_id = {i["node_id"]: i for i in infos}
    for node_id, data in sorted(ledgers.items()):
        export = ledger_pb2.LedgerExport.FromString(data)
        (out / "ledgers" / f"{node_id}.pb").write_bytes(data)
        (out / "ledgers" / f"{node_id}.json").write_text(export_to_json(export))
        info = by_id.get(node_id, {})
        pub = bytes(info.get("ledger_public_key", export.public_key))
        (out / "keys" / f"{node_id}.ed25519").write_text(pub.hex() + "\n")
        kinds[f"ledgers/{node_id}.pb"] = "ledger"
        kinds[f"ledgers/{node_id}.json"] = "ledger-json"
        kinds[f"keys/{node_id}.ed25519"] = "key"
        last = export.entries[-1].body if export.entries else None
        manifest.nodes.add(
            node_id=node_id,
            name=str(info.get("name", export.node_name)),
            ledger_public_key=pub,
            ledger_file=f"ledgers/{node_id}.pb",
            claimed_epsilon=last.claimed_epsilon if last else 0.0,
            delta=float(info.get("delta", last.target_delta if last else 0.0)),
            accountant=last.accountant if last else "",
            ledger_head_hash=bytes(export.entries[-1].entry_hash) if export.entries else b"",
            ledger_entries=len(export.entries),
            paradigm=str(info.get("paradigm", "")),
        )
    for name, (data, kind) in (extra_files or {}).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
        kinds[name] = kind
    round_sources = [c for rnd in rounds for c in rnd["contributors"]]
    if head is not None:
        model_art = manifest.artifacts.add(path="model/model.safetensors")
        for c in round_sources:
            model_art.sources.add(node_id=c["node_id"], ledger_seq=c["ledger_seq"],
                                  ledger_entry_hash=bytes.fromhex(c["ledger_entry_hash"]))
    # the data card: every bundle has one; it reports the query answers and the training's claims
    from coordinator.datacard import render

    board = None
    if "leaderboard.json" in (extra_files or {}):
        board = json.loads(extra_files["leaderboard.json"][0])
    nodes_doc = [{"node_id": n.node_id, "name": n.name, "paradigm": n.paradigm, "claimed_epsilon": n.claimed_epsilon,
                  "delta": n.delta, "accountant": n.accountant} for n in manifest.nodes]
    (out / "datacard.md").write_text(render(federation_id, nodes_doc, policies, statistics, board, manifest.created_at,
                                            model=head is not None))
    kinds["datacard.md"] = "datacard"
    lineage = dict(artifacts or {})
    lineage["datacard.md"] = [s for srcs in (artifacts or {}).values() for s in srcs] + round_sources
    for path, sources in sorted(lineage.items()):
        art = manifest.artifacts.add(path=path)
        seen = set()
        for s in sources:
            key = (s["node_id"], int(s["ledger_seq"]))
            if key in seen:
                continue
            seen.add(key)
            art.sources.add(node_id=s["node_id"], ledger_seq=int(s["ledger_seq"]),
                            ledger_entry_hash=bytes.fromhex(s["ledger_entry_hash"]))
    for rel, kind in sorted(kinds.items()):
        p = out / rel
        manifest.files.add(path=rel, sha256=sha256_file(p), size=p.stat().st_size, kind=kind)
    manifest_bytes = manifest.SerializeToString(deterministic=True)
    (out / "manifest.pb").write_bytes(manifest_bytes)
    (out / "manifest.json").write_text(json_format.MessageToJson(manifest, preserving_proto_field_name=True))
    (out / "manifest.sig").write_bytes(sign_manifest(manifest_bytes, signing_key))
    return {
        "bundle": str(out),
        "federation_id": federation_id,
        "nodes": [{"node_id": n.node_id, "name": n.name, "epsilon": n.claimed_epsilon, "delta": n.delta, "accountant": n.accountant}
                  for n in manifest.nodes],
        "rounds": len(rounds),
        "model": head is not None,
        "coordinator_public_key": public_key_bytes(signing_key).hex(),
    }


def load_manifest(bundle: Path) -> bundle_pb2.BundleManifest:
    bundle = Path(bundle)
    pb = bundle / "manifest.pb"
    if not pb.exists():
        raise FileNotFoundError(f"{bundle}: no manifest.pb (not a Cairn bundle)")
    return bundle_pb2.BundleManifest.FromString(pb.read_bytes())
