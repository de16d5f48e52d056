"""The node's key material, created by `cairn node init` under DIR/keys/ (private files mode 0600).

- ledger_ed25519.pem / .pub: Ed25519 key that signs every ledger entry (RFC 8032, https://www.rfc-editor.org/rfc/rfc8032).
- supernode_ec / supernode_ec.pub: EC NIST P-384 key in OpenSSH format, which Flower's SuperNode
  authentication uses (`flwr supernode register node.pub`, `--auth-supernode-private-key`).
- store.key: the store's master secret (absent when the node uses a passphrase).

When the node uses a passphrase, both private key files are sealed under it (AES-256-GCM with a key
HKDF-derived from the scrypt master secret, node/crypto.py; the file name is the associated data):
a stolen directory without the passphrase cannot sign ledger entries nor pose as the SuperNode.
`flower-supernode` reads a plain key file, so `unsealed_supernode_key` writes one (0600, in the 0700
keys folder) only for as long as the caller needs it (deploy/local.py: until the SuperNode has
connected). Older passphrase nodes' plain key files are sealed on first open (`seal_key_files`),
which also overwrites the plain copies a killed process left (`sweep_leftovers`). A ledger key that
does not match ledger_ed25519.pub (one planted by someone without the passphrase) is refused.

The raw public key bytes and the node id derived from them are privacy/keys.py's. The ledger key
is what makes the ledger tamper-evident (ARCHITECTURE.md invariant 7).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

LEDGER_KEY = "ledger_ed25519.pem"
LEDGER_PUB = "ledger_ed25519.pub"
SUPERNODE_KEY = "supernode_ec"
SUPERNODE_PUB = "supernode_ec.pub"
STORE_KEY = "store.key"
SEALED = b"CAIRN-SEALED-KEY v1\n"  # a private key file sealed under the passphrase
NONCE = 12


class KeyLocked(Exception):
    """A private key file is sealed under the passphrase, and no (or the wrong) passphrase was given."""


def _write_private(path: Path, data: bytes, keys_key: bytes | None = None) -> None:
    if keys_key:
        data = _seal(data, keys_key, path.name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _seal(data: bytes, keys_key: bytes, name: str) -> bytes:
    nonce = os.urandom(NONCE)
    return SEALED + nonce + AESGCM(keys_key).encrypt(nonce, data, name.encode())


def is_sealed(path: Path) -> bool:
    """Is this private key file sealed under the passphrase?"""
    with open(path, "rb") as f:
        return f.read(len(SEALED)) == SEALED


def read_private(path: Path, keys_key: bytes | None = None) -> bytes:
    """The bytes of a private key file, opened with `keys_key` when sealed (KeyLocked without it)."""
    data = Path(path).read_bytes()
    if not data.startswith(SEALED):
        return data
    if not keys_key:
        raise KeyLocked(f"{path}: this key is sealed under the node's passphrase; set the passphrase variable")
    body = data[len(SEALED):]
    try:
        return AESGCM(keys_key).decrypt(body[:NONCE], body[NONCE:], Path(path).name.encode())
    except InvalidTag:
        raise KeyLocked(f"{path}: wrong passphrase, or the key file was altered") from None


def seal_key_files(key_dir: Path, keys_key: bytes) -> None:
    """Seal the plain private key files of an older passphrase node (atomic replace, old bytes overwritten)."""
    sweep_leftovers(key_dir)
    for name in (LEDGER_KEY, SUPERNODE_KEY):
        path = key_dir / name
        if not path.exists() or is_sealed(path):
            continue
        data = path.read_bytes()
        tmp, old = path.with_name(name + ".sealing"), path.with_name(name + ".plain-old")
        _write_private(tmp, _seal(data, keys_key, name))  # bound to the final name
        os.link(path, old)
        os.replace(tmp, path)
        _overwrite(old)
        old.unlink()


def sweep_leftovers(key_dir: Path) -> None:
    """Overwrite and remove the plain key bytes a killed process left: a `.plain-old` copy from an
    interrupted `seal_key_files` (only unlinked while it is still the key file's own second name)
    and the plain SuperNode key copies of processes that no longer run."""
    for name in (LEDGER_KEY, SUPERNODE_KEY):
        path, old = key_dir / name, key_dir / (name + ".plain-old")
        (key_dir / (name + ".sealing")).unlink(missing_ok=True)
        if old.exists():
            if not (path.exists() and os.path.samefile(old, path)):
                _overwrite(old)
            old.unlink()
    for run in key_dir.glob(f".{SUPERNODE_KEY}.run-*"):
        try:
            pid = int(run.name.split(".run-", 1)[1].split("-", 1)[0])
            os.kill(pid, 0)
            continue  # its process still runs (and may still be starting its SuperNode)
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        _overwrite(run)
        run.unlink(missing_ok=True)


def _overwrite(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb+") as f:
        f.write(b"\0" * size)
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def unsealed_supernode_key(key_dir: Path, keys_key: bytes | None = None) -> Iterator[Path]:
    """A plain SuperNode key file for `flower-supernode`: the key file itself when it is not sealed,
    else a 0600 copy in the keys folder, removed when the block ends."""
    path = key_dir / SUPERNODE_KEY
    if not is_sealed(path):
        yield path
        return
    data = read_private(path, keys_key)
    tmp = key_dir / f".{SUPERNODE_KEY}.run-{os.getpid()}-{os.urandom(4).hex()}"
    _write_private(tmp, data)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def create_keys(key_dir: Path, comment: str, keys_key: bytes | None = None) -> None:
    """Create the ledger and SuperNode key pairs under `key_dir` (private files mode 0600), the
    private files sealed under `keys_key` when given (passphrase mode)."""
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ledger = Ed25519PrivateKey.generate()
    _write_private(
        key_dir / LEDGER_KEY,
        ledger.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        keys_key,
    )
    (key_dir / LEDGER_PUB).write_bytes(
        ledger.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    sn = ec.generate_private_key(ec.SECP384R1())
    _write_private(
        key_dir / SUPERNODE_KEY,
        sn.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()),
        keys_key,
    )
    pub = sn.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    (key_dir / SUPERNODE_PUB).write_bytes(pub + b" " + comment.encode() + b"\n")


def load_ledger_key(key_dir: Path, keys_key: bytes | None = None) -> Ed25519PrivateKey:
    """The node's Ed25519 ledger signing key (opened with `keys_key` when sealed: KeyLocked without it)."""
    key = serialization.load_pem_private_key(read_private(key_dir / LEDGER_KEY, keys_key), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{key_dir / LEDGER_KEY}: not an Ed25519 private key")
    if key.public_key().public_bytes_raw() != load_ledger_public(key_dir).public_bytes_raw():
        raise KeyLocked(f"{key_dir / LEDGER_KEY}: does not match the node's public key {LEDGER_PUB} (replaced?)")
    return key


def load_ledger_public(key_dir: Path) -> Ed25519PublicKey:
    """The node's Ed25519 ledger public key."""
    key = serialization.load_pem_public_key((key_dir / LEDGER_PUB).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{key_dir / LEDGER_PUB}: not an Ed25519 public key")
    return key

