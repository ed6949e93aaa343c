"""Which WAL records a restarted validator replays, and as what.

Theory of operation
-------------------
The store says which height is being decided (its last block + 1, from the ChainState stored with
that block).  Every input record of that height or later is replayed, in file order, wherever it
sits relative to EndHeight markers: a marker is written once a block is durably stored, which
can be after the next height's first records (the store writes in the background), so markers
only bound rotation, never selection.  Evidence records carry no consensus height and are all
replayed (the engine drops what is committed or out of its window).

Our own signed messages ("own") come back as ProposalReceived/VoteReceived right where they were
signed.  The engine is seeded with the newest durable LastSigned *before* replay, so replay can
never sign anything that differs from what left the process; the rules still move the engine
(lock, valid value, step) as they did, and the own records put back the votes and the proposal
the guard will not re-sign.  The result is the state before the crash, as far as it was durable.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from consensus.driver.walformat import (
    LastSignedRecord,
    OwnSigned,
    WalFormatError,
    decode_wal,
    inflate,
    parse_end_height,
    proposal_received,
    replayed_height,
)
from consensus.engine import Input, LastSigned, VoteReceived
from consensus.errors import CodecError
from consensus.types import Proposal, txs_hash


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    last_signed: LastSigned | None
    inputs: tuple[Input, ...]
    # Ids of blocks we proposed (their validity needs no app call: our app prepared them).
    own_blocks: frozenset[bytes]
    # Positions in `inputs` that are our own signed messages (relayed again after the restart).
    own_positions: frozenset[int] = frozenset()


def plan_replay(records: Sequence[bytes], height: int) -> ReplayPlan:
    """The replay of `records` (a whole log, oldest first) into an engine at `height`; raises
    WalFormatError if a record that passed its checksum does not decode."""
    try:
        items = inflate(decode_wal(p) for p in records if parse_end_height(p) is None)
    except CodecError as exc:
        raise WalFormatError(f"WAL record does not decode: {exc}") from None
    last_signed: LastSigned | None = None
    inputs: list[Input] = []
    own_blocks: set[bytes] = set()
    own_positions: set[int] = set()
    for item in items:
        match item:
            case LastSignedRecord(data):
                try:
                    last_signed = LastSigned.decode(data)
                except CodecError as exc:
                    raise WalFormatError(f"LastSigned record does not decode: {exc}") from None
            case OwnSigned(message):
                if message.height < height:
                    continue
                if isinstance(message, Proposal):
                    block = message.block
                    if block.header.data_hash != txs_hash(block.txs):
                        continue  # a WAL from before own proposals named their txs
                    own_blocks.add(block.id())
                    own_positions.add(len(inputs))
                    inputs.append(proposal_received(message))
                else:
                    own_positions.add(len(inputs))
                    inputs.append(VoteReceived(message))
            case _:
                h = replayed_height(item)
                if h is None or h >= height:
                    inputs.append(item)
    return ReplayPlan(last_signed, tuple(inputs), frozenset(own_blocks), frozenset(own_positions))
