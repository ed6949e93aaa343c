from consensus.crypto import PrivateKey, sha256, verify


def test_sign_verify_and_tamper() -> None:
    key = PrivateKey.from_label("alice")
    sig = key.sign(b"hello")
    assert verify(key.public_key, b"hello", sig)
    assert not verify(key.public_key, b"hellO", sig)
    assert not verify(PrivateKey.from_label("bob").public_key, b"hello", sig)
    assert not verify(key.public_key, b"hello", sig[:-1])


def test_keys_are_deterministic_from_label() -> None:
    assert PrivateKey.from_label("x").public_key == PrivateKey.from_label("x").public_key
    assert len(sha256(b"")) == 32
