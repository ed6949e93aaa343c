"""Noise_XX_25519_ChaChaPoly_SHA256 as the libp2p noise spec uses it, as a pure state machine.

Theory of operation.  The XX pattern is three messages:
    -> e                      (initiator, empty payload)
    <- e, ee, s, es           (responder, payload = its signed libp2p identity)
    -> s, se                  (initiator, payload = its signed libp2p identity)
`Handshake` keeps the symmetric state (chaining key ck, handshake hash h, cipher key k and nonce
n) and exposes one method per step; each returns the bytes to send or the decrypted payload and
raises HandshakeError on a bad MAC or wrong order.  Ephemeral and static private keys are
inputs, so the same keys reproduce the same transcript.  After the third message `split()`
yields the two transport CipherStates (initiator->responder, responder->initiator).

The libp2p payload is protobuf NoiseHandshakePayload{identity_key=1, identity_sig=2,
extensions=4}; identity_sig is the ed25519 signature of "noise-libp2p-static-key:" || the
X25519 static public key, which binds the Noise key to the peer id.
"""

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from node.p2p.errors import DecodeError, HandshakeError, InvariantError
from node.p2p.peer_id import (
    Identity,
    PeerId,
    marshal_public_key,
    unmarshal_public_key,
    verify_ed25519,
)
from node.p2p.protobuf import as_bytes, field_bytes, iter_fields

PROTOCOL_ID = "/noise"
PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
SIGNATURE_PREFIX = b"noise-libp2p-static-key:"
DH_BYTES = 32
TAG_BYTES = 16
FRAME_BYTES_MAX = 65535
PLAINTEXT_BYTES_MAX = FRAME_BYTES_MAX - TAG_BYTES
NONCE_MAX = 2**64 - 1
_ZERO4 = b"\x00\x00\x00\x00"


