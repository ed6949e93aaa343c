"""Canonical encodings the node stores: WAL records of engine inputs, and block results.

WAL payloads (canonical msgpack, tag first):
    ["msg", consensus message bytes]          a peer's vote or evidence (or, in WALs written
                                              before "proposal" existed, a whole proposal)
    ["tx", tx bytes]                          a transaction a later record names by its id
    ["proposal", proposal bytes, [tx id]]     a peer's proposal, its block's txs by id
    ["timeout", height, round, step]
    ["content-ids", height, round, time_ms, [tx id]]
                                              the app's txs for our proposal + our clock reading
    ["content", height, round, time_ms, [tx]] the same, txs inline (older WALs)
    ["validated", height, block_id, valid]    the app's process_proposal answer
    ["own", consensus message bytes]          what we signed, fsynced before it left (audit;
                                              a proposal without its txs: its block id is the
                                              header's hash, which commits to them)
    ["ls", LastSigned bytes]                  the double-sign guard, fsynced with "own"
Replaying the inputs into a fresh engine for the same height re-derives the same state and
the same signatures; "own" and "ls" records are not inputs and are skipped on replay (the
newest "ls" record anywhere in the file seeds the engine's guard first).

Why txs are separate records: a block of FL updates is 16 MiB, and a proposal record with its
txs inline was encoded twice into one buffer (message, then record) on every validator, the
proposer writing it three times (content, own message, and the message's encoding) -- 20-35%
of a validator's time at scale went to building those buffers.  Each tx is now written once per
height as its own record and the proposal names it by id; `inflate` puts them back together on
replay.  The writer writes a tx before the first record that names it, again after every
EndHeight marker (replay starts at one).

Block results (the `results` column of the store) keep what finalize_block was called with and
what it returned, so recovery can re-run the app without the consensus state of old heights:
    [block_info, [[code, reason], ...], app_hash, [[public_key, power], ...], events]
"""

from collections.abc import Iterable
from dataclasses import dataclass, replace

from consensus.app import BlockInfo, Event, FinalizeResult, Misbehavior, VoteInfo
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
from consensus.errors import CodecError
from consensus.txid import tx_id
from consensus.types import (
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    decode_message,
    encode_message,
)

WAL_LIMITS = DecodeLimits(
    message_bytes_max=256 * 1024 * 1024,
    bin_bytes_max=256 * 1024 * 1024,
    str_bytes_max=64 * 1024,
    array_items_max=1_000_000,
)

WalInput = (
    ProposalReceived
    | VoteReceived
    | EvidenceReceived
    | TimeoutFired
    | ProposalContent
    | (BlockValidated)
)


@dataclass(frozen=True, slots=True)
class TxRecord:
    tx: bytes


@dataclass(frozen=True, slots=True)
class ProposalIds:
    """A peer's proposal with its block's txs replaced by their ids (see `inflate`)."""

    proposal: Proposal
    tx_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ContentIds:
    """ProposalContent with its txs replaced by their ids (see `inflate`)."""

    height: int
    round: int
    time_ms: int
    tx_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class OwnMessage:
    data: bytes


@dataclass(frozen=True, slots=True)
class LastSignedRecord:
    """The engine's LastSigned guard (its canonical bytes), persisted before a signature leaves."""

    data: bytes


WalRecord = WalInput | OwnMessage | LastSignedRecord | TxRecord | ProposalIds | ContentIds


def compact(inp: WalInput) -> tuple[tuple[bytes, ...], WalRecord]:
    """The txs an input carries and the record that names them by id instead (the input itself
    if it carries none)."""
    match inp:
        case ProposalReceived(proposal):
            txs = proposal.block.txs
            bare = replace(proposal, block=replace(proposal.block, txs=()))
            return txs, ProposalIds(bare, tuple(tx_id(tx) for tx in txs))
        case ProposalContent(height, round_, time_ms, txs):
            return txs, ContentIds(height, round_, time_ms, tuple(tx_id(tx) for tx in txs))
    return (), inp


def inflate(
    records: Iterable[WalRecord],
) -> list[WalInput | OwnMessage | LastSignedRecord]:
    """Replay order with TxRecords consumed and compact records given their txs back; raises
    CodecError if a record names a tx not written before it (a WAL this node did not write)."""
    txs: dict[bytes, bytes] = {}

    def lookup(ids: tuple[bytes, ...]) -> tuple[bytes, ...]:
        missing = sum(1 for i in ids if i not in txs)
        if missing:
            raise CodecError(f"wal: {missing} txs named by a proposal record were not written")
        return tuple(txs[i] for i in ids)

    out: list[WalInput | OwnMessage | LastSignedRecord] = []
    for record in records:
        match record:
            case TxRecord(tx):
                txs[tx_id(tx)] = tx
            case ProposalIds(proposal, ids):
                full = replace(proposal, block=replace(proposal.block, txs=lookup(ids)))
                out.append(ProposalReceived(full))
            case ContentIds(height, round_, time_ms, ids):
                out.append(ProposalContent(height, round_, time_ms, lookup(ids)))
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
        case ProposalIds(proposal, ids):
            value = ["proposal", encode_message(proposal), list(ids)]
        case ContentIds(height, round_, time_ms, ids):
            value = ["content-ids", height, round_, time_ms, list(ids)]
        case BlockValidated(height, block_id, valid):
            value = ["validated", height, block_id, valid]
        case OwnMessage(data):
            value = ["own", data]
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
            _, raw, ids = expect_list(value, 3, "wal proposal")
            msg = decode_message(expect_bytes(raw, "wal proposal"), WAL_LIMITS)
            if not isinstance(msg, Proposal) or msg.block.txs:
                raise CodecError("wal proposal: expected a proposal without txs")
            return ProposalIds(msg, _ids(ids))
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
            _, raw = expect_list(value, 2, "wal own")
            return OwnMessage(expect_bytes(raw, "own"))
        case "ls":
            _, raw = expect_list(value, 2, "wal ls")
            return LastSignedRecord(expect_bytes(raw, "ls"))
    raise CodecError(f"wal record: unknown tag {tag!r}")


