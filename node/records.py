"""Canonical encodings the node stores: block results (the WAL's record codec moved to
consensus/driver/walformat.py, shared with the simulator, and is re-exported here).

Block results (the `results` column of the store) keep what finalize_block was called with and
what it returned, so recovery can re-run the app without the consensus state of old heights:
    [block_info, [[code, reason], ...], app_hash, [[public_key, power], ...], events]
"""

from dataclasses import dataclass

from consensus.app import BlockInfo, Event, FinalizeResult, Misbehavior, VoteInfo
from consensus.codec import (
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
from consensus.driver.walformat import (
    WAL_LIMITS,
    ContentIds,
    LastSignedRecord,
    OwnMessage,
    OwnSigned,
    ProposalIds,
    TxRecord,
    WalInput,
    WalRecord,
    compact,
    decode_wal,
    encode_wal,
    inflate,
    wal_height,
)

__all__ = [
    "WAL_LIMITS",
    "BlockResults",
    "ContentIds",
    "LastSignedRecord",
    "OwnMessage",
    "OwnSigned",
    "ProposalIds",
    "TxRecord",
    "WalInput",
    "WalRecord",
    "compact",
    "decode_results",
    "decode_wal",
    "encode_results",
    "encode_wal",
    "inflate",
    "wal_height",
]


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
