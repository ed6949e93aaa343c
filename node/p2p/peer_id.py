"""libp2p identities for ed25519 keys.

The public key is marshalled as protobuf PublicKey{Type=1 (Ed25519), Data=2}; keys of at most
42 bytes are embedded in the peer id with the identity multihash (0x00, length), which gives the
familiar base58 "12D3KooW..." form and lets anyone recover the key from the id.
Only ed25519 is supported: other key types are refused with a DecodeError.
"""

from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consensus.crypto import PrivateKey, verify
from node.p2p.errors import DecodeError
from node.p2p.protobuf import as_bytes, as_int, field_bytes, field_varint, iter_fields

KEY_TYPE_ED25519 = 1
ED25519_KEY_BYTES = 32
_IDENTITY_MULTIHASH = 0x00
_SHA256_MULTIHASH = 0x12
_ALPHABET = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
PEER_ID_BYTES_MAX = 128


def b58encode(data: bytes) -> str:
    zeros = len(data) - len(data.lstrip(b"\0"))
    n = int.from_bytes(data, "big")
    out = bytearray()
    while n:
        n, r = divmod(n, 58)
        out.append(_ALPHABET[r])
    return (b"1" * zeros + bytes(reversed(out))).decode()


def b58decode(text: str) -> bytes:
    if len(text) > 2 * PEER_ID_BYTES_MAX:
        raise DecodeError("base58 string too long")
    raw = text.encode()
    n = 0
    for c in raw:
        index = _INDEX.get(c)
        if index is None:
            raise DecodeError("invalid base58 character")
        n = n * 58 + index
    zeros = len(raw) - len(raw.lstrip(b"1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def marshal_public_key(ed25519_public: bytes) -> bytes:
    return field_varint(1, KEY_TYPE_ED25519) + field_bytes(2, ed25519_public)


def unmarshal_public_key(data: bytes) -> bytes:
    """The raw 32-byte ed25519 key inside a marshalled PublicKey."""
    key_type = -1
    key = b""
    for number, value in iter_fields(data, fields_max=8):
        if number == 1:
            key_type = as_int(value, "PublicKey.Type")
        elif number == 2:
            key = as_bytes(value, "PublicKey.Data")
    if key_type != KEY_TYPE_ED25519:
        raise DecodeError(f"unsupported public key type {key_type}")
    if len(key) != ED25519_KEY_BYTES:
        raise DecodeError("ed25519 public key must be 32 bytes")
    return key


@dataclass(frozen=True, slots=True, order=True)
class PeerId:
    """A peer id as its multihash bytes; compare and hash by bytes."""

    raw: bytes

    @classmethod
    def from_public_key(cls, ed25519_public: bytes) -> "PeerId":
        marshalled = marshal_public_key(ed25519_public)
        return cls(bytes((_IDENTITY_MULTIHASH, len(marshalled))) + marshalled)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "PeerId":
        if not 2 <= len(raw) <= PEER_ID_BYTES_MAX:
            raise DecodeError("peer id length out of range")
        code, length = raw[0], raw[1]
        if code not in (_IDENTITY_MULTIHASH, _SHA256_MULTIHASH) or length != len(raw) - 2:
            raise DecodeError("peer id is not a valid identity or sha256 multihash")
        return cls(raw)

    @classmethod
    def from_base58(cls, text: str) -> "PeerId":
        return cls.from_bytes(b58decode(text))

    def to_base58(self) -> str:
        return b58encode(self.raw)

    def public_key(self) -> bytes | None:
        """The embedded ed25519 key, or None if the id is a hash of the key."""
        if self.raw[0] != _IDENTITY_MULTIHASH:
            return None
        return unmarshal_public_key(self.raw[2:])

    def short(self) -> str:
        return self.to_base58()[-8:]

    def __str__(self) -> str:
        return self.to_base58()


# Above this size OpenSSL's ed25519 (no message copy, faster SHA-512) beats libsodium's.
_LARGE_MESSAGE_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Identity:
    """This node's libp2p key pair (ed25519)."""

    key: PrivateKey
    _large: Ed25519PrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_large", Ed25519PrivateKey.from_private_bytes(self.key.seed))

    @classmethod
    def from_seed(cls, seed: bytes) -> "Identity":
        return cls(PrivateKey(seed))

    @property
    def public_key(self) -> bytes:
        return self.key.public_key

    @property
    def peer_id(self) -> PeerId:
        return PeerId.from_public_key(self.key.public_key)

    def sign(self, message: bytes) -> bytes:
        if len(message) >= _LARGE_MESSAGE_BYTES:
            return self._large.sign(message)
        return self.key.sign(message)


def verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(message) < _LARGE_MESSAGE_BYTES:
        return verify(public_key, message, signature)
    if len(public_key) != ED25519_KEY_BYTES or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
