"""Ed25519 identities: the raw public key bytes and the node id derived from them, defined once.

Owns how a key becomes the bytes written into ledgers, manifests and messages, and how a node's
public identity is derived; protects ARCHITECTURE.md invariant 7 (the ledger is signed by the key
its node id names). Keys are Ed25519 (RFC 8032, https://www.rfc-editor.org/rfc/rfc8032); the raw
public key is the 32-byte encoding of RFC 8032 section 5.1.5.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def raw_public_key(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of `key`'s public key (of the key itself when it is public)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def node_id_of(public_key_raw: bytes) -> str:
    """A node's public identity: hex SHA-256 of its raw Ed25519 public key."""
    return hashlib.sha256(public_key_raw).hexdigest()
