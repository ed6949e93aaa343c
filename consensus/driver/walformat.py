"""The consensus WAL's bytes: CRC32-framed records and the codec of what they carry.

One format for the daemon's file and the simulator's in-memory log, so a crash test of the
simulator exercises the same bytes (and the same torn-tail rules) as a node on disk.

Framing: a header (`FCWAL1\\n` plus zero padding to 8 bytes) followed by records

    u32 big-endian payload length | u32 big-endian CRC32(payload) | payload

`scan` classifies damage by where it is: a torn tail (a header cut short, a length past the end,
or a bad checksum on the very last record) is what a crash mid-append leaves, and is reported as
the offset where valid data ends; a bad checksum or impossible length with more data after it is
corruption in the middle and raises WalFormatError, because replaying around a hole could make
a validator sign something it already contradicted.

Payloads (canonical msgpack, tag first), except the EndHeight marker (`ENDHEIGHT_PREFIX` + u64):
    ["msg", consensus message bytes]          a peer's vote or evidence (or, in WALs written
                                              before "proposal" existed, a whole proposal)
    ["tx", tx bytes]                          a transaction a later record names by its id
    ["proposal", proposal bytes, [tx id], received_ms]
                                              a peer's proposal, its block's txs by id, and our
                                              clock reading when it arrived (-1: unknown;
                                              older WALs have no 4th item)
    ["timeout", height, round, step]
    ["content-ids", height, round, time_ms, [tx id]]
                                              the app's txs for our proposal + our clock reading
    ["content", height, round, time_ms, [tx]] the same, txs inline (older WALs)
    ["validated", height, block_id, valid]    the app's process_proposal answer
    ["own", consensus message bytes (, [tx id])]
                                              what we signed, fsynced before it left; a proposal
                                              without its txs, which follow by id
    ["ls", LastSigned bytes]                  the double-sign guard, fsynced with "own"

Why txs are separate records: a block of FL updates is 16 MiB, and a proposal record with its
txs inline was encoded twice into one buffer (message, then record) on every validator -- 20-35%
of a validator's time at scale went to building those buffers.  Each tx is written once per
height as its own record and the proposal names it by id; `inflate` puts them back together.
"""

import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from consensus.codec import (
    DecodeLimits,
    Value,
    decode,
    encode,
    expect_bool,
    expect_bytes,
    expect_int,
    expect_list,
    expect_seq,
    expect_str,
)
from consensus.crypto import HASH_BYTES
from consensus.engine import (
    BlockValidated,
    EvidenceReceived,
    ProposalContent,
    ProposalReceived,
    TimeoutFired,
    VoteReceived,
)
from consensus.errors import CodecError, ConsensusError
from consensus.txid import tx_id
from consensus.types import (
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    decode_message,
    encode_message,
)

MAGIC = b"FCWAL1\n\x00"
FRAME_HEADER = struct.Struct(">II")
ENDHEIGHT_PREFIX = b"\x00FC-ENDHEIGHT\x00"
_HEIGHT = struct.Struct(">Q")
RECORD_BYTES_MAX = 256 * 1024 * 1024

WAL_LIMITS = DecodeLimits(
    message_bytes_max=256 * 1024 * 1024,
    bin_bytes_max=256 * 1024 * 1024,
    str_bytes_max=64 * 1024,
    array_items_max=1_000_000,
)


class WalFormatError(ConsensusError):
    """The log is corrupt in the middle (not a torn tail): the validator must not start."""


# ---- framing ---------------------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    if len(payload) > RECORD_BYTES_MAX:
        raise WalFormatError(f"WAL record of {len(payload)} bytes exceeds {RECORD_BYTES_MAX}")
    return FRAME_HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def end_height_payload(height: int) -> bytes:
    return ENDHEIGHT_PREFIX + _HEIGHT.pack(height)


def parse_end_height(payload: bytes) -> int | None:
    if len(payload) == len(ENDHEIGHT_PREFIX) + _HEIGHT.size and payload.startswith(
        ENDHEIGHT_PREFIX
    ):
        (height,) = _HEIGHT.unpack_from(payload, len(ENDHEIGHT_PREFIX))
        return int(height)
    return None


def scan(data: bytes, where: str) -> tuple[list[bytes], int]:
    """The records of `data` and the offset where valid data ends (== len(data) if undamaged);
    raises WalFormatError (naming `where` and the offset) on corruption in the middle."""
    if len(data) < len(MAGIC):
        return [], 0
    if data[: len(MAGIC)] != MAGIC:
        raise WalFormatError(f"{where}: not a fedchain WAL (bad magic)")
    records: list[bytes] = []
    offset = len(MAGIC)
    end = len(data)
    while offset < end:
        if end - offset < FRAME_HEADER.size:
            return records, offset  # torn header
        length, crc = FRAME_HEADER.unpack_from(data, offset)
        body_start = offset + FRAME_HEADER.size
        if length > RECORD_BYTES_MAX:
            if body_start >= end:
                return records, offset
            raise WalFormatError(
                f"{where}: record at offset {offset} declares {length} bytes "
                f"(max {RECORD_BYTES_MAX}); the log is corrupt, refusing to start"
            )
        body_end = body_start + length
        if body_end > end:
            return records, offset  # torn body
        payload = data[body_start:body_end]
        if zlib.crc32(payload) != crc:
            if body_end == end:
                return records, offset  # torn last record
            raise WalFormatError(
                f"{where}: checksum mismatch in the record at offset {offset} with "
                f"{end - body_end} bytes after it; the log is corrupt in the middle, refusing "
                "to start (move the file away only if you know this validator never signed "
                "at the current height)"
            )
        records.append(payload)
        offset = body_end
    return records, offset


