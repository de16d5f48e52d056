import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy.keys import node_id_of, raw_public_key


def test_raw_public_key_of_a_private_or_public_key_and_the_node_id():
    key = Ed25519PrivateKey.generate()
    raw = raw_public_key(key)
    assert len(raw) == 32 and raw_public_key(key.public_key()) == raw
    assert node_id_of(raw) == hashlib.sha256(raw).hexdigest()
