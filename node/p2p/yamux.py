"""yamux (github.com/hashicorp/yamux/spec.md) as a sans-IO state machine.

    version:u8 (0) | type:u8 | flags:u16 | stream id:u32 | length:u32   (big endian)

Theory of operation.  `Yamux` is fed the decrypted bytes of one connection (`receive`) and
returns events (a stream opened, data for a stream, credit granted, a stream half-closed or
reset, a ping answered, the peer going away); the shell's calls (`open_stream`, `consumed`,
`demand`, `data_sent`, `close_stream`, `reset_stream`, `ping`, `go_away`) change its state,
and every frame it has to send is queued for `take_output()`.  It never awaits, reads a clock
or touches a socket; session.py is the asyncio shell around it.

Streams.  A stream is open in each direction until that side sends FIN; RST ends both at
once; a stream is forgotten once both directions are closed or it was reset.  The dialer uses
odd ids, the listener even ids.  Every stream starts with the spec's 256 KiB receive window.

Memory.  Data frames are not reassembled: a Data header is checked against the stream's
receive window as soon as its 12 bytes are in, and its payload is passed on in the pieces
it arrives in (a piece much smaller than the chunk it came in is copied, so a few bytes
never pin a 64 KiB Noise message).  The receive window of each stream plus its unread bytes
is held in the connection's `Ledger` (budget.py): a SYN the ledger cannot cover is refused
with RST, and window updates grant only what the ledger has room for.  Control replies we
owe the peer (ping ACKs, window updates, RSTs) are queued here until the shell has written
them; more than `control_frames_max` unwritten means the peer provokes replies it does not
read, and the connection is given up (`MuxerError`).

Errors.  Whatever the peer sends, `receive` returns events or raises `MuxerError` (a
`RemoteError`); the shell then sends GoAway(protocol error) and closes.  Misuse by the shell
itself (an unknown stream id) raises `InvariantError`.
"""

import enum
import struct
from collections import deque
from dataclasses import dataclass

from node.p2p.budget import Ledger
from node.p2p.errors import InvariantError, LimitError, MuxerError

PROTOCOL_ID = "/yamux/1.0.0"
HEADER_BYTES = 12
INITIAL_WINDOW_BYTES = 256 * 1024
STREAM_ID_MAX = 2**32 - 1
WINDOW_BYTES_MAX = 2**32 - 1
# A piece of payload shorter than this fraction of the chunk it arrived in is copied out.
PIN_RATIO = 2
_HEADER = struct.Struct(">BBHII")


class FrameType(enum.IntEnum):
    DATA = 0
    WINDOW_UPDATE = 1
    PING = 2
    GO_AWAY = 3


class Flag(enum.IntFlag):
    NONE = 0
    SYN = 1
    ACK = 2
    FIN = 4
    RST = 8


class GoAwayCode(enum.IntEnum):
    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class StreamState(enum.Enum):
    OPEN = "open"  # both directions open (SYN sent or received, ACK or not)
    LOCAL_CLOSED = "local_closed"  # we sent FIN; the peer may still send
    REMOTE_CLOSED = "remote_closed"  # the peer sent FIN; we may still send
    CLOSED = "closed"  # both FINs: forgotten
    RESET = "reset"  # RST either way: forgotten


# Plain ints for the decoder's hot path.
_WINDOW_UPDATE = int(FrameType.WINDOW_UPDATE)
_PING = int(FrameType.PING)
_SYN, _ACK, _FIN, _RST = (int(f) for f in (Flag.SYN, Flag.ACK, Flag.FIN, Flag.RST))

# Kept for callers that predate the enums.
TYPE_DATA = FrameType.DATA
TYPE_WINDOW_UPDATE = FrameType.WINDOW_UPDATE
TYPE_PING = FrameType.PING
TYPE_GO_AWAY = FrameType.GO_AWAY
FLAG_SYN = Flag.SYN
FLAG_ACK = Flag.ACK
FLAG_FIN = Flag.FIN
FLAG_RST = Flag.RST
GO_AWAY_NORMAL = GoAwayCode.NORMAL
GO_AWAY_PROTOCOL_ERROR = GoAwayCode.PROTOCOL_ERROR
GO_AWAY_INTERNAL_ERROR = GoAwayCode.INTERNAL_ERROR


# -- codec ------------------------------------------------------------------------------------
def encode_header(frame_type: int, flags: int, stream_id: int, length: int) -> bytes:
    return _HEADER.pack(0, frame_type, flags, stream_id, length)


