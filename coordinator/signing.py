"""The coordinator's identity: an Ed25519 key (RFC 8032, https://www.rfc-editor.org/rfc/rfc8032) that signs every bundle's manifest.

`manifest.sig` is the signature over the exact bytes of `manifest.pb`, whose
`coordinator_public_key` names the signing key. Since the manifest lists every file's SHA-256,
the signature covers the whole bundle.

What it proves, and what it does not:
- An auditor who pins the coordinator's published key (`cairn audit verify --coordinator-key`)
  knows the bundle is the one that coordinator published. A mirror, a download or anyone else who
  changes a file and re-hashes the manifest is caught.
- It does not make the coordinator honest. A coordinator can sign whatever it likes. Against it
  stand the nodes' own signed ledgers, the lineage checks and the recomputed epsilons in
  privacy/audit/. The signature makes it accountable: it cannot later disown what it signed.

The coordinator stays untrusted (ARCHITECTURE.md invariant 3); its raw public key bytes are
privacy/keys.py's `raw_public_key`. The key file is PEM (PKCS#8) with mode 0600. Publish the
public key, printed in hex when the key is created, so that auditors can pin it.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy.keys import raw_public_key


def load_or_create_key(path) -> tuple[Ed25519PrivateKey, bool]:
    """The key in `path`, created (mode 0600) when the file does not exist, with its public key (hex)
    in `path`.pub, written when missing and checked when present. Returns (key, created)."""
    path = Path(path)
    pub_path = path.with_name(path.name + ".pub")
    if path.exists():
        if not path.is_file():
            raise ValueError(f"{path}: not a key file")
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except TypeError:
            raise ValueError(f"{path}: the key is encrypted; the coordinator needs an unencrypted key (mode 0600)") from None
        except ValueError as e:
            raise ValueError(f"{path}: not a PEM private key ({e})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: the coordinator key must be Ed25519, not {type(key).__name__}")
        pub = raw_public_key(key).hex()
        if not pub_path.exists():  # the file auditors are told to pin
            pub_path.write_text(pub + "\n")
        elif pub_path.read_text(encoding="utf-8", errors="replace").strip() != pub:
            raise ValueError(f"{pub_path} does not hold {path.name}'s public key ({pub}): auditors pinning it would "
                             "reject every bundle; remove or correct it")
        return key, False
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_text(raw_public_key(key).hex() + "\n")
    return key, True


def sign_manifest(manifest_bytes: bytes, key: Ed25519PrivateKey) -> bytes:
    """The 64-byte signature written to manifest.sig."""
    return key.sign(manifest_bytes)
