"""Writing a release bundle: what the coordinator publishes and an auditor verifies.

The format (layout, paths, FORMAT version, manifest and rounds record read/write) is protos/bundle.py;
this module fills it: the model (model/reward_model.py format), the rounds record, every node's
signed ledger export and key, the query files, the data card (coordinator/datacard.py), the lineage
of every artifact (node id, ledger seq, entry hash of each ledger entry it derives from), the
file hashes, and the coordinator's signature over the manifest (coordinator/signing.py).
Invariant served: ARCHITECTURE.md invariant 2 is checkable from the bundle, because every artifact
lists the ledger entries that accounted for it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.datacard import render
from coordinator.signing import sign_manifest
from model.reward_model import save_model
from privacy.keys import raw_public_key
from privacy.ledger import export_to_json
from protos import bundle as fmt
from protos import bundle_pb2, ledger_pb2


class BundleError(RuntimeError):
    """No bundle was written (the message says why); nothing partial is left behind."""


def check_out_writable(out) -> None:
    """Fail before any node is asked anything (so before any budget is spent) when the bundle cannot be
    written to `out`: create its parent and a probe `.<name>.partial-*` directory there, as write_bundle
    will, then remove the probe. Raises OSError with a message naming the path and the cause."""
    out = Path(out)
    try:
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"{out} is a file")
        out.parent.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as e:
        cause = e.strerror if e.strerror else str(e)
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        raise OSError(f"{out}: cannot write the bundle there: {cause}{where}; choose another --out "
                      f"(nothing was asked of any node, no budget spent)") from None


def write_bundle(out: Path, head, model_cfg: dict, rounds: bundle_pb2.RoundsRecord, ledgers: dict[str, bytes],
                 infos: list[dict], federation_id: str, extra_files: dict[str, tuple[bytes, str]] | None = None,
                 artifacts: dict[str, list[dict]] | None = None, statistics: dict | None = None,
                 policies: dict[str, dict] | None = None, signing_key=None, heads: dict[str, str] | None = None) -> dict:
    """Write the bundle all or nothing: into a temporary directory beside `out`, renamed to `out` once
    complete and signed (an empty `out` is replaced). On any failure no bundle is left and BundleError
    says why. The arguments are `_write`'s."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out}: the bundle directory is not empty; no bundle written")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        summary = _write(tmp, head, model_cfg, rounds, ledgers, infos, federation_id, extra_files, artifacts,
                         statistics, policies, signing_key, heads)
        tmp.chmod(0o755)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.rename(tmp, out)
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BundleError(f"no bundle written to {out}: {type(e).__name__}: {e}") from e
    summary["bundle"] = str(out)
    return summary


