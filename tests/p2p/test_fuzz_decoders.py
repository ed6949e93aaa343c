"""Hypothesis fuzzing of every decoder: arbitrary bytes give a value or a typed error (a
RemoteError subclass), never anything else; encoders round-trip; declared lengths are
checked against limits before anything is buffered or allocated."""

import asyncio
import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.p2p.budget import Ledger
from node.p2p.buffer import ReadBuffer
from node.p2p.errors import DecodeError, HandshakeError, LimitError, MuxerError, RemoteError
from node.p2p.gossipsub.largerpc import HEAD_BYTES, assemble, locate_payload
from node.p2p.gossipsub.rpc import Control, IHave, Prune, PubMessage, Rpc, RpcLimits
from node.p2p.identify import IdentifyMessage
from node.p2p.multiaddr import Multiaddr
from node.p2p.multistream import decode_message, encode_message
from node.p2p.noise import CipherState, Handshake, HandshakePayload, split_frames
from node.p2p.peer_id import PeerId, b58decode, b58encode, unmarshal_public_key
from node.p2p.protobuf import iter_fields
from node.p2p.varint import decode_uvarint, encode_uvarint
from node.p2p.yamux import FrameParser, Yamux, encode_header
from node.p2p.yamux import Limits as YamuxLimits

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
blobs = st.binary(max_size=512)


@FUZZ
@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_varint_round_trip(value: int) -> None:
    encoded = encode_uvarint(value)
    assert decode_uvarint(encoded) == (value, len(encoded))
    assert decode_uvarint(encoded[:-1]) is None


@FUZZ
@given(blobs)
def test_varint_garbage(data: bytes) -> None:
    try:
        decoded = decode_uvarint(data)
    except DecodeError:
        return
    if decoded is not None:
        value, end = decoded
        assert encode_uvarint(value) == data[:end]  # only minimal encodings are accepted


