"""The asyncio shell around the yamux state machine (yamux.py): a session and its streams.

Theory of operation.  Decrypted bytes from the SecureChannel go to `Yamux.receive` in the
channel's data callback; the events it returns are performed at once: data goes to the
stream's ReadBuffer, credit wakes the stream's writer, a new inbound stream is handed to the
host, FIN/RST end the reader.  Whatever the machine wants to send (window updates, ping
replies, SYN/ACK/RST) goes to the channel's control queue, and the channel reports back what
it wrote, so the machine can bound what a peer that does not read makes us owe.

Readers report what they consume (`consumed`: the machine frees it from the connection's
memory budget and tops the peer's credit up, doubling the window up to
`window_bytes_max`) and what a long message still lacks (`demand`: credited ahead, within
the budget).  Writers split payloads into frames of at most one Noise message and respect
the peer's credit; each stream is high priority (consensus, control, small messages) or bulk
(see secure.py).  A protocol violation closes the whole session (GoAway + close) and is
reported through `on_violation`, so the host can make the peer pay for it.
"""

import asyncio
from collections.abc import Callable, Sequence

from node.allocator import FreeMemoryReleaser
from node.p2p.budget import Ledger
from node.p2p.buffer import ReadBuffer
from node.p2p.config import MiB
from node.p2p.counters import Counters
from node.p2p.errors import LimitError, RemoteError, StreamClosed, StreamReset
from node.p2p.noise import PLAINTEXT_BYTES_MAX
from node.p2p.peer_id import PeerId
from node.p2p.secure import BULK_BYTES_PER_TURN, SecureChannel
from node.p2p.varint import encode_uvarint
from node.p2p.yamux import (
    HEADER_BYTES,
    DataReceived,
    FrameType,
    GoAwayCode,
    GoneAway,
    Limits,
    PingAcked,
    StreamEnded,
    StreamOpened,
    WindowGrew,
    Yamux,
    encode_header,
)
from node.p2p.yamux import StreamReset as StreamResetEvent

DATA_CHUNK_BYTES = PLAINTEXT_BYTES_MAX - HEADER_BYTES
CONTROL_FRAMES_MAX = 4096

ViolationCallback = Callable[[str], None]


