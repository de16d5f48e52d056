"""Release bundles: what the coordinator publishes and an auditor verifies.

    BUNDLE/
      manifest.json / manifest.pb   BundleManifest (protos/bundle.proto): every file with its SHA-256,
                                    every node with its ledger key and claims, artifact lineage
      model/model.safetensors       the reward model (node/reward_model.py format) ...
      model/model.json              ... and its config (featurizer, architecture, training)
      rounds.json                   per round: which nodes' updates were used, with the ledger
                                    entry (seq, hash) that accounted for each
      ledgers/<node_id>.pb / .json  each node's signed ledger export (LedgerExport)
      keys/<node_id>.ed25519        each node's raw Ed25519 ledger public key (hex)
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from google.protobuf import json_format

from node.reward_model import save_model
from privacy.ledger import export_to_json
from protos import bundle_pb2, ledger_pb2

FORMAT = "cairn-bundle/1"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_bundle(out: Path, head, model_cfg: dict, rounds: list[dict], ledgers: dict[str, bytes], infos: list[dict],
                 federation_id: str, extra_files: dict[str, tuple[bytes, str]] | None = None) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, str] = {}
    save_model(head, model_cfg, out / "model" / "model.safetensors")
    kinds["model/model.safetensors"] = "model"
    kinds["model/model.json"] = "model-config"
    (out / "rounds.json").write_text(json.dumps(rounds, indent=2) + "\n")
    kinds["rounds.json"] = "rounds"
    (out / "ledgers").mkdir(exist_ok=True)
    (out / "keys").mkdir(exist_ok=True)
    manifest = bundle_pb2.BundleManifest(
        format=FORMAT, created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), federation_id=federation_id
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
    model_art = manifest.artifacts.add(path="model/model.safetensors")
    for rnd in rounds:
        for c in rnd["contributors"]:
            model_art.sources.add(node_id=c["node_id"], ledger_seq=c["ledger_seq"], ledger_entry_hash=bytes.fromhex(c["ledger_entry_hash"]))
    for rel, kind in sorted(kinds.items()):
        p = out / rel
        manifest.files.add(path=rel, sha256=sha256_file(p), size=p.stat().st_size, kind=kind)
    (out / "manifest.pb").write_bytes(manifest.SerializeToString(deterministic=True))
    (out / "manifest.json").write_text(json_format.MessageToJson(manifest, preserving_proto_field_name=True))
    return {
        "bundle": str(out),
        "federation_id": federation_id,
        "nodes": [{"node_id": n.node_id, "name": n.name, "epsilon": n.claimed_epsilon, "delta": n.delta, "accountant": n.accountant}
                  for n in manifest.nodes],
        "rounds": len(rounds),
    }


def load_manifest(bundle: Path) -> bundle_pb2.BundleManifest:
    bundle = Path(bundle)
    pb = bundle / "manifest.pb"
    if not pb.exists():
        raise FileNotFoundError(f"{bundle}: no manifest.pb (not a Cairn bundle)")
    return bundle_pb2.BundleManifest.FromString(pb.read_bytes())
