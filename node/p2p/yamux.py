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
    """Incremental decoder: feed() bytes, get the frames completed by them."""

    __slots__ = ("_buf", "data_bytes_max")

    def __init__(self, data_bytes_max: int) -> None:
        self._buf = bytearray()
        self.data_bytes_max = data_bytes_max

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by `data`.  Payloads parsed straight from `data` are memoryviews
        of it (no copy; `data` is immutable); only a frame split across calls is copied."""
        buf = self._buf
        src: bytes | bytearray = data
        if buf:
            buf += data
            src = buf
        frames: list[Frame] = []
        pos = 0
        end = len(src)
        view = memoryview(src) if src is data else None
        while end - pos >= HEADER_BYTES:
            frame_type, flags, stream_id, length = decode_header(src, pos)
            if frame_type == TYPE_DATA:
                if length > self.data_bytes_max:
                    raise LimitError(f"yamux data frame of {length} bytes")
                if end - pos - HEADER_BYTES < length:
                    break
                start = pos + HEADER_BYTES
                payload: bytes | memoryview = (
                    view[start : start + length]
                    if view is not None
                    else bytes(src[start : start + length])
                )
                frames.append(Frame(frame_type, flags, stream_id, length, payload))
                pos = start + length
            else:
                frames.append(Frame(frame_type, flags, stream_id, length))
                pos += HEADER_BYTES
        if src is buf:
            if pos:
                del buf[:pos]
        elif pos < end:
            buf += data[pos:]
        return frames