class Stream:
    """One yamux stream.  Reads via `inbox`-backed helpers; writes respect the peer's window."""

    def __init__(self, session: "Session", stream_id: int, high: bool) -> None:
        self.session = session
        self.stream_id = stream_id
        self.high = high
        self.protocol = ""
        self.inbox = ReadBuffer(on_consume=self._on_consume, on_demand=self._on_demand)
        # The machine's record of this stream (kept here: the machine forgets closed streams).
        self._status = session.mux.streams[stream_id]
        self._window_waiter: asyncio.Future[None] | None = None
        self.local_closed = False
        self.remote_closed = False
        self.reset_flag = False

    @property
    def remote_peer(self) -> PeerId:
        return self.session.channel.remote_peer

    @property
    def send_window(self) -> int:
        return self._status.send_window

    @property
    def window_target(self) -> int:
        """The receive window this stream tops the peer's credit up to (grows as it reads)."""
        return self._status.window_target

    # -- reading ------------------------------------------------------------------------------
    async def read_exact(self, n: int) -> bytes:
        return await self.inbox.read_exact(n)

    async def read_some(self, n_max: int = 65536) -> bytes:
        return await self.inbox.read_some(n_max)

    async def read_frame(self, bytes_max: int) -> bytes | None:
        return await self.inbox.read_uvarint_frame(bytes_max)

    def _on_consume(self, n: int) -> None:
        session = self.session
        session.mux.consumed(self.stream_id, n)
        if session.mux.output:
            session.flush_control()

    def _on_demand(self, n: int) -> None:
        self.session.mux.demand(self.stream_id, n)
        self.session.flush_control()

    # -- writing ------------------------------------------------------------------------------
    async def write(self, data: bytes | bytearray | memoryview) -> None:
        await self.writev((data,))

    async def writev(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """Write the concatenation of `parts` without joining them first."""
        if self.local_closed or self.reset_flag:
            raise StreamClosed("stream closed for writing")
        session = self.session
        mux = session.mux
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
            header = encode_header(FrameType.DATA, 0, self.stream_id, 0)
            session.channel.send(header, self.high)
            return
        while remaining:
            while self._status.send_window <= 0:
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
            n = min(remaining, self._status.send_window, DATA_CHUNK_BYTES)
            pieces: list[bytes | memoryview] = [encode_header(FrameType.DATA, 0, self.stream_id, n)]
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
            mux.data_sent(self.stream_id, n)
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

    def _wake_writer(self) -> None:
        waiter = self._window_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close_write(self) -> None:
        """Half-close: send FIN after everything queued for this stream."""
        if self.local_closed or self.reset_flag:
            return
        self.local_closed = True
        fin = self.session.mux.close_stream(self.stream_id)
        if fin is not None:
            self.session.channel.send(fin, self.high)
        self.session.forget_if_done(self)

    async def close(self) -> None:
        self.close_write()

    def reset(self) -> None:
        if self.reset_flag:
            return
        self.reset_flag = True
        session = self.session
        if not (self.local_closed and self.remote_closed):
            session.mux.reset_stream(self.stream_id)
            session.flush_control()
        self.inbox.fail(StreamReset("stream reset locally"))
        self._wake_writer()
        session.streams.pop(self.stream_id, None)

    # -- session callbacks --------------------------------------------------------------------
    def _remote_reset(self) -> None:
        self.reset_flag = True
        self.inbox.fail(StreamReset("stream reset by peer"))
        self._wake_writer()

    def _session_closed(self) -> None:
        self.reset_flag = True
        self.inbox.fail(StreamClosed("connection closed"))
        self._wake_writer()


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
        ledger: Ledger | None = None,
        on_violation: ViolationCallback | None = None,
        control_frames_max: int = CONTROL_FRAMES_MAX,
        releaser: FreeMemoryReleaser | None = None,
    ) -> None:
        self.channel = channel
        self.initiator = initiator
        self.counters = counters
        self._on_stream = on_stream
        self._on_close = on_close
        self._on_violation = on_violation
        self._releaser = releaser
        if ledger is None:
            # A session outside a Host (tests, tools): a budget of its own, as large as the
            # windows it may grant.
            ledger = Ledger("session", streams_max * max(window_bytes_max, MiB))
        limits = Limits(streams_max, window_bytes_max, control_frames_max)
        self.mux = Yamux(initiator, ledger, limits)
        self.streams: dict[int, Stream] = {}
        self.closed = False
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._exported = (0, 0, 0)
        channel.on_control_written = self.mux.control_written

    @property
    def window_bytes_max(self) -> int:
        return self.mux.limits.window_bytes_max

    def start(self) -> None:
        """Begin consuming the channel (bytes that arrived during negotiation come first)."""
        self.channel.set_sink(self._on_plaintext, self._on_channel_eof)

    # -- outbound -----------------------------------------------------------------------------
    def flush_control(self) -> None:
        if self.mux.output:
            for frame in self.mux.take_output():
                self.channel.send_control(frame)

    def open_stream(self, high: bool = True) -> Stream:
        if self.closed:
            raise StreamClosed("session closed")
        try:
            stream_id = self.mux.open_stream()
        except LimitError as exc:
            self.counters.drop("yamux_open_refused", str(exc), peer=self._peer())
            raise StreamClosed(str(exc)) from None
        stream = Stream(self, stream_id, high)
        self.streams[stream_id] = stream
        self.flush_control()  # the SYN, so the peer sees the stream open
        return stream

    def forget_if_done(self, stream: Stream) -> None:
        if stream.local_closed and stream.remote_closed:
            self.streams.pop(stream.stream_id, None)

    def close(self, code: GoAwayCode = GoAwayCode.NORMAL) -> None:
        if self.closed:
            return
        self.mux.go_away(code)
        self.flush_control()
        self._shutdown()
        self.channel.close()

    def _shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.mux.close()
        self._export_counters()
        if self._releaser is not None:
            # What this connection held is free now, but glibc keeps it resident.
            self._releaser.freed(self.mux.ledger.peak_bytes)
        for stream in list(self.streams.values()):
            stream._session_closed()
        self.streams.clear()
        for waiter in self._pings.values():
            if not waiter.done():
                waiter.set_exception(StreamClosed("session closed"))
        self._pings.clear()
        self._on_close(self)

    def _export_counters(self) -> None:
        """Count (and log at debug) what the machine refused or discarded since last time."""
        mux = self.mux
        now = (mux.refused_streams, mux.late_data_bytes, mux.credit_withheld)
        if now == self._exported:
            return
        refused, late, withheld = (a - b for a, b in zip(now, self._exported, strict=True))
        self._exported = now
        peer = self._peer()
        if refused:
            self.counters.drop("yamux_stream_refused", "streams_max or budget", refused, peer)
        if late:
            self.counters.drop("yamux_data_unknown_stream", "late frame bytes", late, peer)
        if withheld:
            self.counters.drop("yamux_credit_withheld", "memory budget full", withheld, peer)

    # -- inbound ------------------------------------------------------------------------------
    def _on_channel_eof(self) -> None:
        self._shutdown()

    def _on_plaintext(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self.mux.receive(data)
        except RemoteError as exc:
            reason = str(exc)
            self.counters.drop("yamux_protocol_error", reason, peer=self._peer())
            if self._on_violation is not None:
                self._on_violation(reason)  # while the peer still counts as connected
            self.close(GoAwayCode.PROTOCOL_ERROR)
            return
        for event in events:
            self._perform(event)
        self.flush_control()
        self._export_counters()

    def _perform(self, event: object) -> None:
        match event:
            case DataReceived(stream_id, data):
                stream = self.streams.get(stream_id)
                if stream is not None:
                    stream.inbox.feed(data)
            case WindowGrew(stream_id):
                stream = self.streams.get(stream_id)
                if stream is not None:
                    stream._wake_writer()
            case StreamOpened(stream_id):
                stream = Stream(self, stream_id, True)
                self.streams[stream_id] = stream
                self._on_stream(stream)
            case StreamEnded(stream_id):
                stream = self.streams.get(stream_id)
                if stream is not None:
                    stream.remote_closed = True
                    stream.inbox.feed_eof()
                    self.forget_if_done(stream)
            case StreamResetEvent(stream_id):
                stream = self.streams.pop(stream_id, None)
                if stream is not None:
                    stream._remote_reset()
            case PingAcked(value):
                waiter = self._pings.pop(value, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            case GoneAway():
                self._shutdown()
                self.channel.close()

    def _peer(self) -> str:
        return self.channel.remote_peer.short()

    async def ping(self, value: int) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._pings[value] = waiter
        self.mux.ping(value)
        self.flush_control()
        await waiter
