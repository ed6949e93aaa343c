"""The yamux shell over real hosts on loopback: the memory budget and the control-reply bound
hold end to end, and small chunks do not cost an object each."""

import asyncio

from node.p2p.buffer import COALESCE_AFTER_CHUNKS, COALESCE_BYTES_MAX, ReadBuffer
from node.p2p.config import HostConfig
from node.p2p.session import Stream
from node.p2p.yamux import FLAG_SYN, TYPE_PING, encode_header
from tests.p2p.conftest import connected_pair

MiB = 1024 * 1024
SMALL_BUDGET = HostConfig(
    memory_node_bytes_max=64 * MiB,
    memory_strangers_bytes_max=8 * MiB,
    memory_stranger_connection_bytes_max=4 * MiB,
    memory_protected_connection_bytes_max=32 * MiB,
)


async def test_a_stranger_cannot_make_a_reader_buffer_more_than_its_connection_budget() -> None:
    """b's handler waits for a 64 MiB message (it asks for credit ahead); a sends all it may.
    b never holds more than the stranger connection budget, and a's writer is left waiting."""
    async with connected_pair(SMALL_BUDGET) as (a, b):
        reading: list[Stream] = []

        async def hungry(stream: Stream) -> None:
            reading.append(stream)
            await stream.read_exact(64 * MiB)

        b.set_stream_handler("/test/hungry/1", hungry)
        stream = await a.new_stream(b.peer_id, ["/test/hungry/1"])
        writer = asyncio.create_task(stream.write(bytes(64 * MiB)))
        peak = 0
        for _ in range(100):
            await asyncio.sleep(0.02)
            peak = max(peak, b.memory.strangers.used_bytes)
        assert not writer.done(), "the writer must be stalled by flow control"
        assert stream.send_window == 0
        assert 0 < peak <= 4 * MiB
        assert len(reading[0].inbox) <= 4 * MiB
        assert b.counters.get("yamux_credit_withheld") >= 1
        writer.cancel()
        stream.reset()


async def test_a_peer_that_floods_pings_and_never_reads_the_replies_is_disconnected() -> None:
    config = HostConfig(control_frames_max=256)
    async with connected_pair(config) as (a, b):
        conn = a.connection(b.peer_id)
        assert conn is not None
        channel = conn.session.channel
        transport = channel.tcp.transport
        assert transport is not None
        transport.pause_reading()  # never read b's replies
        pings = b"".join(encode_header(TYPE_PING, FLAG_SYN, 0, i) for i in range(5000))
        for _ in range(200):
            if not b.is_connected(a.peer_id):
                break
            for offset in range(0, len(pings), 60_000):
                channel.send(pings[offset : offset + 60_000])
            await asyncio.sleep(0.01)
        assert not b.is_connected(a.peer_id)
        assert b.counters.get("yamux_protocol_error") == 1


async def test_honest_traffic_fits_the_default_budget_and_returns_it() -> None:
    async with connected_pair() as (a, b):

        async def echo(stream: Stream) -> None:
            data = await stream.read_exact(20 * MiB)
            await stream.write(data)

        b.set_stream_handler("/test/echo/1", echo)
        stream = await a.new_stream(b.peer_id, ["/test/echo/1"])
        payload = bytes(range(256)) * (20 * MiB // 256)
        await stream.write(payload)
        assert await stream.read_exact(20 * MiB) == payload
        stream.close_write()
        await asyncio.sleep(0.1)
        # Only the windows of streams still open (identify's, if any) remain held.
        assert b.memory.node.used_bytes <= 4 * 256 * 1024


def test_one_byte_chunks_share_objects() -> None:
    buffer = ReadBuffer()
    for _ in range(10_000):
        buffer.feed(b"x")
    assert len(buffer) == 10_000
    # A few as they came (the reader might be about to take them), the rest coalesced.
    assert len(buffer._chunks) <= COALESCE_AFTER_CHUNKS + 10_000 // COALESCE_BYTES_MAX + 1


async def test_coalesced_chunks_read_back_in_order() -> None:
    buffer = ReadBuffer()
    expected = b""
    for i in range(3000):
        piece = bytes([i % 251]) * (1 + i % 7)
        buffer.feed(piece)
        expected += piece
        if i % 5 == 0:
            buffer.feed(bytes(2048))  # a large chunk between small ones
            expected += bytes(2048)
    got = b""
    while len(got) < len(expected):
        got += await buffer.read_exact(min(333, len(expected) - len(got)))
        if len(buffer):
            got += await buffer.read_some(100)
    assert got == expected