def decode_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int, int, int]:
    version, frame_type, flags, stream_id, length = _HEADER.unpack_from(buf, pos)
    if version != 0:
        raise MuxerError(f"yamux version {version}")
    if frame_type > FrameType.GO_AWAY:
        raise MuxerError(f"yamux frame type {frame_type}")
    if flags & ~0xF:
        raise MuxerError(f"yamux flags {flags:#x}")
    return frame_type, flags, stream_id, length


@dataclass(frozen=True, slots=True)
class Header:
    type: FrameType
    flags: Flag
    stream_id: int
    length: int


@dataclass(frozen=True, slots=True)
class Frame:
    type: int
    flags: int
    stream_id: int
    length: int
    data: bytes | memoryview = b""


class FrameDecoder:
    """Streaming decoder: feed() chunks, get headers and payload pieces in order.

    A Data header's payload follows as one or more pieces (views of the fed chunks, or the
    chunk itself); `data_bytes_max` is checked as soon as a header is complete, so nothing is
    ever buffered here beyond one partial header.
    """

    __slots__ = ("_head", "_need", "data_bytes_max")

    def __init__(self, data_bytes_max: int) -> None:
        self._head = bytearray()
        self._need = 0
        self.data_bytes_max = data_bytes_max

    @property
    def payload_pending(self) -> int:
        return self._need

    def feed(self, data: bytes) -> list[Header | memoryview | bytes]:
        out: list[Header | memoryview | bytes] = []
        pos = 0
        end = len(data)
        while pos < end:
            if self._need:
                take = min(self._need, end - pos)
                out.append(data if take == end else memoryview(data)[pos : pos + take])
                self._need -= take
                pos += take
                continue
            if self._head or end - pos < HEADER_BYTES:
                take = min(HEADER_BYTES - len(self._head), end - pos)
                self._head += data[pos : pos + take]
                pos += take
                if len(self._head) < HEADER_BYTES:
                    break
                fields = decode_header(self._head, 0)
                self._head.clear()
            else:
                fields = decode_header(data, pos)
                pos += HEADER_BYTES
            frame_type, flags, stream_id, length = fields
            header = Header(FrameType(frame_type), Flag(flags), stream_id, length)
            out.append(header)
            if frame_type == FrameType.DATA and length:
                if length > self.data_bytes_max:
                    raise LimitError(f"yamux data frame of {length} bytes")
                self._need = length
        return out


class FrameParser:
    """Whole frames out of chunks (payloads joined): for tools and tests; the session streams."""

    __slots__ = ("_decoder", "_header", "_left", "_pieces")

    def __init__(self, data_bytes_max: int) -> None:
        self._decoder = FrameDecoder(data_bytes_max)
        self._header: Header | None = None
        self._left = 0
        self._pieces: list[bytes | memoryview] = []

    @property
    def data_bytes_max(self) -> int:
        return self._decoder.data_bytes_max

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        for item in self._decoder.feed(data):
            if isinstance(item, Header):
                if item.type == FrameType.DATA and item.length:
                    self._header = item
                    self._left = item.length
                    continue
                frames.append(Frame(item.type, item.flags, item.stream_id, item.length))
                continue
            self._pieces.append(item)
            self._left -= len(item)
            if self._left == 0 and self._header is not None:
                h = self._header
                payload = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
                frames.append(Frame(h.type, h.flags, h.stream_id, h.length, payload))
                self._header = None
                self._pieces = []
        return frames


# -- events -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StreamOpened:
    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    stream_id: int
    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class WindowGrew:
    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed (FIN): no more data will arrive on this stream."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    stream_id: int


@dataclass(frozen=True, slots=True)
class PingAcked:
    value: int


@dataclass(frozen=True, slots=True)
class GoneAway:
    code: int


Event = StreamOpened | DataReceived | WindowGrew | StreamEnded | StreamReset | PingAcked | GoneAway


@dataclass(slots=True)
class Limits:
    streams_max: int = 256
    # A stream's receive window grows (doubling per update) up to this.
    window_bytes_max: int = 16 * 1024 * 1024
    # Control frames owed to the peer and not yet written: beyond this it is not reading.
    control_frames_max: int = 4096


