"""Node wire messages: every kind round-trips; garbage is one CodecError, never a crash."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.errors import CodecError
from node.wire import (
    Blocks,
    CompactProposal,
    ConsensusMsg,
    GetBlocks,
    GetStatus,
    GetTxs,
    Message,
    Status,
    TxAnnounce,
    TxPush,
    Txs,
    decode_message,
    encode_message,
)

H = bytes(range(32))


@pytest.mark.parametrize(
    "msg",
    [
        TxPush(b"abc"),
        TxAnnounce((H, H)),
        ConsensusMsg(b"\x01\x02"),
        CompactProposal(b"prop", (H,)),
        Status(7, 1),
        GetTxs((H,)),
        Txs((b"a", b"bb")),
        GetBlocks(3, 10),
        Blocks(((b"blk", b"cmt"),)),
        GetStatus(),
    ],
)
def test_round_trip(msg: Message) -> None:
    data = encode_message(msg)
    assert decode_message(data, 1 << 20) == msg
    assert encode_message(decode_message(data, 1 << 20)) == data


@pytest.mark.parametrize(
    "msg",
    [
        TxAnnounce((b"short",)),
        GetBlocks(0, 1),
        GetBlocks(1, 10_000),
    ],
)
def test_out_of_bounds_fields_are_refused(msg: Message) -> None:
    with pytest.raises(CodecError):
        decode_message(encode_message(msg), 1 << 20)


def test_size_limit_applies_before_decoding() -> None:
    with pytest.raises(CodecError, match="exceeds"):
        decode_message(encode_message(TxPush(b"x" * 100)), 50)


@given(st.binary(max_size=200))
def test_garbage_is_a_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_message(data, 1 << 20)