def _hkdf2(ck: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    temp = hmac.digest(ck, ikm, "sha256")
    out1 = hmac.digest(temp, b"\x01", "sha256")
    out2 = hmac.digest(temp, out1 + b"\x02", "sha256")
    return out1, out2


def x25519_public(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def _dh(private: bytes, public: bytes) -> bytes:
    try:
        return X25519PrivateKey.from_private_bytes(private).exchange(
            X25519PublicKey.from_public_bytes(public)
        )
    except ValueError as exc:
        raise HandshakeError("invalid X25519 public key") from exc


class CipherState:
    """ChaCha20-Poly1305 with a 64-bit counter nonce; one per direction."""

    __slots__ = ("_aead", "_nonce")

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._nonce = 0

    def encrypt(self, plaintext: bytes | memoryview, ad: bytes | None = None) -> bytes:
        n = self._nonce
        if n >= NONCE_MAX:
            raise InvariantError("noise nonce exhausted")
        self._nonce = n + 1
        return self._aead.encrypt(_ZERO4 + n.to_bytes(8, "little"), plaintext, ad)

    def encrypt_framed(self, plaintext: bytes | memoryview) -> bytearray:
        """2-byte big-endian length || ciphertext, encrypted straight into the frame buffer."""
        n = self._nonce
        if n >= NONCE_MAX:
            raise InvariantError("noise nonce exhausted")
        self._nonce = n + 1
        length = len(plaintext) + TAG_BYTES
        out = bytearray(2 + length)
        out[0] = length >> 8
        out[1] = length & 0xFF
        with memoryview(out) as view, view[2:] as body:
            self._aead.encrypt_into(_ZERO4 + n.to_bytes(8, "little"), plaintext, None, body)
        return out

    def decrypt(self, ciphertext: bytes | memoryview, ad: bytes | None = None) -> bytes:
        n = self._nonce
        if n >= NONCE_MAX:
            raise HandshakeError("noise nonce exhausted")
        try:
            plain = self._aead.decrypt(_ZERO4 + n.to_bytes(8, "little"), ciphertext, ad)
        except InvalidTag as exc:
            raise HandshakeError("noise frame failed authentication") from exc
        self._nonce = n + 1
        return plain


@dataclass(frozen=True, slots=True)
class HandshakePayload:
    identity_key: bytes
    identity_sig: bytes
    extensions: bytes = b""

    def encode(self) -> bytes:
        out = field_bytes(1, self.identity_key) + field_bytes(2, self.identity_sig)
        if self.extensions:
            out += field_bytes(4, self.extensions)
        return out

    @classmethod
    def decode(cls, data: bytes) -> "HandshakePayload":
        key = sig = ext = b""
        for number, value in iter_fields(data, fields_max=64):
            match number:
                case 1:
                    key = as_bytes(value, "identity_key")
                case 2:
                    sig = as_bytes(value, "identity_sig")
                case 4:
                    ext = as_bytes(value, "extensions")
                case _:
                    pass
        if not key or not sig:
            raise DecodeError("noise payload lacks identity key or signature")
        return cls(key, sig, ext)


def make_payload(identity: Identity, static_public: bytes) -> bytes:
    sig = identity.sign(SIGNATURE_PREFIX + static_public)
    return HandshakePayload(marshal_public_key(identity.public_key), sig).encode()


def verify_payload(payload: bytes, remote_static: bytes) -> PeerId:
    """Check the identity signature over the remote static key; return the remote peer id."""
    try:
        decoded = HandshakePayload.decode(payload)
        public = unmarshal_public_key(decoded.identity_key)
    except DecodeError as exc:
        raise HandshakeError(f"bad noise payload: {exc}") from exc
    if not verify_ed25519(public, SIGNATURE_PREFIX + remote_static, decoded.identity_sig):
        raise HandshakeError("noise static key signature invalid")
    return PeerId.from_public_key(public)


class Handshake:
    """One side of an XX handshake.  Call the methods in the order of the pattern."""

    def __init__(self, initiator: bool, static_private: bytes, ephemeral_private: bytes) -> None:
        self.initiator = initiator
        self._s = static_private
        self.s_public = x25519_public(static_private)
        self._e = ephemeral_private
        self._e_public = x25519_public(ephemeral_private)
        self._h = PROTOCOL_NAME  # exactly HASHLEN bytes, so used as is
        self._ck = self._h
        self._k: bytes | None = None
        self._n = 0
        self._re = b""
        self.remote_static = b""
        self._step = 0
        self._mix_hash(b"")  # empty prologue

    # -- symmetric state ---------------------------------------------------------------------
    def _mix_hash(self, data: bytes) -> None:
        self._h = hashlib.sha256(self._h + data).digest()

    def _mix_key(self, ikm: bytes) -> None:
        self._ck, self._k = _hkdf2(self._ck, ikm)
        self._n = 0

    def _encrypt_and_hash(self, plaintext: bytes) -> bytes:
        if self._k is None:
            out = plaintext
        else:
            nonce = _ZERO4 + self._n.to_bytes(8, "little")
            out = ChaCha20Poly1305(self._k).encrypt(nonce, plaintext, self._h)
            self._n += 1
        self._mix_hash(out)
        return out

    def _decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        if self._k is None:
            out = ciphertext
        else:
            nonce = _ZERO4 + self._n.to_bytes(8, "little")
            try:
                out = ChaCha20Poly1305(self._k).decrypt(nonce, ciphertext, self._h)
            except InvalidTag as exc:
                raise HandshakeError("noise handshake message failed authentication") from exc
            self._n += 1
        self._mix_hash(ciphertext)
        return out

    def _expect(self, step: int, initiator: bool) -> None:
        if self._step != step or self.initiator != initiator:
            raise InvariantError(f"noise handshake step {step} out of order")
        self._step += 1

    # -- message 1: -> e ---------------------------------------------------------------------
    def write_message_1(self) -> bytes:
        self._expect(0, True)
        self._mix_hash(self._e_public)
        return self._e_public + self._encrypt_and_hash(b"")

    def read_message_1(self, message: bytes) -> bytes:
        self._expect(0, False)
        if len(message) < DH_BYTES:
            raise HandshakeError("noise message 1 too short")
        self._re = message[:DH_BYTES]
        self._mix_hash(self._re)
        return self._decrypt_and_hash(message[DH_BYTES:])

    # -- message 2: <- e, ee, s, es ----------------------------------------------------------
    def write_message_2(self, payload: bytes) -> bytes:
        self._expect(1, False)
        self._mix_hash(self._e_public)
        self._mix_key(_dh(self._e, self._re))
        enc_s = self._encrypt_and_hash(self.s_public)
        self._mix_key(_dh(self._s, self._re))
        return self._e_public + enc_s + self._encrypt_and_hash(payload)

    def read_message_2(self, message: bytes) -> bytes:
        self._expect(1, True)
        if len(message) < DH_BYTES + DH_BYTES + TAG_BYTES + TAG_BYTES:
            raise HandshakeError("noise message 2 too short")
        self._re = message[:DH_BYTES]
        self._mix_hash(self._re)
        self._mix_key(_dh(self._e, self._re))
        self.remote_static = self._decrypt_and_hash(message[DH_BYTES : 2 * DH_BYTES + TAG_BYTES])
        self._mix_key(_dh(self._e, self.remote_static))
        return self._decrypt_and_hash(message[2 * DH_BYTES + TAG_BYTES :])

    # -- message 3: -> s, se -----------------------------------------------------------------
    def write_message_3(self, payload: bytes) -> bytes:
        self._expect(2, True)
        enc_s = self._encrypt_and_hash(self.s_public)
        self._mix_key(_dh(self._s, self._re))
        return enc_s + self._encrypt_and_hash(payload)

    def read_message_3(self, message: bytes) -> bytes:
        self._expect(2, False)
        if len(message) < DH_BYTES + TAG_BYTES + TAG_BYTES:
            raise HandshakeError("noise message 3 too short")
        self.remote_static = self._decrypt_and_hash(message[: DH_BYTES + TAG_BYTES])
        self._mix_key(_dh(self._e, self.remote_static))
        return self._decrypt_and_hash(message[DH_BYTES + TAG_BYTES :])

    def split(self) -> tuple[CipherState, CipherState]:
        """(send, receive) cipher states for this side."""
        if self._step != 3:
            raise InvariantError("noise split before the handshake finished")
        k1, k2 = _hkdf2(self._ck, b"")
        c1, c2 = CipherState(k1), CipherState(k2)
        return (c1, c2) if self.initiator else (c2, c1)


def frame(ciphertext: bytes) -> bytes:
    if len(ciphertext) > FRAME_BYTES_MAX:
        raise InvariantError("noise frame over 65535 bytes")
    return len(ciphertext).to_bytes(2, "big") + ciphertext


def split_frames(buf: bytes | bytearray | memoryview) -> tuple[list[tuple[int, int]], int]:
    """(start, end) of each complete frame body in `buf`, and the bytes those frames use.

    A 2-byte length cannot exceed 65535, so the length bound is structural.
    """
    frames: list[tuple[int, int]] = []
    pos = 0
    end = len(buf)
    while end - pos >= 2:
        length = (buf[pos] << 8) | buf[pos + 1]
        if end - pos - 2 < length:
            break
        frames.append((pos + 2, pos + 2 + length))
        pos += 2 + length
    return frames, pos