def _write(out: Path, head, model_cfg: dict, rounds: bundle_pb2.RoundsRecord, ledgers: dict[str, bytes],
                 infos: list[dict], federation_id: str, extra_files: dict[str, tuple[bytes, str]] | None = None,
                 artifacts: dict[str, list[dict]] | None = None, statistics: dict | None = None,
                 policies: dict[str, dict] | None = None, signing_key=None, heads: dict[str, str] | None = None) -> dict:
    """Write the bundle. `head`: the trained reward model, or None when no training round was applied
    (a query-only federation): then the bundle has no model/. `rounds`: what each training round used.
    `extra_files` {relpath: (bytes, kind)}; `artifacts` {relpath: [ledger sources]}
    (node_id, ledger_seq, ledger_entry_hash hex) for their lineage; `statistics` and `policies` feed
    the data card, written into every bundle. `signing_key`: the coordinator's Ed25519 key
    (coordinator/signing.py) that signs the manifest; None signs with a one-off key, which shows
    integrity since publication but names no coordinator an auditor could pin. `heads` {node_id: JSON}:
    the latest ledger head each node signed during the run (heads/<node_id>.json, issue 15)."""
    signing_key = signing_key or Ed25519PrivateKey.generate()
    out = Path(out)
    kinds: dict[str, str] = {}
    if head is not None:
        save_model(head, model_cfg, out / fmt.MODEL)
        kinds[fmt.MODEL] = "model"
        kinds[fmt.MODEL_CONFIG] = "model-config"
    fmt.write_rounds(out, rounds)
    kinds[fmt.ROUNDS] = "rounds"
    (out / "ledgers").mkdir(exist_ok=True)
    (out / "keys").mkdir(exist_ok=True)
    manifest = bundle_pb2.BundleManifest(
        format=fmt.FORMAT, created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        federation_id=federation_id, coordinator_public_key=raw_public_key(signing_key),
    )
    by_id = {i["node_id"]: i for i in infos}
    for node_id, data in sorted(ledgers.items()):
        export = ledger_pb2.LedgerExport.FromString(data)
        (out / fmt.ledger_pb(node_id)).write_bytes(data)
        (out / fmt.ledger_json(node_id)).write_text(export_to_json(export))
        info = by_id.get(node_id, {})
        pub = bytes(info.get("ledger_public_key", export.public_key))
        (out / fmt.key_file(node_id)).write_text(pub.hex() + "\n")
        kinds[fmt.ledger_pb(node_id)] = "ledger"
        kinds[fmt.ledger_json(node_id)] = "ledger-json"
        kinds[fmt.key_file(node_id)] = "key"
        if node_id in (heads or {}):
            (out / "heads").mkdir(exist_ok=True)
            (out / fmt.head_file(node_id)).write_text(heads[node_id])  # type: ignore[index]
            kinds[fmt.head_file(node_id)] = "ledger-head"
        last = export.entries[-1].body if export.entries else None
        manifest.nodes.add(
            node_id=node_id,
            name=str(info.get("name", export.node_name)),
            ledger_public_key=pub,
            ledger_file=fmt.ledger_pb(node_id),
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
    round_sources = [{"node_id": c.node_id, "ledger_seq": c.ledger_seq, "ledger_entry_hash": c.ledger_entry_hash}
                     for rnd in rounds.rounds for c in rnd.contributors]
    if head is not None:
        model_art = manifest.artifacts.add(path=fmt.MODEL)
        for c in round_sources:
            model_art.sources.add(node_id=c["node_id"], ledger_seq=c["ledger_seq"],
                                  ledger_entry_hash=bytes.fromhex(c["ledger_entry_hash"]))
    # the data card: every bundle has one; it reports the query answers and the training's claims
    board = None
    if fmt.LEADERBOARD in (extra_files or {}):
        board = json.loads(extra_files[fmt.LEADERBOARD][0])
    nodes_doc = [{"node_id": n.node_id, "name": n.name, "paradigm": n.paradigm, "claimed_epsilon": n.claimed_epsilon,
                  "delta": n.delta, "accountant": n.accountant} for n in manifest.nodes]
    (out / fmt.DATACARD).write_text(render(federation_id, nodes_doc, policies, statistics, board, manifest.created_at,
                                           model=head is not None))
    kinds[fmt.DATACARD] = "datacard"
    lineage = dict(artifacts or {})
    lineage[fmt.DATACARD] = [s for srcs in (artifacts or {}).values() for s in srcs] + round_sources
    for path, sources in sorted(lineage.items()):
        if not sources:  # derived from no release (every node refused): hashed and signed, no lineage to claim
            continue
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
        manifest.files.add(path=rel, sha256=fmt.sha256_file(p), size=p.stat().st_size, kind=kind)
    signed = fmt.write_manifest(out, manifest)
    (out / fmt.MANIFEST_SIG).write_bytes(sign_manifest(signed, signing_key))
    return {
        "bundle": str(out),
        "federation_id": federation_id,
        "nodes": [{"node_id": n.node_id, "name": n.name, "epsilon": n.claimed_epsilon, "delta": n.delta,
                   "accountant": n.accountant} for n in manifest.nodes],
        "rounds": len(rounds.rounds),
        "model": head is not None,
        "coordinator_public_key": raw_public_key(signing_key).hex(),
    }


def audit_written(summary: dict, node_ids: set[str]) -> dict:
    """Verify the bundle just written (privacy/audit) as an auditor would, with the coordinator's own key
    and the node ids that took part pinned: {"ok", "failures": ["<check>: <message>"], "checks"}. A run
    whose bundle does not verify is a failed run (`cairn federate` exits non-zero, issue 15)."""
    from privacy.audit import verify_bundle

    res = verify_bundle(summary["bundle"], coordinator_key=bytes.fromhex(summary["coordinator_public_key"]),
                        trusted_nodes=set(node_ids))
    return {"ok": res.ok, "failures": [f"{c.name}: {c.message}" for c in res.failures], "checks": len(res.checks)}
