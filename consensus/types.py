"""Chain values: blocks, headers, proposals, votes, commits, evidence.

Every value has one canonical byte string (`encode_*` / `decode_*` through consensus/codec.py,
fixed-order arrays) and anything signed signs `*_sign_bytes`, which name the chain id, height,
round, message type and block id, so a signature can never be replayed on another chain, height,
round or step.  A block id is the sha256 of the canonical header; the header commits to the
transactions, the evidence and the previous block's commit through their hashes.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import msgpack

from consensus.codec import (
    DEFAULT_LIMITS,
    DecodeLimits,
    Value,
    decode,
    encode,
    expect_bytes,
    expect_int,
    expect_list,
    expect_seq,
    expect_str,
)
from consensus.crypto import HASH_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES, sha256
from consensus.errors import CodecError
from consensus.txid import tx_id


def _pack(value: Value) -> bytes:
    """Canonical bytes of a value this module built from typed fields (the generic checks of
    codec.encode are for values of unknown shape; decoders still run them on peer input)."""
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


NIL: bytes = b""  # the nil block id of a vote
ROUND_MAX = 1 << 20
HEIGHT_MAX = 1 << 62
TIME_MS_MAX = 1 << 62
CHAIN_ID_CHARS_MAX = 64
VALIDATORS_MAX = 10_000
# Voting power bounds (CometBFT's): the total stays at most int64max / 8, so every sum of powers
# and every proposer priority (kept within a few totals of zero) fits int64 with room to spare;
# the node stores both as msgpack integers, which are int64 at most.
INT64_MAX = (1 << 63) - 1
POWER_MAX = 1 << 50
TOTAL_POWER_MAX = INT64_MAX // 8
TXS_MAX = 1_000_000
EVIDENCE_MAX = 1_000


def power_problem(pairs: Sequence[tuple[bytes, int]]) -> str | None:
    """Why these (public key, power) pairs cannot form a validator set, naming the validator and
    the bound it breaks; None if they can."""
    if not pairs:
        return "a validator set needs at least one validator"
    if len(pairs) > VALIDATORS_MAX:
        return f"{len(pairs)} validators exceed VALIDATORS_MAX = {VALIDATORS_MAX}"
    total = 0
    for public_key, power in pairs:
        if len(public_key) != PUBLIC_KEY_BYTES:
            return f"validator {public_key.hex()[:16]}: key is not {PUBLIC_KEY_BYTES} bytes"
        if not 0 < power <= POWER_MAX:
            return (
                f"validator {public_key.hex()[:16]}: power {power} outside "
                f"(0, POWER_MAX = {POWER_MAX}]"
            )
        total += power
        if total > TOTAL_POWER_MAX:
            return (
                f"validator {public_key.hex()[:16]}: total power {total} exceeds "
                f"TOTAL_POWER_MAX = {TOTAL_POWER_MAX}"
            )
    return None


PREVOTE = 1
PRECOMMIT = 2
VOTE_TYPES = (PREVOTE, PRECOMMIT)
# The LastSigned guard orders the three signed messages of one round.
STEP_PROPOSAL = 0


def _hash_or_empty(what: str, value: Value) -> bytes:
    data = expect_bytes(value, what, size_max=HASH_BYTES)
    if len(data) not in (0, HASH_BYTES):
        raise CodecError(f"{what}: expected 0 or {HASH_BYTES} bytes")
    return data


@dataclass(frozen=True, slots=True)
class Header:
    chain_id: str
    height: int
    time_ms: int
    last_block_id: bytes
    last_commit_hash: bytes
    data_hash: bytes
    evidence_hash: bytes
    validators_hash: bytes
    next_validators_hash: bytes
    app_hash: bytes
    proposer: bytes

    def to_value(self) -> list[Value]:
        return [
            self.chain_id,
            self.height,
            self.time_ms,
            self.last_block_id,
            self.last_commit_hash,
            self.data_hash,
            self.evidence_hash,
            self.validators_hash,
            self.next_validators_hash,
            self.app_hash,
            self.proposer,
        ]

    @staticmethod
    def from_value(value: Value) -> "Header":
        f = expect_list(value, 11, "header")
        return Header(
            chain_id=expect_str(f[0], "header.chain_id", CHAIN_ID_CHARS_MAX),
            height=expect_int(f[1], "header.height", 1, HEIGHT_MAX),
            time_ms=expect_int(f[2], "header.time_ms", 0, TIME_MS_MAX),
            last_block_id=_hash_or_empty("header.last_block_id", f[3]),
            last_commit_hash=expect_bytes(f[4], "header.last_commit_hash", HASH_BYTES),
            data_hash=expect_bytes(f[5], "header.data_hash", HASH_BYTES),
            evidence_hash=expect_bytes(f[6], "header.evidence_hash", HASH_BYTES),
            validators_hash=expect_bytes(f[7], "header.validators_hash", HASH_BYTES),
            next_validators_hash=expect_bytes(f[8], "header.next_validators_hash", HASH_BYTES),
            app_hash=expect_bytes(f[9], "header.app_hash", size_max=HASH_BYTES),
            proposer=expect_bytes(f[10], "header.proposer", PUBLIC_KEY_BYTES),
        )

    def block_id(self) -> bytes:
        return sha256(_pack(self.to_value()))


@dataclass(frozen=True, slots=True)
class Vote:
    """A prevote or precommit for `block_id` (NIL for nil) by `validator` (its public key)."""

    type: int
    height: int
    round: int
    block_id: bytes
    validator: bytes
    signature: bytes

    def to_value(self) -> list[Value]:
        return [self.type, self.height, self.round, self.block_id, self.validator, self.signature]

    @staticmethod
    def from_value(value: Value) -> "Vote":
        f = expect_list(value, 6, "vote")
        vote_type = expect_int(f[0], "vote.type", PREVOTE, PRECOMMIT)
        return Vote(
            type=vote_type,
            height=expect_int(f[1], "vote.height", 1, HEIGHT_MAX),
            round=expect_int(f[2], "vote.round", 0, ROUND_MAX),
            block_id=_hash_or_empty("vote.block_id", f[3]),
            validator=expect_bytes(f[4], "vote.validator", PUBLIC_KEY_BYTES),
            signature=expect_bytes(f[5], "vote.signature", SIGNATURE_BYTES),
        )


def vote_sign_bytes(
    chain_id: str, vote_type: int, height: int, round_: int, block_id: bytes
) -> bytes:
    return _pack(["vote", chain_id, vote_type, height, round_, block_id])


@dataclass(frozen=True, slots=True)
class CommitSig:
    validator: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Commit:
    """2/3+ (by power) precommits for `block_id` at (`height`, `round`): a commit certificate.

    Signatures are ordered as the validators are in their set, so equal commits are equal bytes.
    """

    height: int
    round: int
    block_id: bytes
    signatures: tuple[CommitSig, ...]

    def to_value(self) -> list[Value]:
        return [
            self.height,
            self.round,
            self.block_id,
            [[s.validator, s.signature] for s in self.signatures],
        ]

    @staticmethod
    def from_value(value: Value) -> "Commit":
        f = expect_list(value, 4, "commit")
        sigs = []
        for item in expect_seq(f[3], "commit.signatures", VALIDATORS_MAX):
            pair = expect_list(item, 2, "commit.signature")
            sigs.append(
                CommitSig(
                    expect_bytes(pair[0], "commit.validator", PUBLIC_KEY_BYTES),
                    expect_bytes(pair[1], "commit.signature", SIGNATURE_BYTES),
                )
            )
        return Commit(
            height=expect_int(f[0], "commit.height", 1, HEIGHT_MAX),
            round=expect_int(f[1], "commit.round", 0, ROUND_MAX),
            block_id=expect_bytes(f[2], "commit.block_id", HASH_BYTES),
            signatures=tuple(sigs),
        )

    def hash(self) -> bytes:
        return sha256(_pack(self.to_value()))


EMPTY_COMMIT_HASH = sha256(encode([]))


def commit_hash(commit: Commit | None) -> bytes:
    return EMPTY_COMMIT_HASH if commit is None else commit.hash()


@dataclass(frozen=True, slots=True)
class DuplicateVoteEvidence:
    """Two votes by one validator for one (height, round, type) with different block ids.

    `vote_a.block_id < vote_b.block_id` (bytewise), so one equivocation has one encoding.
    """

    vote_a: Vote
    vote_b: Vote

    def to_value(self) -> list[Value]:
        return [self.vote_a.to_value(), self.vote_b.to_value()]

    @staticmethod
    def from_value(value: Value) -> "DuplicateVoteEvidence":
        f = expect_list(value, 2, "evidence")
        return DuplicateVoteEvidence(Vote.from_value(f[0]), Vote.from_value(f[1]))

    @staticmethod
    def of(first: Vote, second: Vote) -> "DuplicateVoteEvidence":
        if first.block_id < second.block_id:
            return DuplicateVoteEvidence(first, second)
        return DuplicateVoteEvidence(second, first)

    def key(self) -> tuple[bytes, int, int, int]:
        """One equivocation is punished once, whichever pair of votes proves it."""
        v = self.vote_a
        return (v.validator, v.height, v.round, v.type)

    def well_formed(self) -> str | None:
        """Why these two votes are not an equivocation, or None (signatures checked elsewhere)."""
        a, b = self.vote_a, self.vote_b
        if (a.validator, a.height, a.round, a.type) != (b.validator, b.height, b.round, b.type):
            return "evidence votes differ in validator, height, round or type"
        if not a.block_id < b.block_id:
            return "evidence votes are not for different block ids in canonical order"
        return None


@dataclass(frozen=True, slots=True)
class Block:
    header: Header
    txs: tuple[bytes, ...]
    evidence: tuple[DuplicateVoteEvidence, ...]
    last_commit: Commit | None
    _id: bytes = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_id", self.header.block_id())

    def to_value(self) -> list[Value]:
        return [
            self.header.to_value(),
            list(self.txs),
            [e.to_value() for e in self.evidence],
            None if self.last_commit is None else self.last_commit.to_value(),
        ]

    @staticmethod
    def from_value(value: Value, tx_bytes_max: int = DEFAULT_LIMITS.bin_bytes_max) -> "Block":
        f = expect_list(value, 4, "block")
        txs = tuple(
            expect_bytes(t, "block.tx", size_max=tx_bytes_max)
            for t in expect_seq(f[1], "block.txs", TXS_MAX)
        )
        evidence = tuple(
            DuplicateVoteEvidence.from_value(e)
            for e in expect_seq(f[2], "block.evidence", EVIDENCE_MAX)
        )
        return Block(
            header=Header.from_value(f[0]),
            txs=txs,
            evidence=evidence,
            last_commit=None if f[3] is None else Commit.from_value(f[3]),
        )

    def id(self) -> bytes:
        return self._id


def txs_hash(txs: Sequence[bytes]) -> bytes:
    return sha256(_pack([tx_id(t) for t in txs]))


def evidence_hash(evidence: Sequence[DuplicateVoteEvidence]) -> bytes:
    return sha256(_pack([e.to_value() for e in evidence]))


@dataclass(frozen=True, slots=True)
class Proposal:
    """The proposer of (`height`, `round`) proposes `block`; `pol_round` is its validRound (-1)."""

    height: int
    round: int
    pol_round: int
    block: Block
    proposer: bytes
    signature: bytes

    def to_value(self) -> list[Value]:
        return [
            self.height,
            self.round,
            self.pol_round,
            self.block.to_value(),
            self.proposer,
            self.signature,
        ]

    @staticmethod
    def from_value(value: Value) -> "Proposal":
        f = expect_list(value, 6, "proposal")
        height = expect_int(f[0], "proposal.height", 1, HEIGHT_MAX)
        round_ = expect_int(f[1], "proposal.round", 0, ROUND_MAX)
        pol_round = expect_int(f[2], "proposal.pol_round", -1, ROUND_MAX)
        if pol_round >= round_:
            raise CodecError("proposal.pol_round must be below proposal.round")
        return Proposal(
            height=height,
            round=round_,
            pol_round=pol_round,
            block=Block.from_value(f[3]),
            proposer=expect_bytes(f[4], "proposal.proposer", PUBLIC_KEY_BYTES),
            signature=expect_bytes(f[5], "proposal.signature", SIGNATURE_BYTES),
        )


def proposal_sign_bytes(
    chain_id: str, height: int, round_: int, pol_round: int, block_id: bytes
) -> bytes:
    return _pack(["proposal", chain_id, height, round_, pol_round, block_id])


# ---- the consensus message envelope: what peers exchange -------------------------------------

MSG_PROPOSAL = 1
MSG_VOTE = 2
MSG_EVIDENCE = 3

ConsensusMessage = Proposal | Vote | DuplicateVoteEvidence


def encode_message(msg: ConsensusMessage) -> bytes:
    match msg:
        case Proposal():
            return encode([MSG_PROPOSAL, msg.to_value()])
        case Vote():
            return encode([MSG_VOTE, msg.to_value()])
        case DuplicateVoteEvidence():
            return encode([MSG_EVIDENCE, msg.to_value()])


def decode_message(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> ConsensusMessage:
    """Decode a peer's consensus message; any defect is a CodecError (penalize the sender)."""
    f = expect_list(decode(data, limits), 2, "message")
    kind = expect_int(f[0], "message.kind", MSG_PROPOSAL, MSG_EVIDENCE)
    if kind == MSG_PROPOSAL:
        return Proposal.from_value(f[1])
    if kind == MSG_VOTE:
        return Vote.from_value(f[1])
    return DuplicateVoteEvidence.from_value(f[1])


def encode_block(block: Block) -> bytes:
    return encode(block.to_value())


def decode_block(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Block:
    return Block.from_value(decode(data, limits))


def encode_commit(commit: Commit) -> bytes:
    return encode(commit.to_value())


def decode_commit(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Commit:
    return Commit.from_value(decode(data, limits))