@dataclass(slots=True)
class StreamStatus:
    """One stream's bookkeeping (mutable, owned by `Yamux`)."""

    stream_id: int
    state: StreamState = StreamState.OPEN
    send_window: int = INITIAL_WINDOW_BYTES
    # Credit the peer still has (what it may send without waiting for us).
    recv_window: int = INITIAL_WINDOW_BYTES
    # Received and not yet read by the application.
    unread: int = 0
    # What recv_window is topped up to after the reader consumed half of it; doubles per update.
    window_target: int = INITIAL_WINDOW_BYTES
    # Read since the last window update, still charged to the ledger (released in batches).
    consumed: int = 0
    # Extra credit the reader asked for (it awaits a message longer than the window).
    demand: int = 0

    @property
    def held(self) -> int:
        """What this stream holds in the connection's ledger."""
        return self.recv_window + self.unread + self.consumed


class Yamux:
    """One connection's muxer state.  See the module docstring."""

    def __init__(self, initiator: bool, ledger: Ledger, limits: Limits | None = None) -> None:
        self.initiator = initiator
        self.ledger = ledger
        self.limits = limits or Limits()
        self.streams: dict[int, StreamStatus] = {}
        self._next_id = 1 if initiator else 2
        # The Data frame whose payload is arriving: its stream (None: a forgotten one), the
        # bytes still to come, and its flags (applied once the payload is in).
        self._data_stream: StreamStatus | None = None
        self._payload_left = 0
        self._data_flags = 0
        self._head = bytearray()
        # Frames to send (read with take_output; a plain attribute so the shell's check after
        # every read costs nothing).
        self.output: list[bytes] = []
        # For each frame handed to the shell and not yet written: did the peer make us owe it?
        self._unwritten: deque[bool] = deque()
        self._control_owed = 0
        self._starved: set[int] = set()
        self.went_away = False
        self.closed = False
        # Counters the shell exports: what we refused or discarded (never silently).
        self.refused_streams = 0
        self.late_data_bytes = 0
        self.credit_withheld = 0

    # -- output -------------------------------------------------------------------------------
    def take_output(self) -> list[bytes]:
        """Frames to send now (control first), and forget them: the shell writes them."""
        out = self.output
        self.output = []
        return out

    def control_written(self, n: int) -> None:
        """The shell wrote the next n frames of take_output() (they no longer cost memory)."""
        unwritten = self._unwritten
        for _ in range(min(n, len(unwritten))):
            if unwritten.popleft():
                self._control_owed -= 1

    @property
    def control_owed(self) -> int:
        return self._control_owed

    def _emit(
        self, frame_type: FrameType, flags: Flag, stream_id: int, length: int, owed: bool = False
    ) -> None:
        self.output.append(encode_header(frame_type, flags, stream_id, length))
        self._unwritten.append(owed)

    def _reply(self, frame_type: FrameType, flags: Flag, stream_id: int, length: int) -> None:
        """A frame the peer made us owe it: counted until written, bounded."""
        self._control_owed += 1
        if self._control_owed > self.limits.control_frames_max:
            raise MuxerError(f"peer left {self._control_owed} control replies unread")
        self._emit(frame_type, flags, stream_id, length, owed=True)

    # -- shell commands -----------------------------------------------------------------------
    def open_stream(self) -> int:
        """A new outbound stream (SYN queued); raises LimitError when over a limit."""
        if self.closed or self.went_away:
            raise InvariantError("open_stream on a closed session")
        if len(self.streams) >= self.limits.streams_max:
            raise LimitError("too many streams on this connection")
        if self._next_id > STREAM_ID_MAX:
            raise LimitError("stream ids exhausted")
        if not self.ledger.try_reserve(INITIAL_WINDOW_BYTES):
            raise LimitError("connection memory budget exhausted")
        stream_id = self._next_id
        self._next_id += 2
        self.streams[stream_id] = StreamStatus(stream_id)
        self._emit(FrameType.WINDOW_UPDATE, Flag.SYN, stream_id, 0)
        return stream_id

    def send_window(self, stream_id: int) -> int:
        status = self.streams.get(stream_id)
        return 0 if status is None else status.send_window

    def data_sent(self, stream_id: int, n: int) -> None:
        status = self._stream(stream_id)
        if n > status.send_window:
            raise InvariantError(f"stream {stream_id}: sent {n} over window {status.send_window}")
        status.send_window -= n

    def consumed(self, stream_id: int, n: int) -> None:
        """The application read n bytes of the stream: free them and top the credit up."""
        status = self.streams.get(stream_id)
        if status is None:
            return
        if n > status.unread:
            raise InvariantError(f"stream {stream_id}: consumed {n} of {status.unread} unread")
        status.unread -= n
        status.consumed += n
        status.demand = max(0, status.demand - n)
        # Read bytes go back to the budget in batches (half a window, or at once while some
        # stream waits for memory): a ledger update per read was a fifth of a small
        # message's cost.  Until then they count as held, which errs on the safe side.
        half_read = status.consumed >= status.window_target // 2
        if half_read or self._starved:
            self.ledger.release(status.consumed)
            status.consumed = 0
            if half_read:
                status.window_target = min(status.window_target * 2, self.limits.window_bytes_max)
                self._grant(status)
            if self._starved:
                self._feed_starved()

    def demand(self, stream_id: int, n: int) -> None:
        """The reader waits for n bytes beyond those unread (a long message): credit them
        ahead if the budget allows (the message size was checked against a limit first)."""
        status = self.streams.get(stream_id)
        if status is None or n <= status.demand:
            return
        status.demand = n
        self._grant(status)

    def close_stream(self, stream_id: int) -> bytes | None:
        """Half-close our direction: returns the FIN frame, which the shell queues behind the
        stream's data (not with the control frames, which may overtake data)."""
        status = self.streams.get(stream_id)
        if status is None or status.state in (StreamState.LOCAL_CLOSED, StreamState.CLOSED):
            return None
        if status.state == StreamState.REMOTE_CLOSED:
            self._forget(status, StreamState.CLOSED)
        else:
            status.state = StreamState.LOCAL_CLOSED
        return encode_header(FrameType.DATA, Flag.FIN, stream_id, 0)

    def reset_stream(self, stream_id: int) -> None:
        status = self.streams.get(stream_id)
        if status is None:
            return
        self._emit(FrameType.WINDOW_UPDATE, Flag.RST, stream_id, 0)
        self._forget(status, StreamState.RESET)

    def ping(self, value: int) -> None:
        self._emit(FrameType.PING, Flag.SYN, 0, value)

    def go_away(self, code: GoAwayCode = GoAwayCode.NORMAL) -> None:
        if not self.went_away:
            self.went_away = True
            self._emit(FrameType.GO_AWAY, Flag.NONE, 0, code)

    def close(self) -> None:
        """The connection is gone: release everything held (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for status in list(self.streams.values()):
            self._forget(status, StreamState.RESET)

    # -- input --------------------------------------------------------------------------------
    def receive(self, data: bytes) -> list[Event]:
        """Apply decrypted bytes from the peer; raises MuxerError on a protocol violation.

        The hot path of every connection: frames are decoded inline (no header objects), and
        flags are tested as plain ints (IntFlag arithmetic costs microseconds per frame)."""
        if self.closed:
            return []
        events: list[Event] = []
        pos = 0
        end = len(data)
        head = self._head
        while pos < end:
            left = self._payload_left
            if left:
                take = left if left < end - pos else end - pos
                piece = data if take == end else memoryview(data)[pos : pos + take]
                pos += take
                self._on_payload(piece, end, events)
                continue
            if head or end - pos < HEADER_BYTES:
                take = min(HEADER_BYTES - len(head), end - pos)
                head += data[pos : pos + take]
                pos += take
                if len(head) < HEADER_BYTES:
                    break
                frame_type, flags, stream_id, length = decode_header(head, 0)
                head.clear()
            else:
                frame_type, flags, stream_id, length = decode_header(data, pos)
                pos += HEADER_BYTES
            if frame_type <= _WINDOW_UPDATE:
                self._on_stream_frame(frame_type, flags, stream_id, length, events)
            elif frame_type == _PING:
                if flags & _SYN:
                    self._reply(FrameType.PING, Flag.ACK, 0, length)
                elif flags & _ACK:
                    events.append(PingAcked(length))
            else:
                self.went_away = True
                events.append(GoneAway(length))
        return events

    def _on_stream_frame(
        self, frame_type: int, flags: int, stream_id: int, length: int, events: list[Event]
    ) -> None:
        if stream_id == 0:
            raise MuxerError("stream frame on stream 0")
        status = self.streams.get(stream_id)
        if flags & _SYN:
            if status is not None:
                raise MuxerError(f"SYN for open stream {stream_id}")
            if (stream_id % 2 == 1) == self.initiator:
                raise MuxerError(f"peer opened stream {stream_id} with our parity")
            if len(self.streams) >= self.limits.streams_max or self.went_away:
                self._refuse(stream_id)
            elif not self.ledger.try_reserve(INITIAL_WINDOW_BYTES):
                self.credit_withheld += 1
                self._refuse(stream_id)
            else:
                status = StreamStatus(stream_id)
                self.streams[stream_id] = status
                self._reply(FrameType.WINDOW_UPDATE, Flag.ACK, stream_id, 0)
                events.append(StreamOpened(stream_id))
        if frame_type == _WINDOW_UPDATE:
            if status is not None and length:
                if status.send_window + length > WINDOW_BYTES_MAX:
                    raise MuxerError(f"stream {stream_id}: send window overflow")
                status.send_window += length
                events.append(WindowGrew(stream_id))
            if flags & (_FIN | _RST):
                self._after_flags(status, flags, events, stream_id)
            return
        # Data: the payload follows; the flags apply once it is in.
        if length:
            if status is not None:
                if status.state is StreamState.REMOTE_CLOSED:
                    raise MuxerError(f"stream {stream_id}: data after FIN")
                if length > status.recv_window:
                    raise MuxerError(
                        f"stream {stream_id}: {length} bytes over window {status.recv_window}"
                    )
                status.recv_window -= length
                status.unread += length
            else:
                # A stream we reset or refused: the peer may have sent before it knew.
                self.late_data_bytes += length
            self._data_stream = status
            self._payload_left = length
            self._data_flags = flags
            return
        if flags & (_FIN | _RST):
            self._after_flags(status, flags, events, stream_id)

    def _on_payload(self, piece: bytes | memoryview, chunk_bytes: int, events: list[Event]) -> None:
        self._payload_left -= len(piece)
        status = self._data_stream
        if status is None:
            return  # late data for a forgotten stream: counted at its header
        if len(piece) * PIN_RATIO < chunk_bytes:
            piece = bytes(piece)  # do not pin the whole chunk for a few bytes
        events.append(DataReceived(status.stream_id, piece))
        if self._payload_left == 0:
            self._data_stream = None
            if self._data_flags & (_FIN | _RST):
                self._after_flags(status, self._data_flags, events, status.stream_id)

    def _after_flags(
        self, status: StreamStatus | None, flags: int, events: list[Event], stream_id: int
    ) -> None:
        if status is None or stream_id not in self.streams:
            return
        if flags & _RST:
            self._forget(status, StreamState.RESET)
            events.append(StreamReset(stream_id))
            return
        if flags & _FIN:
            match status.state:
                case StreamState.OPEN:
                    status.state = StreamState.REMOTE_CLOSED
                    events.append(StreamEnded(stream_id))
                case StreamState.LOCAL_CLOSED:
                    events.append(StreamEnded(stream_id))
                    self._forget(status, StreamState.CLOSED)
                case _:
                    pass  # a repeated FIN changes nothing

    # -- internals ----------------------------------------------------------------------------
    def _refuse(self, stream_id: int) -> None:
        self.refused_streams += 1
        self._reply(FrameType.WINDOW_UPDATE, Flag.RST, stream_id, 0)

    def _stream(self, stream_id: int) -> StreamStatus:
        status = self.streams.get(stream_id)
        if status is None:
            raise InvariantError(f"unknown stream {stream_id}")
        return status

    def _grant(self, status: StreamStatus) -> None:
        """Top the peer's credit up to the window target (or the reader's demand), within
        the budget; whatever the budget refuses is retried when memory is freed."""
        if status.state in (StreamState.REMOTE_CLOSED, StreamState.CLOSED, StreamState.RESET):
            return
        # A window is a u32 on the wire: never promise beyond it, whatever the demand.
        want = min(max(status.window_target, status.demand), WINDOW_BYTES_MAX)
        want -= status.recv_window
        if want <= 0:
            self._starved.discard(status.stream_id)
            return
        granted = self.ledger.reserve_up_to(want)
        if granted < want:
            self.credit_withheld += 1
            self._starved.add(status.stream_id)
        else:
            self._starved.discard(status.stream_id)
        if granted:
            status.recv_window += granted
            self._reply(FrameType.WINDOW_UPDATE, Flag.NONE, status.stream_id, granted)

    def _feed_starved(self) -> None:
        for stream_id in sorted(self._starved):
            if self.ledger.available() <= 0:
                return
            status = self.streams.get(stream_id)
            if status is None:
                self._starved.discard(stream_id)
                continue
            self._grant(status)

    def _forget(self, status: StreamStatus, state: StreamState) -> None:
        status.state = state
        self.streams.pop(status.stream_id, None)
        self._starved.discard(status.stream_id)
        held = status.held
        status.recv_window = status.unread = status.consumed = 0
        if held:
            self.ledger.release(held)
        if self._data_stream is status:
            self._data_stream = None
