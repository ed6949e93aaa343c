"""The signed transaction envelope every kind shares, and the submit_update body.

Wire bytes:  encode([kind, sender, nonce, body, signature])
Signed:      encode(["fedchain/tx/v2", chain_id, kind, sender, nonce, sha256(encode(body))])
Signing the body's digest rather than the body keeps ed25519's own hashing (SHA-512, twice when
signing) off the 200 KB of an FL update: a validator verifies every update once, and sha256 with
the CPU's SHA extensions runs at twice SHA-512's speed here (0.14 ms instead of 0.30 ms per
update); the digest commits to the body exactly as the body itself did.
The sender is a 32-byte ed25519 public key, which is also the account address.  The nonce must
equal the account's next nonce when the transaction executes, so a transaction runs at most once.
Kinds other than "submit_update" are defined by their own modules; the envelope does not care.
"""

from dataclasses import dataclass

from consensus.codec import (
    DecodeLimits,
    Value,
    decode,
    encode,
    expect_bytes,
    expect_int,
    expect_list,
    expect_str,
)
from consensus.crypto import (
    HASH_BYTES,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    PrivateKey,
    sha256,
    verify,
)
from consensus.errors import CodecError
from fl.errors import RejectedError
from fl.fixed import DTYPES, PARAMS_MAX, SAMPLES_MAX, SCALE_EXP_MAX

TX_DOMAIN = "fedchain/tx/v2"
TX_BYTES_MAX = 8 * 1024 * 1024 + 4096  # a 1M-parameter int32 delta... is 4 MiB, so 8 MiB is ample
KIND_CHARS_MAX = 32
NONCE_MAX = 2**63 - 1

TX_LIMITS = DecodeLimits(
    message_bytes_max=TX_BYTES_MAX,
    bin_bytes_max=TX_BYTES_MAX,
    str_bytes_max=256,
    array_items_max=4096,
)


@dataclass(frozen=True, slots=True)
class SignedTx:
    kind: str
    sender: bytes
    nonce: int
    body: Value
    signature: bytes

    def to_wire(self) -> bytes:
        return encode([self.kind, self.sender, self.nonce, self.body, self.signature])

    def hash(self) -> bytes:
        return sha256(self.to_wire())


def signing_bytes(chain_id: str, kind: str, sender: bytes, nonce: int, body: Value) -> bytes:
    return encode([TX_DOMAIN, chain_id, kind, sender, nonce, sha256(encode(body))])


def sign_tx(key: PrivateKey, chain_id: str, kind: str, nonce: int, body: Value) -> SignedTx:
    sender = key.public_key
    signature = key.sign(signing_bytes(chain_id, kind, sender, nonce, body))
    return SignedTx(kind, sender, nonce, body, signature)


def decode_tx(data: bytes) -> SignedTx:
    """Parse wire bytes (stateless checks only); raises RejectedError with the reason."""
    try:
        value = decode(data, TX_LIMITS)
        kind_v, sender_v, nonce_v, body, sig_v = expect_list(value, 5, "tx")
        kind = expect_str(kind_v, "tx kind", KIND_CHARS_MAX)
        sender = expect_bytes(sender_v, "tx sender", PUBLIC_KEY_BYTES)
        nonce = expect_int(nonce_v, "tx nonce", 0, NONCE_MAX)
        signature = expect_bytes(sig_v, "tx signature", SIGNATURE_BYTES)
    except CodecError as exc:
        raise RejectedError(f"malformed transaction: {exc}") from None
    return SignedTx(kind, sender, nonce, body, signature)


def verify_tx(tx: SignedTx, chain_id: str) -> None:
    message = signing_bytes(chain_id, tx.kind, tx.sender, tx.nonce, tx.body)
    if not verify(tx.sender, message, tx.signature):
        raise RejectedError("bad signature")


# -- submit_update ---------------------------------------------------------------------------

KIND_SUBMIT_UPDATE = "submit_update"


@dataclass(frozen=True, slots=True)
class SubmitUpdate:
    """One client's quantized model delta for `round`, trained from the model `base_hash`."""

    round: int
    base_hash: bytes
    samples: int
    scale_exp: int
    bits: int
    count: int
    delta: bytes

    def encode(self) -> Value:
        return [
            self.round,
            self.base_hash,
            self.samples,
            self.scale_exp,
            self.bits,
            self.count,
            self.delta,
        ]

    @classmethod
    def decode(cls, body: Value) -> "SubmitUpdate":
        try:
            rnd, base, samples, scale, bits, count, delta = expect_list(body, 7, "submit_update")
            return cls(
                round=expect_int(rnd, "round", 0, NONCE_MAX),
                base_hash=expect_bytes(base, "base model hash", HASH_BYTES),
                samples=expect_int(samples, "sample count", 1, SAMPLES_MAX),
                scale_exp=expect_int(scale, "scale exponent", 0, SCALE_EXP_MAX),
                bits=expect_int(bits, "element width", 8, 32),
                count=expect_int(count, "parameter count", 1, PARAMS_MAX),
                delta=expect_bytes(delta, "delta", size_max=PARAMS_MAX * 4),
            )
        except CodecError as exc:
            raise RejectedError(f"malformed submit_update: {exc}") from None

    def __post_init__(self) -> None:
        if self.bits not in DTYPES:
            raise RejectedError(f"element width {self.bits} bits is not one of 8, 16, 32")


# -- commit-reveal ---------------------------------------------------------------------------

KIND_COMMIT_UPDATE = "commit_update"
KIND_REVEAL_UPDATE = "reveal_update"
COMMIT_DOMAIN = "fedchain/commit/v1"
SALT_BYTES = 32


def commitment(sender: bytes, fl_round: int, update_body: Value, salt: bytes) -> bytes:
    """sha256 over the update (its canonical body's digest) and a secret salt.  The sender and
    round are inside, so a commitment copied from another client, or from an earlier round,
    matches no reveal its copier can make."""
    return sha256(encode([COMMIT_DOMAIN, sender, fl_round, sha256(encode(update_body)), salt]))


@dataclass(frozen=True, slots=True)
class CommitUpdate:
    """commit_update body: [round, commitment]."""

    round: int
    digest: bytes

    def encode(self) -> Value:
        return [self.round, self.digest]

    @classmethod
    def decode(cls, body: Value) -> "CommitUpdate":
        try:
            rnd, digest = expect_list(body, 2, "commit_update")
            return cls(
                expect_int(rnd, "round", 0, NONCE_MAX),
                expect_bytes(digest, "commitment", HASH_BYTES),
            )
        except CodecError as exc:
            raise RejectedError(f"malformed commit_update: {exc}") from None


def reveal_parts(body: Value) -> tuple[Value, bytes]:
    """reveal_update body: [submit_update body, salt]; the update body is decoded by the caller."""
    try:
        update_body, salt = expect_list(body, 2, "reveal_update")
        return update_body, expect_bytes(salt, "salt", SALT_BYTES)
    except CodecError as exc:
        raise RejectedError(f"malformed reveal_update: {exc}") from None
