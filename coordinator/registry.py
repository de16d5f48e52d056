"""The admitted nodes of a deployment: node id, name, ledger public key and SuperNode public key.

`cairn coordinator nodes` lists them from node directories (each node's public files only:
node.toml's name, keys/ledger_ed25519.pub, keys/supernode_ec.pub) or from a registry file that it
writes (JSON). The node id is always recomputed from the ledger public key (privacy/keys.py), so a
registry whose ids do not match their keys is refused: a substituted key cannot keep a node's name.
Nothing private is read: no store, no private key. This module reads the node directory's public
files itself; coordinator/ never imports node/ (ARCHITECTURE.md, import rules).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from privacy.keys import node_id_of, raw_public_key

REGISTRY_FORMAT = "cairn-node-registry/1"
LEDGER_PUB = "keys/ledger_ed25519.pub"  # node/keys.py LEDGER_PUB under DIR/keys/
SUPERNODE_PUB = "keys/supernode_ec.pub"  # node/keys.py SUPERNODE_PUB: what `flwr supernode register` takes


class RegistryError(ValueError):
    """A node directory or registry entry that cannot be admitted (the message names the file and field)."""


def from_node_dir(path: Path) -> dict:
    """One node's public identity from its directory."""
    path = Path(path)
    try:
        cfg = tomllib.loads((path / "node.toml").read_text())
        ledger_pub = serialization.load_pem_public_key((path / LEDGER_PUB).read_bytes())
        supernode = (path / SUPERNODE_PUB).read_text().strip()
    except FileNotFoundError as e:
        raise RegistryError(f"{path}: not a Cairn node directory ({Path(e.filename).name} missing)") from None
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise RegistryError(f"{path}: unreadable node files: {e}") from None
    raw = raw_public_key(ledger_pub)  # type: ignore[arg-type]
    name = cfg.get("name") or cfg.get("node", {}).get("name", "")
    return {"node_id": node_id_of(raw), "name": str(name), "ledger_public_key": raw.hex(),
            "supernode_public_key": supernode, "supernode_public_key_file": str((path / SUPERNODE_PUB).resolve())}


def from_node_dirs(paths: list[Path]) -> list[dict]:
    """Every node's public identity, in order."""
    return [from_node_dir(p) for p in paths]


def read_registry(path: Path) -> list[dict]:
    """The admitted nodes of a registry file; each node id is checked against its ledger key."""
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise RegistryError(f"{path}: line {e.lineno}: not JSON ({e.msg})") from None
    if not isinstance(doc, dict) or doc.get("format") != REGISTRY_FORMAT or not isinstance(doc.get("nodes"), list):
        raise RegistryError(f"{path}: field 'format' must be {REGISTRY_FORMAT!r} with a 'nodes' list")
    out = []
    for i, n in enumerate(doc["nodes"]):
        try:
            raw = bytes.fromhex(str(n["ledger_public_key"]))
        except (KeyError, ValueError, TypeError):
            raise RegistryError(f"{path}: nodes[{i}]: field 'ledger_public_key' must be 64 hex digits") from None
        if len(raw) != 32 or node_id_of(raw) != n.get("node_id"):
            raise RegistryError(f"{path}: nodes[{i}]: field 'node_id' does not match its ledger_public_key")
        out.append({k: n.get(k, "") for k in ("node_id", "name", "ledger_public_key", "supernode_public_key",
                                              "supernode_public_key_file")})
    return out


def write_registry(path: Path, nodes: list[dict]) -> None:
    """Write the registry file (JSON), de-duplicated by node id."""
    unique = list({n["node_id"]: n for n in nodes}.values())
    Path(path).write_text(json.dumps({"format": REGISTRY_FORMAT, "nodes": unique}, indent=2) + "\n")


def register(nodes: list[dict], connection: str, flwr: str = "flwr", timeout: float = 120.0) -> list[dict]:
    """Admit each node's SuperNode key to a running SuperLink (`flwr supernode register KEY CONNECTION`,
    the SuperLink named by `connection` in the operator's Flower configuration, with
    `--enable-supernode-auth` on): so an operator never types the raw command. Returns, per node, its
    node id, name and the Flower node id the SuperLink assigned; a refusal names the node and Flower's
    answer (RegistryError)."""
    import subprocess
    import tempfile

    out = []
    for n in nodes:
        with tempfile.TemporaryDirectory() as tmp:
            key = Path(tmp) / "supernode_ec.pub"  # the key text, as a registry file carries it
            key.write_text(str(n["supernode_public_key"]).strip() + "\n")
            try:
                cp = subprocess.run([flwr, "supernode", "register", str(key), connection, "--format", "json"],
                                    capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise RegistryError(f"node {n['name'] or n['node_id'][:16]}: `flwr supernode register` did not run: {e}") from None
        text = cp.stdout.strip()
        try:
            answer = json.loads(text[text.index("{"):]) if "{" in text else {}
        except json.JSONDecodeError:
            answer = {}
        if cp.returncode != 0 or not answer.get("success"):
            raise RegistryError(f"node {n['name'] or n['node_id'][:16]}: the SuperLink refused its key "
                                f"({(answer or text or cp.stderr.strip())!s:.300})")
        out.append({"node_id": n["node_id"], "name": n["name"], "flower_node_id": str(answer.get("node-id", ""))})
    return out
