"""The protobuf subset libp2p uses: varint (wire type 0) and length-delimited (wire type 2)
fields, skipping fixed32/fixed64 fields we do not know.

Decoding yields (field number, value) pairs in wire order; callers pick the fields they know.
Length-delimited values are checked against the bytes actually present (and against a limit)
before slicing, so a hostile length prefix cannot make us allocate.
"""

from collections.abc import Iterator

from node.p2p.errors import DecodeError, LimitError
from node.p2p.varint import PROTOBUF_BYTES_MAX, decode_uvarint_complete, encode_uvarint

WIRE_VARINT = 0
WIRE_FIXED64 = 1
WIRE_LEN = 2
WIRE_FIXED32 = 5
FIELDS_MAX = 1_000_000


def field_varint(number: int, value: int) -> bytes:
    return encode_uvarint(number << 3 | WIRE_VARINT) + encode_uvarint(value)


def field_bytes(number: int, value: bytes) -> bytes:
    if len(value) < 4096:
        return encode_uvarint(number << 3 | WIRE_LEN) + encode_uvarint(len(value)) + value
    return b"".join((encode_uvarint(number << 3 | WIRE_LEN), encode_uvarint(len(value)), value))


def field_header(number: int, length: int) -> bytes:
    """Key and length of a length-delimited field whose body the caller appends."""
    return encode_uvarint(number << 3 | WIRE_LEN) + encode_uvarint(length)


def field_str(number: int, value: str) -> bytes:
    return field_bytes(number, value.encode())


def iter_fields(
    data: bytes | memoryview, fields_max: int = FIELDS_MAX, view_bytes_min: int = 0
) -> Iterator[tuple[int, int | bytes]]:
    """Yield (number, value) for each field: int for varints, bytes for length-delimited.

    With a memoryview input and `view_bytes_min`, length-delimited values of at least that
    size are yielded as memoryview slices (zero copy; typed as bytes for callers that only
    pass them on); everything smaller is copied to bytes.
    """
    pos = 0
    end = len(data)
    count = 0
    while pos < end:
        count += 1
        if count > fields_max:
            raise LimitError(f"more than {fields_max} protobuf fields")
        key, pos = decode_uvarint_complete(data, pos, PROTOBUF_BYTES_MAX)
        number = key >> 3
        wire = key & 7
        if number == 0:
            raise DecodeError("protobuf field number 0")
        match wire:
            case 0:
                value, pos = decode_uvarint_complete(data, pos, PROTOBUF_BYTES_MAX)
                yield number, value
            case 2:
                length, pos = decode_uvarint_complete(data, pos, PROTOBUF_BYTES_MAX)
                if length > end - pos:
                    raise DecodeError("protobuf length-delimited field overruns message")
                value_view = data[pos : pos + length]
                if isinstance(value_view, memoryview) and not (
                    view_bytes_min and length >= view_bytes_min
                ):
                    yield number, bytes(value_view)
                else:
                    yield number, value_view  # type: ignore[misc,unused-ignore]
                pos += length
            case 1:
                if end - pos < 8:
                    raise DecodeError("truncated fixed64")
                pos += 8
            case 5:
                if end - pos < 4:
                    raise DecodeError("truncated fixed32")
                pos += 4
            case _:
                raise DecodeError(f"unsupported protobuf wire type {wire}")


def as_bytes(value: int | bytes, name: str) -> bytes:
    if not isinstance(value, bytes | memoryview):
        raise DecodeError(f"field {name}: expected bytes")
    return value


def as_int(value: int | bytes, name: str) -> int:
    if not isinstance(value, int):
        raise DecodeError(f"field {name}: expected varint")
    return value


def as_str(value: int | bytes, name: str, bytes_max: int = 4096) -> str:
    raw = as_bytes(value, name)
    if len(raw) > bytes_max:
        raise LimitError(f"field {name}: string of {len(raw)} bytes over {bytes_max}")
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise DecodeError(f"field {name}: invalid utf-8") from exc
