"""multistream-select 1.0 messages: uvarint(len) || utf-8 line || "\\n".

`MessageParser` is fed raw bytes and returns complete lines; it never buffers more than one
message of at most `message_bytes_max`.  The negotiation itself (header exchange, proposing
protocols, answering `na`) is a few lines of the shell in `negotiate.py`.
"""

from node.p2p.errors import DecodeError, LimitError
from node.p2p.varint import decode_uvarint, encode_uvarint

PROTOCOL_ID = "/multistream/1.0.0"
NA = "na"
MESSAGE_BYTES_MAX = 1024


def encode_message(line: str) -> bytes:
    raw = line.encode() + b"\n"
    if len(raw) > MESSAGE_BYTES_MAX:
        raise ValueError("multistream message too long")
    return encode_uvarint(len(raw)) + raw


def decode_message(
    buf: bytes | bytearray, message_bytes_max: int = MESSAGE_BYTES_MAX
) -> tuple[str, int] | None:
    """Return (line, bytes consumed) or None if `buf` holds no complete message yet."""
    header = decode_uvarint(buf, 0)
    if header is None:
        return None
    length, pos = header
    if length > message_bytes_max:
        raise LimitError(f"multistream message of {length} bytes over {message_bytes_max}")
    if length == 0:
        raise DecodeError("empty multistream message")
    if len(buf) - pos < length:
        return None
    raw = bytes(buf[pos : pos + length])
    if raw[-1:] != b"\n":
        raise DecodeError("multistream message does not end with newline")
    try:
        line = raw[:-1].decode()
    except UnicodeDecodeError as exc:
        raise DecodeError("multistream message is not utf-8") from exc
    return line, pos + length
