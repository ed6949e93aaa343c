"""A yamux session over a SecureChannel, and its streams.

Theory of operation.  Frames arrive in the channel's data callback and are applied at once:
Data goes to the stream's ReadBuffer (refused if it exceeds the window we granted),
WindowUpdate adds send credit and wakes writers, SYN opens an inbound stream (refused with RST
over `streams_max`), FIN half-closes, RST resets, Ping is echoed, GoAway closes.  A stream
grants its peer credit as the application consumes bytes: once half the current window has
been read, it sends a WindowUpdate, doubling the window up to `window_bytes_max` so long
transfers are not limited by the 256 KiB initial window.

Writers split payloads into frames of at most one Noise message.  Each stream is either high
priority (consensus, control, small messages) or bulk; see secure.py for how the two classes
share the connection.  A protocol violation closes the whole session (GoAway + close).
"""

import asyncio
import logging
from collections.abc import Callable, Sequence

from node.p2p.buffer import ReadBuffer
from node.p2p.counters import Counters
from node.p2p.errors import MuxerError, RemoteError, StreamClosed, StreamReset
from node.p2p.noise import PLAINTEXT_BYTES_MAX
from node.p2p.peer_id import PeerId
from node.p2p.secure import BULK_BYTES_PER_TURN, SecureChannel
from node.p2p.varint import encode_uvarint
from node.p2p.yamux import (
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    GO_AWAY_NORMAL,
    GO_AWAY_PROTOCOL_ERROR,
    HEADER_BYTES,
    INITIAL_WINDOW_BYTES,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    Frame,
    FrameParser,
    encode_header,
)

log = logging.getLogger(__name__)
DATA_CHUNK_BYTES = PLAINTEXT_BYTES_MAX - HEADER_BYTES
# Chunks at least this large are sent as a header/payload pair (see SecureChannel.send_pair).
PAIR_BYTES_MIN = 16 * 1024


