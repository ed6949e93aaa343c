"""yamux framing (github.com/hashicorp/yamux/spec.md): a 12-byte header and optional data.

    version:u8 (0) | type:u8 | flags:u16 | stream id:u32 | length:u32   (big endian)

type Data carries `length` bytes of payload; WindowUpdate's length is a window delta; Ping's
is an opaque value echoed back with ACK; GoAway's is an error code.  Flags SYN/ACK/FIN/RST
open, acknowledge, half-close and reset a stream.

`FrameParser` is fed decrypted bytes and returns whole frames.  A Data frame's length is
compared with `data_bytes_max` as soon as its header is complete, so a peer cannot make us
buffer more than that for one frame; window accounting is the session's job (session.py).
"""

import struct
from dataclasses import dataclass

from node.p2p.errors import LimitError, MuxerError

PROTOCOL_ID = "/yamux/1.0.0"
HEADER_BYTES = 12
TYPE_DATA = 0
TYPE_WINDOW_UPDATE = 1
TYPE_PING = 2
TYPE_GO_AWAY = 3
FLAG_SYN = 1
FLAG_ACK = 2
FLAG_FIN = 4
FLAG_RST = 8
INITIAL_WINDOW_BYTES = 256 * 1024
GO_AWAY_NORMAL = 0
GO_AWAY_PROTOCOL_ERROR = 1
GO_AWAY_INTERNAL_ERROR = 2
_HEADER = struct.Struct(">BBHII")


@dataclass(frozen=True, slots=True)
class Frame:
    type: int
    flags: int
    stream_id: int
    length: int
    data: bytes | memoryview = b""


def encode_header(frame_type: int, flags: int, stream_id: int, length: int) -> bytes:
    return _HEADER.pack(0, frame_type, flags, stream_id, length)


def decode_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int, int, int]:
    version, frame_type, flags, stream_id, length = _HEADER.unpack_from(buf, pos)
    if version != 0:
        raise MuxerError(f"yamux version {version}")
    if frame_type > TYPE_GO_AWAY:
        raise MuxerError(f"yamux frame type {frame_type}")
    return frame_type, flags, stream_id, length


class FrameParser:
    """Incremental decoder: feed() chunks, get the frames they complete.

    A payload that arrives as a whole chunk of its own (our sender puts large payloads in a
    Noise message of their own) is passed on as that very bytes object; a payload inside a
    larger chunk is a memoryview of it (chunks are immutable); only a payload split across
    chunks is joined.  Nothing is ever buffered beyond one header and the current payload.
    """

    __slots__ = ("_head", "_need", "_pending", "_pieces", "data_bytes_max")

    def __init__(self, data_bytes_max: int) -> None:
        self._head = bytearray()
        self._pending: tuple[int, int, int, int] | None = None
        self._need = 0
        self._pieces: list[bytes | memoryview] = []
        self.data_bytes_max = data_bytes_max

    @property
    def buffered_bytes(self) -> int:
        return len(self._head) + sum(len(p) for p in self._pieces)

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        pos = 0
        end = len(data)
        while True:
            pending = self._pending
            if pending is not None:
                take = min(self._need, end - pos)
                if take:
                    if pos == 0 and take == end:
                        self._pieces.append(data)
                    else:
                        self._pieces.append(memoryview(data)[pos : pos + take])
                    self._need -= take
                    pos += take
                if self._need:
                    break
                pieces = self._pieces
                payload = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                frame_type, flags, stream_id, length = pending
                frames.append(Frame(frame_type, flags, stream_id, length, payload))
                self._pending = None
                self._pieces = []
                continue
            if pos >= end:
                break
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
            if frame_type == TYPE_DATA and length:
                if length > self.data_bytes_max:
                    raise LimitError(f"yamux data frame of {length} bytes")
                self._pending = fields
                self._need = length
            else:
                frames.append(Frame(frame_type, flags, stream_id, length))
        return frames
