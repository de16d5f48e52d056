"""SecAgg+ primitives: key agreement, share transport, mask PRG and Shamir sharing.

Owns every cryptographic operation of the protocol; protects ARCHITECTURE.md invariant 3 (what the
coordinator relays it cannot read or forge). From `cryptography`: X25519 key agreement (RFC 7748,
https://www.rfc-editor.org/rfc/rfc7748), HKDF-SHA256 (RFC 5869), AES-256-GCM for share transport
and AES-256-CTR as the mask PRG; from pycryptodome: Shamir sharing over GF(2^128) (Shamir 1979,
"How to Share a Secret", https://doi.org/10.1145/359168.359176).
"""

from __future__ import annotations

import os
import struct

import numpy as np
from Crypto.Protocol.SecretSharing import Shamir
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privacy.secagg.constants import SecAggError

# HKDF `info` labels: one key for the share channel, another for the pairwise masks.
CHANNEL_INFO = b"cairn/secagg/channel"
MASK_INFO = b"cairn/secagg/mask"
_SHARES_AAD = b"shares"  # AES-GCM associated data of a share ciphertext
SHARE_LEN = 33  # one Shamir share of a 32-byte secret: index byte + two 16-byte chunks


def new_key_pair() -> tuple[bytes, bytes]:
    """A fresh X25519 key pair as (private raw bytes, public raw bytes)."""
    k = X25519PrivateKey.generate()
    priv = k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return priv, k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def agree(priv_raw: bytes, pub_raw: bytes, info: bytes) -> bytes:
    """The 32-byte key both ends derive: HKDF-SHA256(X25519(priv, pub), info)."""
    shared = X25519PrivateKey.from_private_bytes(priv_raw).exchange(X25519PublicKey.from_public_bytes(pub_raw))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def prg(seed: bytes, n: int) -> np.ndarray:
    """n uint32 words of AES-256-CTR keystream under `seed` (32 bytes)."""
    enc = Cipher(algorithms.AES(seed), modes.CTR(b"\x00" * 16)).encryptor()
    return np.frombuffer(enc.update(b"\x00" * (4 * n)), dtype="<u4").astype(np.uint64)


def share(secret: bytes, t: int, n: int) -> list[bytes]:
    """Shamir-share a 32-byte secret: share i (1-based) = index byte + two 16-byte chunks."""
    parts = [Shamir.split(t, n, secret[i : i + 16], ssss=False) for i in (0, 16)]
    return [bytes([parts[0][i][0]]) + parts[0][i][1] + parts[1][i][1] for i in range(n)]


def combine(shares: list[bytes]) -> bytes:
    """The secret from at least t shares made by `share`."""
    out = b""
    for off in (1, 17):
        out += Shamir.combine([(s[0], s[off : off + 16]) for s in shares], ssss=False)
    return out


def seal_shares(key: bytes, src: int, dst: int, b_share: bytes, s_share: bytes) -> bytes:
    """AES-GCM ciphertext (nonce first) carrying src's two shares for dst, bound to (src, dst)."""
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, struct.pack(">QQ", src, dst) + b_share + s_share, _SHARES_AAD)


def open_shares(key: bytes, ciphertext: bytes, src: int, dst: int) -> tuple[bytes, bytes]:
    """The (b-share, s-share) sealed by `seal_shares`; refuses a ciphertext routed to the wrong node."""
    plain = AESGCM(key).decrypt(ciphertext[:12], ciphertext[12:], _SHARES_AAD)
    if struct.unpack(">QQ", plain[:16]) != (src, dst):
        raise SecAggError("share ciphertext was routed to the wrong node")
    return plain[16 : 16 + SHARE_LEN], plain[16 + SHARE_LEN : 16 + 2 * SHARE_LEN]