# ---- records ---------------------------------------------------------------------------------

WalInput = (
    ProposalReceived | VoteReceived | EvidenceReceived | TimeoutFired | ProposalContent
) | BlockValidated


def proposal_received(proposal: Proposal, received_ms: int = -1) -> ProposalReceived:
    return ProposalReceived(proposal, received_ms)


def received_ms(inp: ProposalReceived) -> int:
    return inp.received_ms


@dataclass(frozen=True, slots=True)
class TxRecord:
    tx: bytes


@dataclass(frozen=True, slots=True)
class ProposalIds:
    """A peer's proposal with its block's txs replaced by their ids (see `inflate`)."""

    proposal: Proposal
    tx_ids: tuple[bytes, ...]
    received_ms: int = -1


@dataclass(frozen=True, slots=True)
class ContentIds:
    """ProposalContent with its txs replaced by their ids (see `inflate`)."""

    height: int
    round: int
    time_ms: int
    tx_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class OwnMessage:
    """A message we signed; a proposal is stored without its txs, named by `tx_ids`."""

    data: bytes
    tx_ids: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class LastSignedRecord:
    """The engine's LastSigned guard (its canonical bytes), persisted before a signature leaves."""

    data: bytes


@dataclass(frozen=True, slots=True)
class OwnSigned:
    """An inflated OwnMessage: the proposal (with its txs) or vote we signed."""

    message: Proposal | Vote


WalRecord = WalInput | OwnMessage | LastSignedRecord | TxRecord | ProposalIds | ContentIds
Replayed = WalInput | OwnSigned | LastSignedRecord


def compact(inp: WalInput) -> tuple[tuple[bytes, ...], WalRecord]:
    """The txs an input carries and the record that names them by id instead (the input itself
    if it carries none)."""
    match inp:
        case ProposalReceived(proposal):
            txs = proposal.block.txs
            bare = replace(proposal, block=replace(proposal.block, txs=()))
            return txs, ProposalIds(bare, tuple(tx_id(tx) for tx in txs), received_ms(inp))
        case ProposalContent(height, round_, time_ms, txs):
            return txs, ContentIds(height, round_, time_ms, tuple(tx_id(tx) for tx in txs))
    return (), inp


def own_record(
    message: Proposal | Vote | DuplicateVoteEvidence,
) -> tuple[tuple[bytes, ...], OwnMessage]:
    """What we signed as a record (and the txs it names, for a proposal)."""
    if isinstance(message, Proposal):
        block = message.block
        bare = encode_message(replace(message, block=replace(block, txs=())))
        return block.txs, OwnMessage(bare, tuple(tx_id(tx) for tx in block.txs))
    return (), OwnMessage(encode_message(message))


def inflate(records: Iterable[WalRecord]) -> list[Replayed]:
    """Replay order with TxRecords consumed and compact records given their txs back; raises
    CodecError if a record names a tx not written before it (a WAL this node did not write)."""
    txs: dict[bytes, bytes] = {}

    def lookup(ids: tuple[bytes, ...]) -> tuple[bytes, ...]:
        missing = sum(1 for i in ids if i not in txs)
        if missing:
            raise CodecError(f"wal: {missing} txs named by a proposal record were not written")
        return tuple(txs[i] for i in ids)

    out: list[Replayed] = []
    for record in records:
        match record:
            case TxRecord(tx):
                txs[tx_id(tx)] = tx
            case ProposalIds(proposal, ids, stamp):
                full = replace(proposal, block=replace(proposal.block, txs=lookup(ids)))
                out.append(proposal_received(full, stamp))
            case ContentIds(height, round_, time_ms, ids):
                out.append(ProposalContent(height, round_, time_ms, lookup(ids)))
            case OwnMessage(data, ids):
                msg = decode_message(data, WAL_LIMITS)
                if isinstance(msg, Proposal):
                    out.append(OwnSigned(replace(msg, block=replace(msg.block, txs=lookup(ids)))))
                elif isinstance(msg, Vote):
                    out.append(OwnSigned(msg))
                # own evidence is gossip, not state: nothing to replay
            case _:
                out.append(record)
    return out


