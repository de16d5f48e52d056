"""Encryption at rest for a node's store: AES-GCM for text, HMAC for text-free lookup keys.

The master secret comes from the key file that `cairn node init` writes (32 random bytes, mode 0600)
or from a passphrase stretched with scrypt (n=2**15, r=8, p=1). Two sub-keys are derived with
HKDF-SHA256: one for AES-256-GCM (96-bit random nonces), one for HMAC-SHA256 identifiers, so that
dedup keys and caches never hold text or plain hashes of text: text at rest is sealed
(ARCHITECTURE.md invariant 1). Two more: SQLCipher's raw key, which encrypts the whole store file
(node/store_db.py), and in passphrase mode the password of the private key files (node/keys.py).

- scrypt: Percival & Josefsson, RFC 7914, "The scrypt Password-Based Key Derivation Function",
  section 6 (the scrypt algorithm), https://www.rfc-editor.org/rfc/rfc7914
- HKDF: Krawczyk & Eronen, RFC 5869, "HMAC-based Extract-and-Expand Key Derivation Function",
  section 2 (extract, then expand), https://www.rfc-editor.org/rfc/rfc5869
- AES-GCM: Dworkin, NIST SP 800-38D, section 8.2.2 (RBG-based 96-bit IV construction),
  https://doi.org/10.6028/NIST.SP.800-38D
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

NONCE = 12
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


class CryptoError(Exception):
    """A key cannot be read or a sealed value cannot be opened (wrong key, altered data)."""


def _hkdf(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


def new_key_file(path: Path) -> None:
    """Write 32 random bytes to `path`, readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(32))


def master_from_key_file(path: Path) -> bytes:
    """The 32-byte master secret in a key file written by `new_key_file`."""
    data = Path(path).read_bytes()
    if len(data) != 32:
        raise CryptoError(f"{path}: store key must be 32 bytes, found {len(data)}")
    return data


def master_from_passphrase(passphrase: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> bytes:
    """The 32-byte master secret stretched from a passphrase with scrypt (RFC 7914); node.toml records
    the parameters a node was created with, so that raising the defaults never locks an older node out."""
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


@dataclass(frozen=True)
class StoreCipher:
    """AES-GCM sealing bound to a context (table and row id), and keyed identifiers."""

    enc_key: bytes
    mac_key: bytes
    db_key: bytes = b""  # SQLCipher's raw key for the whole file (node/store_db.py)
    keys_key: bytes = b""  # AES-GCM key of the private key files in passphrase mode (node/keys.py)

    @classmethod
    def from_master(cls, master: bytes) -> "StoreCipher":
        """The sub-keys derived from the master secret with HKDF-SHA256 (RFC 5869), one per use."""
        return cls(_hkdf(master, b"cairn/store/aes-gcm/v1"), _hkdf(master, b"cairn/store/hmac/v1"),
                   _hkdf(master, b"cairn/store/sqlcipher/v1"), _hkdf(master, b"cairn/keys/aes-gcm/v1"))

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        """AES-256-GCM of `plaintext` under a fresh random nonce, bound to `context` (nonce || ciphertext)."""
        nonce = os.urandom(NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, context)

    def seal_many(self, items: list[tuple[bytes, bytes]]) -> list[bytes]:
        """`seal` of each (plaintext, context), their fresh random nonces drawn from the OS in one call."""
        pool = os.urandom(NONCE * len(items))
        enc = self._aead.encrypt
        out = []
        for i, (plaintext, context) in enumerate(items):
            nonce = pool[i * NONCE:(i + 1) * NONCE]
            out.append(nonce + enc(nonce, plaintext, context))
        return out

    def open(self, blob: bytes, context: bytes) -> bytes:
        """The plaintext of a `seal`ed blob for the same `context`; CryptoError when it does not authenticate."""
        try:
            return self._aead.decrypt(blob[:NONCE], blob[NONCE:], context)
        except InvalidTag:
            raise CryptoError("decryption failed: wrong store key or passphrase, or the data was altered") from None

    def ident(self, *parts: str) -> str:
        """Keyed identifier of `parts` (hex HMAC-SHA256): stable per node, reveals nothing."""
        h = self._mac.copy()  # the keyed state once, copied per call: the same HMAC, without re-keying
        h.update("\x1f".join(parts).encode("utf-8"))
        return h.hexdigest()

    def __getstate__(self) -> dict:
        """The keys only (what pickling and copying keep): the cached AES-GCM and HMAC states are rebuilt."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    # Built once per cipher (not fields: cached_property writes the instance dict, which a frozen dataclass allows).
    @cached_property
    def _aead(self) -> AESGCM:
        return AESGCM(self.enc_key)

    @cached_property
    def _mac(self) -> "hmac.HMAC":
        return hmac.new(self.mac_key, digestmod=hashlib.sha256)

    def check_value(self) -> str:
        """A value stored at init, to tell a wrong key or passphrase from corrupted data."""
        return self.ident("cairn-key-check")