@FUZZ
@given(blobs)
def test_protobuf_garbage(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        list(iter_fields(data))


@FUZZ
@given(st.text(max_size=200).filter(lambda s: "\n" not in s))
def test_multistream_round_trip(line: str) -> None:
    encoded = encode_message(line)
    assert decode_message(encoded) == (line, len(encoded))


@FUZZ
@given(blobs)
def test_multistream_garbage(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_message(data)


def test_multistream_length_checked_before_buffering() -> None:
    with pytest.raises(LimitError):
        decode_message(encode_uvarint(10**9))  # no body needed to refuse it


@FUZZ
@given(blobs)
def test_noise_payload_and_frames_garbage(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        HandshakePayload.decode(data)
    frames, used = split_frames(data)
    assert used <= len(data)
    assert all(0 <= a <= b <= used for a, b in frames)


@FUZZ
@given(blobs, blobs)
def test_noise_handshake_messages_garbage(message: bytes, message3: bytes) -> None:
    responder = Handshake(False, b"\x01" * 32, b"\x02" * 32)
    try:
        responder.read_message_1(message)
        responder.write_message_2(b"payload")
        responder.read_message_3(message3)
    except HandshakeError:
        pass
    initiator = Handshake(True, b"\x03" * 32, b"\x04" * 32)
    initiator.write_message_1()
    with pytest.raises(HandshakeError):
        initiator.read_message_2(message)


@FUZZ
@given(blobs)
def test_noise_transport_garbage(data: bytes) -> None:
    with pytest.raises(HandshakeError):
        CipherState(b"\x05" * 32).decrypt(data)


# Chunks that mostly start like a yamux header (version 0, a known type), then garbage.
yamux_chunks = st.lists(
    st.one_of(blobs, st.tuples(st.integers(0, 4), blobs).map(lambda t: bytes((0, t[0])) + t[1])),
    max_size=8,
)


@FUZZ
@given(yamux_chunks)
def test_yamux_parser_garbage(chunks: list[bytes]) -> None:
    parser = FrameParser(data_bytes_max=1 << 16)
    try:
        for chunk in chunks:
            for frame in parser.feed(chunk):
                assert len(frame.data) == (frame.length if frame.type == 0 else 0)
                assert frame.length <= (1 << 16) or frame.type != 0
    except (MuxerError, LimitError):
        pass


@FUZZ
@given(st.integers(0, 3), st.integers(0, 15), st.integers(0, 2**32 - 1), st.binary(max_size=64))
def test_yamux_round_trip(frame_type: int, flags: int, stream_id: int, data: bytes) -> None:
    length = len(data) if frame_type == 0 else 7
    raw = encode_header(frame_type, flags, stream_id, length) + (data if frame_type == 0 else b"")
    parser = FrameParser(data_bytes_max=1 << 16)
    frames = [f for i in range(len(raw)) for f in parser.feed(raw[i : i + 1])]
    assert len(frames) == 1
    frame = frames[0]
    assert (frame.type, frame.flags, frame.stream_id, frame.length) == (
        frame_type,
        flags,
        stream_id,
        length,
    )
    assert bytes(frame.data) == (data if frame_type == 0 else b"")


def test_yamux_length_checked_before_buffering() -> None:
    parser = FrameParser(data_bytes_max=1 << 20)
    with pytest.raises(LimitError):
        parser.feed(encode_header(0, 0, 1, 2**32 - 1))  # header only: refused at once


@FUZZ
@given(blobs)
def test_rpc_garbage(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        Rpc.decode(data, RpcLimits())


topics = st.text(min_size=1, max_size=20)
ids = st.binary(min_size=1, max_size=40)


@FUZZ
@given(
    st.lists(st.tuples(st.booleans(), topics), max_size=4),
    st.lists(
        st.builds(
            PubMessage,
            topics,
            st.binary(min_size=1, max_size=100),
            st.binary(max_size=40),
            st.binary(max_size=8),
            st.binary(max_size=64),
        ),
        max_size=4,
    ),
    st.builds(
        Control,
        st.lists(st.builds(IHave, topics, st.lists(ids, max_size=3).map(tuple)), max_size=3).map(
            tuple
        ),
        st.lists(ids, max_size=3).map(tuple),
        st.lists(topics, max_size=3).map(tuple),
        st.lists(st.builds(Prune, topics, st.integers(1, 600)), max_size=3).map(tuple),
        st.lists(ids, max_size=3).map(tuple),
    ),
)
def test_rpc_round_trip(
    subs: list[tuple[bool, str]], messages: list[PubMessage], control: Control
) -> None:
    rpc = Rpc(tuple(subs), tuple(messages), None if control.is_empty() else control)
    assert Rpc.decode(rpc.encode(), RpcLimits()) == rpc


def test_rpc_limits_enforced_while_decoding() -> None:
    rpc = Rpc(messages=tuple(PubMessage("t", b"x") for _ in range(10)))
    with pytest.raises(LimitError):
        Rpc.decode(rpc.encode(), RpcLimits(messages_max=9))


@FUZZ
@given(blobs)
def test_identify_multiaddr_and_peer_id_garbage(data: bytes) -> None:
    for decode in (IdentifyMessage.decode, Multiaddr.from_bytes, PeerId.from_bytes):
        with contextlib.suppress(DecodeError):
            decode(data)
    with contextlib.suppress(DecodeError):
        unmarshal_public_key(data)


@FUZZ
@given(st.text(max_size=80))
def test_text_forms_garbage(text: str) -> None:
    for parse in (Multiaddr.parse, PeerId.from_base58):
        with contextlib.suppress(DecodeError):
            parse(text)


@FUZZ
@given(st.binary(max_size=64))
def test_base58_round_trip(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


def test_stream_frame_length_checked_before_reading_the_body() -> None:
    async def scenario() -> None:
        buffer = ReadBuffer()
        buffer.feed(encode_uvarint(1 << 30))  # declares 1 GiB, sends nothing more
        with pytest.raises(LimitError):
            await buffer.read_uvarint_frame(bytes_max=1 << 20)

    asyncio.run(scenario())


def test_every_decoder_error_is_a_remote_error() -> None:
    for error in (DecodeError, LimitError, HandshakeError, MuxerError):
        assert issubclass(error, RemoteError)


@FUZZ
@given(
    st.binary(max_size=40),
    st.binary(min_size=1, max_size=3000),
    st.binary(max_size=8),
    st.binary(max_size=64),
    st.lists(st.builds(PubMessage, topics, st.binary(min_size=1, max_size=50)), max_size=3),
    st.lists(st.tuples(st.booleans(), topics), max_size=3),
)
def test_large_rpc_fast_path_decodes_like_the_general_decoder(
    author: bytes,
    data: bytes,
    seqno: bytes,
    signature: bytes,
    others: list[PubMessage],
    subs: list[tuple[bool, str]],
) -> None:
    first = PubMessage("t", data, author, seqno, signature)
    rpc = Rpc(tuple(subs), (first, *others))
    # Our encoder writes messages before subscriptions only if told to; put publish first,
    # as a large RPC from any implementation that batches one message would.
    frame = b"".join([Rpc(messages=(first,)).encode(), Rpc(tuple(subs), tuple(others)).encode()])
    layout = locate_payload(frame[:HEAD_BYTES], len(frame))
    assert layout is not None
    rebuilt = assemble(
        layout,
        frame[: layout.data_start],
        frame[layout.data_start : layout.data_end],
        frame[layout.data_end :],
        RpcLimits(),
    )
    general = Rpc.decode(frame, RpcLimits())
    assert rebuilt == general
    assert rebuilt.messages[0] == first
    assert set(rebuilt.subscriptions) == set(rpc.subscriptions)


@FUZZ
@given(blobs, st.integers(0, 1 << 20))
def test_large_rpc_locator_garbage(head: bytes, frame_length: int) -> None:
    try:
        layout = locate_payload(head, frame_length)
    except DecodeError:
        return
    if layout is not None:
        assert layout.data_end <= layout.message_end <= frame_length


# -- the yamux state machine -------------------------------------------------------------------
# Plausible frames (any type, flags, a few stream ids, small lengths, payload of the declared
# length or not), mixed with raw garbage, cut into arbitrary chunks.
def _yamux_frame(t: tuple[int, int, int, int, bytes]) -> bytes:
    frame_type, flags, stream_id, length, payload = t
    return encode_header(frame_type, flags, stream_id, length) + payload


yamux_frames = st.tuples(
    st.integers(0, 3),
    st.integers(0, 15),
    st.sampled_from([0, 1, 2, 3, 4, 6, 2**32 - 1]),
    st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1)),
    st.binary(max_size=64),
).map(_yamux_frame)
yamux_session_input = st.lists(st.one_of(yamux_frames, blobs), max_size=24)


@FUZZ
@given(yamux_session_input, st.integers(1, 97), st.booleans())
def test_yamux_machine_garbage(parts: list[bytes], cut: int, initiator: bool) -> None:
    """Whatever a peer sends, the machine returns events or raises MuxerError, and its budget
    always holds exactly what its streams hold; closing returns all of it."""
    ledger = Ledger("fuzz", 4 * 1024 * 1024)
    mux = Yamux(initiator, ledger, YamuxLimits(streams_max=4, control_frames_max=64))
    data = b"".join(parts)
    try:
        for i in range(0, len(data), cut):
            mux.receive(data[i : i + cut])
            assert ledger.used_bytes == sum(s.held for s in mux.streams.values())
            assert ledger.used_bytes <= ledger.limit_bytes
            assert len(mux.streams) <= 4
            mux.control_written(len(mux.take_output()))
    except MuxerError:
        pass
    mux.close()
    assert ledger.used_bytes == 0