def encode_wal(record: WalRecord) -> bytes:
    value: Value
    match record:
        case ProposalReceived(proposal):
            value = ["msg", encode_message(proposal)]
        case VoteReceived(vote):
            value = ["msg", encode_message(vote)]
        case EvidenceReceived(evidence):
            value = ["msg", encode_message(evidence)]
        case TimeoutFired(height, round_, step):
            value = ["timeout", height, round_, step]
        case ProposalContent(height, round_, time_ms, txs):
            value = ["content", height, round_, time_ms, list(txs)]
        case TxRecord(tx):
            value = ["tx", tx]
        case ProposalIds(proposal, ids, stamp):
            value = ["proposal", encode_message(proposal), list(ids), stamp]
        case ContentIds(height, round_, time_ms, ids):
            value = ["content-ids", height, round_, time_ms, list(ids)]
        case BlockValidated(height, block_id, valid):
            value = ["validated", height, block_id, valid]
        case OwnMessage(data, ids):
            value = ["own", data, list(ids)] if ids else ["own", data]
        case LastSignedRecord(data):
            value = ["ls", data]
    return encode(value)


def decode_wal(data: bytes) -> WalRecord:
    """Raises CodecError: a record that passed its CRC but does not decode is corruption."""
    value = decode(data, WAL_LIMITS)
    if not isinstance(value, list) or not value:
        raise CodecError("wal record: expected a tagged array")
    tag = expect_str(value[0], "wal tag", 16)
    match tag:
        case "msg":
            _, raw = expect_list(value, 2, "wal msg")
            msg = decode_message(expect_bytes(raw, "wal msg"), WAL_LIMITS)
            match msg:
                case Proposal():
                    return ProposalReceived(msg)
                case Vote():
                    return VoteReceived(msg)
                case DuplicateVoteEvidence():
                    return EvidenceReceived(msg)
        case "timeout":
            _, h, r, s = expect_list(value, 4, "wal timeout")
            return TimeoutFired(
                expect_int(h, "height"), expect_int(r, "round"), expect_int(s, "step")
            )
        case "content":
            _, h, r, t, txs = expect_list(value, 5, "wal content")
            return ProposalContent(
                expect_int(h, "height"),
                expect_int(r, "round"),
                expect_int(t, "time_ms"),
                tuple(expect_bytes(x, "tx") for x in expect_seq(txs, "txs", 1_000_000)),
            )
        case "tx":
            _, raw = expect_list(value, 2, "wal tx")
            return TxRecord(expect_bytes(raw, "tx"))
        case "proposal":
            items = expect_seq(value, "wal proposal", 4)
            if len(items) not in (3, 4):
                raise CodecError("wal proposal: expected 3 or 4 items")
            msg = decode_message(expect_bytes(items[1], "wal proposal"), WAL_LIMITS)
            if not isinstance(msg, Proposal) or msg.block.txs:
                raise CodecError("wal proposal: expected a proposal without txs")
            stamp = expect_int(items[3], "received_ms", -1) if len(items) == 4 else -1
            return ProposalIds(msg, _ids(items[2]), stamp)
        case "content-ids":
            _, h, r, t, ids = expect_list(value, 5, "wal content-ids")
            return ContentIds(
                expect_int(h, "height"), expect_int(r, "round"), expect_int(t, "time_ms"), _ids(ids)
            )
        case "validated":
            _, h, b, ok = expect_list(value, 4, "wal validated")
            return BlockValidated(
                expect_int(h, "height"), expect_bytes(b, "block_id"), expect_bool(ok, "valid")
            )
        case "own":
            items = expect_seq(value, "wal own", 3)
            if len(items) not in (2, 3):
                raise CodecError("wal own: expected 2 or 3 items")
            ids = _ids(items[2]) if len(items) == 3 else ()
            return OwnMessage(expect_bytes(items[1], "own"), ids)
        case "ls":
            _, raw = expect_list(value, 2, "wal ls")
            return LastSignedRecord(expect_bytes(raw, "ls"))
    raise CodecError(f"wal record: unknown tag {tag!r}")


def _ids(value: Value) -> tuple[bytes, ...]:
    return tuple(
        expect_bytes(i, "tx id", HASH_BYTES) for i in expect_seq(value, "tx ids", 1_000_000)
    )


def replayed_height(record: Replayed | WalRecord) -> int | None:
    """The consensus height a record belongs to (None: evidence, txs, guard records)."""
    match record:
        case ProposalReceived(proposal) | ProposalIds(proposal, _, _):
            return proposal.height
        case OwnSigned(message):
            return message.height
        case ContentIds(height, _, _, _):
            return height
        case VoteReceived(vote):
            return vote.height
        case TimeoutFired(height, _, _) | ProposalContent(height, _, _, _):
            return height
        case BlockValidated(height, _, _):
            return height
        case _:
            return None


wal_height = replayed_height


def framed(payloads: Sequence[bytes]) -> bytes:
    """A whole log holding `payloads` (header included)."""
    return MAGIC + b"".join(frame(p) for p in payloads)
