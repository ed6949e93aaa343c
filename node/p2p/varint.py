"""Unsigned LEB128 varints as used by multiformats (max 9 bytes) and protobuf (max 10 bytes).

`decode_uvarint` distinguishes "not enough bytes yet" (returns None, so stream parsers can wait
for more) from "malformed" (raises DecodeError): overlong or non-minimal encodings are refused.
"""

from node.p2p.errors import DecodeError

MULTIFORMAT_BYTES_MAX = 9
PROTOBUF_BYTES_MAX = 10


def encode_uvarint(value: int) -> bytes:
    if value < 0:
        raise ValueError("uvarint must be non-negative")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(
    buf: bytes | bytearray | memoryview, pos: int = 0, bytes_max: int = MULTIFORMAT_BYTES_MAX
) -> tuple[int, int] | None:
    """Return (value, position after it), or None when `buf` ends inside the varint."""
    end = len(buf)
    if pos < end:
        first = buf[pos]
        if first < 0x80:
            return first, pos + 1
    result = 0
    shift = 0
    i = pos
    while True:
        if i >= end:
            if i - pos >= bytes_max:
                raise DecodeError("varint too long")
            return None
        if i - pos >= bytes_max:
            raise DecodeError("varint too long")
        b = buf[i]
        result |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            if b == 0 and i - pos > 1:
                raise DecodeError("varint not minimally encoded")
            return result, i
        shift += 7


def decode_uvarint_complete(
    buf: bytes | bytearray | memoryview, pos: int = 0, bytes_max: int = MULTIFORMAT_BYTES_MAX
) -> tuple[int, int]:
    """Like decode_uvarint, for a buffer that must hold the whole varint."""
    decoded = decode_uvarint(buf, pos, bytes_max)
    if decoded is None:
        raise DecodeError("truncated varint")
    return decoded
