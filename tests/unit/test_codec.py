"""Canonical msgpack: round-trips exactly, and every bad input is one error type."""

from enum import IntEnum

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.codec import DecodeLimits, decode, encode
from consensus.errors import CodecError

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=64)
    | st.text(max_size=32),
    lambda children: st.lists(children, max_size=6),
    max_leaves=30,
)


@given(values)
def test_encode_decode_roundtrip_is_identity_on_bytes(value: object) -> None:
    data = encode(value)  # type: ignore[arg-type]
    assert encode(decode(data)) == data


@given(st.binary(max_size=256))
def test_garbage_raises_only_codec_error(data: bytes) -> None:
    try:
        value = decode(data)
    except CodecError:
        return
    assert encode(value) == data


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (msgpack.packb({"a": 1}), "maps are not canonical"),
        (msgpack.packb(1.5), "floats are not canonical"),
        (b"\xd1\x00\x01", "int16 encoding of 1 is not minimal"),
        (msgpack.packb([1, 2]) + b"\x00", "trailing bytes"),
        (b"\xc4\x05ab", "truncated bin"),
    ],
)
def test_rejects_non_canonical_input(data: bytes, why: str) -> None:
    with pytest.raises(CodecError):
        decode(data)


def test_declared_length_is_checked_before_allocation() -> None:
    # A bin32 header claiming 4 GiB with no payload must fail on the limit, not on memory.
    header = b"\xc6\xff\xff\xff\xff"
    with pytest.raises(CodecError):
        decode(header, DecodeLimits(bin_bytes_max=1024))


def test_encode_refuses_floats_and_dicts() -> None:
    with pytest.raises(CodecError):
        encode(1.0)  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        encode({"a": 1})  # type: ignore[arg-type]


class _Kind(IntEnum):
    A = 7


def _nested(value: object, depth: int) -> object:
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "bad",
    [
        [1, [2, [1.5]]],
        (b"x", {"k": 1}),
        [2**64],
        [[-(2**63) - 1]],
        _nested(1, 33),
        _nested([], 34),
        [bytearray(b"x")],
    ],
)
def test_encode_refuses_bad_values_at_any_depth(bad: object) -> None:
    with pytest.raises(CodecError):
        encode(bad)  # type: ignore[arg-type]


def test_encode_accepts_the_deepest_allowed_nesting_and_int_subclasses() -> None:
    assert decode(encode(_nested(1, 32))) == _nested(1, 32)  # type: ignore[arg-type]
    assert decode(encode(_nested([], 32))) == _nested([], 32)  # type: ignore[arg-type]
    assert encode([_Kind.A, (True, None)]) == encode([7, [True, None]])
