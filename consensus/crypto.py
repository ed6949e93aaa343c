"""ed25519 signatures (libsodium through pynacl) and sha256 digests.

Keys are plain 32-byte values so they can be encoded canonically; the private key object never
leaves the process that owns it (the shell injects a `Signer` into the engine).
"""

import hashlib
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
SEED_BYTES = 32
HASH_BYTES = 32


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """An ed25519 key pair derived from a 32-byte seed."""

    seed: bytes = field(repr=False)
    public_key: bytes = field(init=False)
    _secret: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_BYTES:
            raise ValueError(f"ed25519 seed must be {SEED_BYTES} bytes")
        public, secret = nacl.bindings.crypto_sign_seed_keypair(self.seed)
        object.__setattr__(self, "public_key", public)
        object.__setattr__(self, "_secret", secret)

    @classmethod
    def from_label(cls, label: str) -> "PrivateKey":
        """A deterministic key for tests and simulations: seed = sha256(label)."""
        return cls(sha256(label.encode()))

    def sign(self, message: bytes) -> bytes:
        signed: bytes = nacl.bindings.crypto_sign(message, self._secret)
        return signed[:SIGNATURE_BYTES]


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff `signature` is a valid ed25519 signature of `message` under `public_key`."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True
