"""The node's key material, created by `cairn node init` under DIR/keys/ (private files mode 0600).

- ledger_ed25519.pem / .pub: Ed25519 key that signs every ledger entry (RFC 8032, https://www.rfc-editor.org/rfc/rfc8032).
- supernode_ec / supernode_ec.pub: EC NIST P-384 key in OpenSSH format, which Flower's SuperNode
  authentication uses (`flwr supernode register node.pub`, `--auth-supernode-private-key`).
- store.key: the store's master secret (absent when the node uses a passphrase).

The raw public key bytes and the node id derived from them are privacy/keys.py's. The ledger key
is what makes the ledger tamper-evident (ARCHITECTURE.md invariant 7).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

LEDGER_KEY = "ledger_ed25519.pem"
LEDGER_PUB = "ledger_ed25519.pub"
SUPERNODE_KEY = "supernode_ec"
SUPERNODE_PUB = "supernode_ec.pub"
STORE_KEY = "store.key"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def create_keys(key_dir: Path, comment: str) -> None:
    """Create the ledger and SuperNode key pairs under `key_dir` (private files mode 0600)."""
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ledger = Ed25519PrivateKey.generate()
    _write_private(
        key_dir / LEDGER_KEY,
        ledger.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    (key_dir / LEDGER_PUB).write_bytes(
        ledger.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    sn = ec.generate_private_key(ec.SECP384R1())
    _write_private(
        key_dir / SUPERNODE_KEY,
        sn.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()),
    )
    pub = sn.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    (key_dir / SUPERNODE_PUB).write_bytes(pub + b" " + comment.encode() + b"\n")


def load_ledger_key(key_dir: Path) -> Ed25519PrivateKey:
    """The node's Ed25519 ledger signing key."""
    key = serialization.load_pem_private_key((key_dir / LEDGER_KEY).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{key_dir / LEDGER_KEY}: not an Ed25519 private key")
    return key


def load_ledger_public(key_dir: Path) -> Ed25519PublicKey:
    """The node's Ed25519 ledger public key."""
    key = serialization.load_pem_public_key((key_dir / LEDGER_PUB).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{key_dir / LEDGER_PUB}: not an Ed25519 public key")
    return key

