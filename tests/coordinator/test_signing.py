"""The coordinator's manifest-signing key (coordinator/signing.py)."""

import stat

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP384R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coordinator.signing import load_or_create_key, sign_manifest
from privacy.keys import raw_public_key


def test_key_created_0600_with_public_key_beside_it_then_reused(tmp_path):
    path = tmp_path / "coord" / "coordinator.key"
    key, created = load_or_create_key(path)
    assert created and stat.S_IMODE(path.stat().st_mode) == 0o600
    pub = bytes.fromhex((tmp_path / "coord" / "coordinator.key.pub").read_text().strip())
    assert pub == raw_public_key(key) and len(pub) == 32
    again, created = load_or_create_key(path)
    assert not created and raw_public_key(again) == pub
    sig = sign_manifest(b"manifest bytes", again)
    Ed25519PublicKey.from_public_bytes(pub).verify(sig, b"manifest bytes")
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, b"manifest bytez")


def test_wrong_key_files_are_named(tmp_path):
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    with pytest.raises(ValueError, match="garbage.key: not a PEM private key"):
        load_or_create_key(garbage)
    ec = tmp_path / "ec.key"
    ec.write_bytes(generate_private_key(SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(ValueError, match="ec.key: the coordinator key must be Ed25519"):
        load_or_create_key(ec)


def test_existing_key_gets_its_public_key_file_and_a_stale_one_is_refused(tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = tmp_path / "operator.key"
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    loaded, created = load_or_create_key(path)  # an operator's own key: KEY.pub is written for auditors
    assert not created and (tmp_path / "operator.key.pub").read_text().strip() == raw_public_key(key).hex()
    (tmp_path / "operator.key.pub").write_text("ab" * 32 + "\n")
    with pytest.raises(ValueError, match="operator.key.pub does not hold operator.key's public key"):
        load_or_create_key(path)
    enc = tmp_path / "enc.key"
    enc.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(ValueError, match="enc.key: the key is encrypted"):
        load_or_create_key(enc)
    with pytest.raises(ValueError, match="not a key file"):
        load_or_create_key(tmp_path)
