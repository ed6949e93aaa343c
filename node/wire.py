"""The node's own messages between peers, in canonical msgpack, with hard size limits.

Consensus messages (proposals, votes) are the engine's canonical bytes wrapped in a kind tag;
everything else here is the shell's business:

    ["tx", tx]                          a small transaction, pushed
    ["tx_ann", [hash, ...]]             large transactions, announced; pull with GetTxs
    ["cons", bytes]                     an engine message (vote, evidence, ...)
    ["cprop", proposal, [hash, ...]]    a compact proposal: the signed proposal whose block's
                                        txs were replaced by their hashes (rebuilt locally)
    ["status", height, base]            my stored heights (drives block sync)

Request/response (one request per stream):
    ["get_txs", [hash, ...]]        -> ["txs", [tx, ...]]          (only those held)
    ["get_blocks", from, count]     -> ["blocks", [[block, commit], ...]]
    ["get_status"]                  -> ["status", height, base]
A decode failure is a CodecError: the peer sent garbage and is penalized by the caller.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from consensus.codec import (
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
from consensus.errors import CodecError

HASH_BYTES = 32
HASHES_MAX = 20_000
BLOCKS_PER_REQUEST_MAX = 256


@dataclass(frozen=True, slots=True)
class TxPush:
    tx: bytes


@dataclass(frozen=True, slots=True)
class TxAnnounce:
    hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ConsensusMsg:
    data: bytes


@dataclass(frozen=True, slots=True)
class CompactProposal:
    proposal: bytes
    tx_hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Status:
    height: int
    base: int


@dataclass(frozen=True, slots=True)
class GetTxs:
    hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Txs:
    txs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class GetBlocks:
    start: int
    count: int


@dataclass(frozen=True, slots=True)
class Blocks:
    blocks: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class GetStatus:
    pass


Message = (
    TxPush
    | TxAnnounce
    | ConsensusMsg
    | CompactProposal
    | Status
    | GetTxs
    | Txs
    | GetBlocks
    | Blocks
    | GetStatus
)


def encode_message(msg: Message) -> bytes:
    value: Value
    match msg:
        case TxPush(tx):
            value = ["tx", tx]
        case TxAnnounce(hashes):
            value = ["tx_ann", list(hashes)]
        case ConsensusMsg(data):
            value = ["cons", data]
        case CompactProposal(proposal, hashes):
            value = ["cprop", proposal, list(hashes)]
        case Status(height, base):
            value = ["status", height, base]
        case GetTxs(hashes):
            value = ["get_txs", list(hashes)]
        case Txs(txs):
            value = ["txs", list(txs)]
        case GetBlocks(start, count):
            value = ["get_blocks", start, count]
        case Blocks(blocks):
            value = ["blocks", [[b, c] for b, c in blocks]]
        case GetStatus():
            value = ["get_status"]
    return encode(value)


def _hashes(value: Value, what: str) -> tuple[bytes, ...]:
    items = expect_seq(value, what, HASHES_MAX)
    return tuple(expect_bytes(h, what, size=HASH_BYTES) for h in items)


def decode_message(data: bytes, bytes_max: int) -> Message:
    limits = DecodeLimits(
        message_bytes_max=bytes_max,
        bin_bytes_max=bytes_max,
        str_bytes_max=64,
        array_items_max=HASHES_MAX,
    )
    value = decode(data, limits)
    if not isinstance(value, list) or not value:
        raise CodecError("message: expected a tagged array")
    kind = expect_str(value[0], "message kind", 16)
    match kind:
        case "tx":
            (_, tx) = expect_list(value, 2, "tx")
            return TxPush(expect_bytes(tx, "tx"))
        case "tx_ann":
            (_, hashes) = expect_list(value, 2, "tx_ann")
            return TxAnnounce(_hashes(hashes, "tx_ann hashes"))
        case "cons":
            (_, body) = expect_list(value, 2, "cons")
            return ConsensusMsg(expect_bytes(body, "cons"))
        case "cprop":
            (_, proposal, hashes) = expect_list(value, 3, "cprop")
            return CompactProposal(expect_bytes(proposal, "proposal"), _hashes(hashes, "cprop"))
        case "status":
            (_, height, base) = expect_list(value, 3, "status")
            return Status(expect_int(height, "height", 0), expect_int(base, "base", 0))
        case "get_txs":
            (_, hashes) = expect_list(value, 2, "get_txs")
            return GetTxs(_hashes(hashes, "get_txs hashes"))
        case "txs":
            (_, txs) = expect_list(value, 2, "txs")
            return Txs(tuple(expect_bytes(t, "tx") for t in expect_seq(txs, "txs", HASHES_MAX)))
        case "get_blocks":
            (_, start, count) = expect_list(value, 3, "get_blocks")
            return GetBlocks(
                expect_int(start, "start", 1), expect_int(count, "count", 1, BLOCKS_PER_REQUEST_MAX)
            )
        case "blocks":
            (_, items) = expect_list(value, 2, "blocks")
            pairs = []
            for item in expect_seq(items, "blocks", BLOCKS_PER_REQUEST_MAX):
                block, commit = expect_list(item, 2, "block pair")
                pairs.append((expect_bytes(block, "block"), expect_bytes(commit, "commit")))
            return Blocks(tuple(pairs))
        case "get_status":
            expect_list(value, 1, "get_status")
            return GetStatus()
        case _:
            raise CodecError(f"message: unknown kind {kind!r}")


def txs_bytes(txs: Sequence[bytes]) -> int:
    return sum(len(t) for t in txs)
