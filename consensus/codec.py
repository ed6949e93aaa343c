"""Canonical msgpack: the one encoding for everything that is signed or hashed.

Values are built from int, bytes, str, bool, None and lists/tuples of those; maps and floats are
refused because their encodings are not unique (key order) or not portable (float rounding).
A decoder accepts bytes only if re-encoding the decoded value yields exactly the same bytes, so
every value has one byte string and hashes can identify values.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import msgpack

from consensus.errors import CodecError

Value: TypeAlias = int | bytes | str | bool | Sequence["Value"] | None

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Upper bounds enforced by the msgpack reader before it allocates."""

    message_bytes_max: int = 64 * 1024 * 1024
    bin_bytes_max: int = 64 * 1024 * 1024
    str_bytes_max: int = 64 * 1024
    array_items_max: int = 1_000_000


DEFAULT_LIMITS = DecodeLimits()


def encode(value: Value) -> bytes:
    """Encode `value` canonically; raises CodecError for a type outside the canonical subset."""
    _check_encodable(value, depth=0)
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def decode(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Value:
    """Decode canonical bytes; every failure, whatever its cause, is a CodecError."""
    if len(data) > limits.message_bytes_max:
        raise CodecError(f"message of {len(data)} bytes exceeds {limits.message_bytes_max}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=limits.bin_bytes_max,
            max_str_len=limits.str_bytes_max,
            max_array_len=limits.array_items_max,
            max_map_len=0,
            max_ext_len=0,
        )
    except CodecError:
        raise
    except Exception as exc:  # msgpack raises a zoo of types (ValueError, ExtraData, ...)
        raise CodecError(f"malformed msgpack: {type(exc).__name__}: {exc}") from None
    _check_encodable(value, depth=0)
    if msgpack.packb(value, use_bin_type=True) != data:
        raise CodecError("non-canonical encoding")
    return value  # type: ignore[no-any-return]


_DEPTH_MAX = 32


_LEAVES = frozenset({bytes, str, bool, type(None)})


def _check_encodable(value: object, depth: int) -> None:
    # Exact types first (what the codebase builds and what msgpack decodes): the recursive
    # isinstance walk was 15% of a validator's consensus CPU (WAL and sign bytes are encoded
    # for every message).  Subclasses (IntEnum, ...) take the general path.
    kind = type(value)
    if kind in _LEAVES:
        return
    if kind is int:
        if not INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
            raise CodecError(f"integer {value} outside msgpack range")
        return
    if kind is list or kind is tuple:
        if depth >= _DEPTH_MAX and len(value):  # type: ignore[arg-type]
            raise CodecError(f"nesting deeper than {_DEPTH_MAX}")
        for item in value:  # type: ignore[attr-defined]
            item_kind = type(item)
            if item_kind in _LEAVES:
                continue
            if item_kind is int and INT_MIN <= item <= INT_MAX:
                continue
            _check_encodable(item, depth + 1)
        return
    _check_encodable_general(value, depth)


def _check_encodable_general(value: object, depth: int) -> None:
    if depth > _DEPTH_MAX:
        raise CodecError(f"nesting deeper than {_DEPTH_MAX}")
    if value is None or isinstance(value, bool | bytes | str):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise CodecError(f"integer {value} outside msgpack range")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_encodable(item, depth + 1)
        return
    raise CodecError(f"type {type(value).__name__} is not canonical-encodable")


def expect_list(value: Value, length: int, what: str) -> Sequence[Value]:
    """Return `value` as a list of exactly `length` items or raise a CodecError naming `what`."""
    if not isinstance(value, list | tuple) or len(value) != length:
        raise CodecError(f"{what}: expected an array of {length} items")
    return value


def expect_int(value: Value, what: str, lo: int = INT_MIN, hi: int = INT_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise CodecError(f"{what}: expected an integer in [{lo}, {hi}]")
    return value


def expect_bytes(
    value: Value, what: str, size: int | None = None, size_max: int | None = None
) -> bytes:
    if not isinstance(value, bytes):
        raise CodecError(f"{what}: expected bytes")
    if size is not None and len(value) != size:
        raise CodecError(f"{what}: expected {size} bytes, got {len(value)}")
    if size_max is not None and len(value) > size_max:
        raise CodecError(f"{what}: {len(value)} bytes exceeds {size_max}")
    return value


def expect_str(value: Value, what: str, size_max: int = 256) -> str:
    if not isinstance(value, str) or len(value) > size_max:
        raise CodecError(f"{what}: expected a string of at most {size_max} characters")
    return value


def expect_bool(value: Value, what: str) -> bool:
    if not isinstance(value, bool):
        raise CodecError(f"{what}: expected a boolean")
    return value


def expect_seq(value: Value, what: str, items_max: int) -> Sequence[Value]:
    if not isinstance(value, list | tuple) or len(value) > items_max:
        raise CodecError(f"{what}: expected an array of at most {items_max} items")
    return value