def _ids(value: Value) -> tuple[bytes, ...]:
    return tuple(
        expect_bytes(i, "tx id", HASH_BYTES) for i in expect_seq(value, "tx ids", 1_000_000)
    )


def wal_height(record: WalRecord) -> int | None:
    match record:
        case ProposalReceived(proposal) | ProposalIds(proposal, _):
            return proposal.height
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


# ---- block results ---------------------------------------------------------------------------


def _info_value(info: BlockInfo) -> list[Value]:
    return [
        info.chain_id,
        info.height,
        info.time_ms,
        info.proposer,
        info.block_hash,
        [[v.public_key, v.power, v.signed] for v in info.last_commit],
        [[m.kind, m.public_key, m.height, m.power] for m in info.misbehavior],
    ]


def _info_from(value: Value) -> BlockInfo:
    f = expect_list(value, 7, "block_info")
    last_commit = []
    for item in expect_seq(f[5], "last_commit", 100_000):
        pk, power, signed = expect_list(item, 3, "vote_info")
        last_commit.append(
            VoteInfo(expect_bytes(pk, "pk"), expect_int(power, "power"), expect_bool(signed, "s"))
        )
    misbehavior = []
    for item in expect_seq(f[6], "misbehavior", 100_000):
        kind, pk, height, power = expect_list(item, 4, "misbehavior")
        misbehavior.append(
            Misbehavior(
                expect_str(kind, "kind"),
                expect_bytes(pk, "pk"),
                expect_int(height, "height"),
                expect_int(power, "power"),
            )
        )
    return BlockInfo(
        chain_id=expect_str(f[0], "chain_id", 64),
        height=expect_int(f[1], "height"),
        time_ms=expect_int(f[2], "time_ms"),
        proposer=expect_bytes(f[3], "proposer"),
        block_hash=expect_bytes(f[4], "block_hash"),
        last_commit=tuple(last_commit),
        misbehavior=tuple(misbehavior),
    )


def _event_value(event: Event) -> list[Value]:
    return [event.kind, [[k, v] for k, v in event.attributes]]


@dataclass(frozen=True, slots=True)
class BlockResults:
    info: BlockInfo
    tx_results: tuple[tuple[int, str], ...]
    app_hash: bytes
    validator_updates: tuple[tuple[bytes, int], ...]
    events: tuple[Event, ...]


def encode_results(info: BlockInfo, result: FinalizeResult) -> bytes:
    return encode(
        [
            _info_value(info),
            [[r.code, r.reason] for r in result.tx_results],
            result.app_hash,
            [[u.public_key, u.power] for u in result.validator_updates],
            [_event_value(e) for e in result.events]
            + [_event_value(e) for r in result.tx_results for e in r.events],
        ]
    )


def decode_results(data: bytes) -> BlockResults:
    f = expect_list(decode(data, WAL_LIMITS), 5, "results")
    txs = []
    for item in expect_seq(f[1], "tx_results", 1_000_000):
        code, reason = expect_list(item, 2, "tx_result")
        txs.append((expect_int(code, "code"), expect_str(reason, "reason", 64 * 1024)))
    updates = []
    for item in expect_seq(f[3], "validator_updates", 100_000):
        pk, power = expect_list(item, 2, "update")
        updates.append((expect_bytes(pk, "pk"), expect_int(power, "power")))
    events = []
    for item in expect_seq(f[4], "events", 1_000_000):
        kind, attrs = expect_list(item, 2, "event")
        pairs = []
        for attr in expect_seq(attrs, "attributes", 1_000):
            k, v = expect_list(attr, 2, "attribute")
            pairs.append((expect_str(k, "key", 256), expect_str(v, "value", 64 * 1024)))
        events.append(Event(expect_str(kind, "kind", 256), tuple(pairs)))
    return BlockResults(
        info=_info_from(f[0]),
        tx_results=tuple(txs),
        app_hash=expect_bytes(f[2], "app_hash"),
        validator_updates=tuple(updates),
        events=tuple(events),
    )