class Stream:
    """One yamux stream.  Reads via `inbox`-backed helpers; writes respect the peer's window."""

    def __init__(self, session: "Session", stream_id: int, high: bool) -> None:
        self.session = session
        self.stream_id = stream_id
        self.high = high
        self.protocol = ""
        self.inbox = ReadBuffer(on_consume=self._on_consume)
        self.send_window = INITIAL_WINDOW_BYTES
        self.recv_window = INITIAL_WINDOW_BYTES
        self._window_target = INITIAL_WINDOW_BYTES
        self._consumed = 0
        self._window_waiter: asyncio.Future[None] | None = None
        self.local_closed = False
        self.remote_closed = False
        self.reset_flag = False

    @property
    def remote_peer(self) -> PeerId:
        return self.session.channel.remote_peer

    # -- reading ------------------------------------------------------------------------------
    async def read_exact(self, n: int) -> bytes:
        return await self.inbox.read_exact(n)

    async def read_some(self, n_max: int = 65536) -> bytes:
        return await self.inbox.read_some(n_max)

    async def read_frame(self, bytes_max: int) -> bytes | None:
        return await self.inbox.read_uvarint_frame(bytes_max)

    def _on_consume(self, n: int) -> None:
        self._consumed += n
        if self._consumed >= self._window_target // 2 and not self.reset_flag:
            delta = self._consumed
            new_target = min(self._window_target * 2, self.session.window_bytes_max)
            delta += new_target - self._window_target
            self._window_target = new_target
            self._consumed = 0
            self.recv_window += delta
            self.session.send_frame(TYPE_WINDOW_UPDATE, 0, self.stream_id, delta)

    # -- writing ------------------------------------------------------------------------------
    async def write(self, data: bytes | bytearray | memoryview) -> None:
        await self.writev((data,))

    async def writev(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """Write the concatenation of `parts` without joining them first."""
        if self.local_closed or self.reset_flag:
            raise StreamClosed("stream closed for writing")
        session = self.session
        # Payload slices are queued by reference, so the buffers must be immutable: copy any
        # mutable one (bytearray, or a view of one) first.
        views = [
            memoryview(p)
            if isinstance(p, bytes) or (isinstance(p, memoryview) and isinstance(p.obj, bytes))
            else memoryview(bytes(p))
            for p in parts
            if len(p)
        ]
        remaining = sum(len(v) for v in views)
        index = offset = since_yield = 0
        if remaining == 0:
            header = encode_header(TYPE_DATA, 0, self.stream_id, 0)
            session.channel.send(header, self.high)
            return
        while remaining:
            while self.send_window <= 0:
                if self.reset_flag or session.closed:
                    raise StreamReset("stream reset while waiting for window")
                waiter = asyncio.get_running_loop().create_future()
                self._window_waiter = waiter
                try:
                    await waiter
                finally:
                    self._window_waiter = None
            if not self.high:
                await session.channel.wait_bulk_room()
            if self.reset_flag or session.closed:
                raise StreamReset("stream reset")
            n = min(remaining, self.send_window, DATA_CHUNK_BYTES)
            pieces: list[bytes | memoryview] = [encode_header(TYPE_DATA, 0, self.stream_id, n)]
            got = 0
            while got < n:
                view = views[index]
                take = min(len(view) - offset, n - got)
                pieces.append(view[offset : offset + take])
                got += take
                offset += take
                if offset == len(view):
                    index += 1
                    offset = 0
            session.channel.send(b"".join(pieces), self.high)
            self.send_window -= n
            remaining -= n
            if not self.high:
                since_yield += n
                if since_yield >= BULK_BYTES_PER_TURN and remaining:
                    # Bulk writers share the loop in slices, so votes are not held up.
                    since_yield = 0
                    await asyncio.sleep(0)

    async def write_frame(self, payload: bytes) -> None:
        """Write a uvarint-length-prefixed message."""
        await self.writev((encode_uvarint(len(payload)), payload))

    def _window_grew(self, delta: int) -> None:
        self.send_window += delta
        waiter = self._window_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close_write(self) -> None:
        """Half-close: send FIN after everything queued for this stream."""
        if self.local_closed or self.reset_flag:
            return
        self.local_closed = True
        header = encode_header(TYPE_DATA, FLAG_FIN, self.stream_id, 0)
        self.session.channel.send(header, self.high)
        self.session.maybe_forget(self)

    async def close(self) -> None:
        self.close_write()

    def reset(self) -> None:
        if self.reset_flag:
            return
        self.reset_flag = True
        if not (self.local_closed and self.remote_closed):
            self.session.send_frame(TYPE_WINDOW_UPDATE, FLAG_RST, self.stream_id, 0)
        self.inbox.fail(StreamReset("stream reset locally"))
        self._window_grew(0)
        self.session.forget(self)

    # -- session callbacks --------------------------------------------------------------------
    def _remote_reset(self) -> None:
        self.reset_flag = True
        self.inbox.fail(StreamReset("stream reset by peer"))
        self._window_grew(0)

    def _session_closed(self) -> None:
        self.reset_flag = True
        self.inbox.fail(StreamClosed("connection closed"))
        self._window_grew(0)


class Session:
    def __init__(
        self,
        channel: SecureChannel,
        initiator: bool,
        streams_max: int,
        window_bytes_max: int,
        counters: Counters,
        on_stream: Callable[[Stream], None],
        on_close: Callable[["Session"], None],
    ) -> None:
        self.channel = channel
        self.initiator = initiator
        self.streams_max = streams_max
        self.window_bytes_max = window_bytes_max
        self.counters = counters
        self._on_stream = on_stream
        self._on_close = on_close
        self._next_id = 1 if initiator else 2
        self.streams: dict[int, Stream] = {}
        self._parser = FrameParser(window_bytes_max)
        self.closed = False
        self._pings: dict[int, asyncio.Future[None]] = {}

    def start(self) -> None:
        """Begin consuming the channel (bytes that arrived during negotiation come first)."""
        self.channel.set_sink(self._on_plaintext, self._on_channel_eof)

    # -- outbound -----------------------------------------------------------------------------
    def send_frame(self, frame_type: int, flags: int, stream_id: int, length: int) -> None:
        self.channel.send(encode_header(frame_type, flags, stream_id, length), True)

    def open_stream(self, high: bool = True) -> Stream:
        if self.closed:
            raise StreamClosed("session closed")
        if len(self.streams) >= self.streams_max:
            raise StreamClosed("too many streams on this connection")
        stream_id = self._next_id
        self._next_id += 2
        stream = Stream(self, stream_id, high)
        self.streams[stream_id] = stream
        # SYN travels on the first frame we send; send it now so the peer sees the stream open.
        self.send_frame(TYPE_WINDOW_UPDATE, FLAG_SYN, stream_id, 0)
        return stream

    def forget(self, stream: Stream) -> None:
        self.streams.pop(stream.stream_id, None)

    def maybe_forget(self, stream: Stream) -> None:
        if stream.local_closed and stream.remote_closed:
            self.forget(stream)

    def close(self, code: int = GO_AWAY_NORMAL) -> None:
        if self.closed:
            return
        self.send_frame(TYPE_GO_AWAY, 0, 0, code)
        self._shutdown()
        self.channel.close()

    def _shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        for stream in list(self.streams.values()):
            stream._session_closed()
        self.streams.clear()
        for waiter in self._pings.values():
            if not waiter.done():
                waiter.set_exception(StreamClosed("session closed"))
        self._pings.clear()
        self._on_close(self)

    # -- inbound ------------------------------------------------------------------------------
    def _on_channel_eof(self) -> None:
        self._shutdown()

    def _on_plaintext(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            frames = self._parser.feed(data)
            for frame in frames:
                self._apply(frame)
        except RemoteError as exc:
            peer = self.channel.remote_peer.short()
            self.counters.drop("yamux_protocol_error", str(exc), peer=peer)
            self.close(GO_AWAY_PROTOCOL_ERROR)

    def _apply(self, frame: Frame) -> None:
        match frame.type:
            case 0 | 1:
                self._apply_stream_frame(frame)
            case 2:
                if frame.flags & FLAG_SYN:
                    self.send_frame(TYPE_PING, FLAG_ACK, 0, frame.length)
                elif frame.flags & FLAG_ACK:
                    waiter = self._pings.pop(frame.length, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
            case 3:
                self._shutdown()
                self.channel.close()
            case _:
                raise MuxerError(f"unknown frame type {frame.type}")

    def _apply_stream_frame(self, frame: Frame) -> None:
        flags = frame.flags
        stream_id = frame.stream_id
        stream = self.streams.get(stream_id)
        if flags & FLAG_SYN:
            if stream is not None:
                raise MuxerError(f"SYN for open stream {stream_id}")
            if stream_id == 0 or (stream_id % 2 == 1) == self.initiator:
                raise MuxerError(f"peer opened stream {stream_id} with our parity")
            if len(self.streams) >= self.streams_max:
                self.counters.drop("yamux_stream_refused", "streams_max", peer=self._peer())
                self.send_frame(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0)
                return
            stream = Stream(self, stream_id, True)
            self.streams[stream_id] = stream
            self.send_frame(TYPE_WINDOW_UPDATE, FLAG_ACK, stream_id, 0)
            self._on_stream(stream)
        if stream is None:
            # Frames for a stream we already forgot (reset or closed): harmless, count them.
            if frame.type == TYPE_DATA and frame.length:
                self.counters.drop("yamux_data_unknown_stream", "late frame", peer=self._peer())
            return
        if frame.type == TYPE_WINDOW_UPDATE:
            stream._window_grew(frame.length)
        elif frame.length:
            if stream.remote_closed:
                raise MuxerError("data after FIN")
            if frame.length > stream.recv_window:
                raise MuxerError(
                    f"stream {stream_id}: {frame.length} bytes over window {stream.recv_window}"
                )
            stream.recv_window -= frame.length
            stream.inbox.feed(frame.data)
        if flags & FLAG_RST:
            stream._remote_reset()
            self.forget(stream)
            return
        if flags & FLAG_FIN and not stream.remote_closed:
            stream.remote_closed = True
            stream.inbox.feed_eof()
            self.maybe_forget(stream)

    def _peer(self) -> str:
        return self.channel.remote_peer.short()

    async def ping(self, value: int) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._pings[value] = waiter
        self.send_frame(TYPE_PING, FLAG_SYN, 0, value)
        await waiter
