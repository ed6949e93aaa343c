"""Governable parameters, genesis parsing and the fixed-point edge cases."""

from dataclasses import fields

import numpy as np
import pytest

from consensus.codec import decode, encode
from consensus.errors import CodecError
from fl.errors import RejectedError
from fl.fixed import (
    DELTA_ABS_MAX,
    MODEL_ABS_MAX,
    apply_delta,
    delta_from_wire,
    model_from_bytes,
    model_to_bytes,
)
from fl.genesis import build_app_state, parse_app_state
from fl.params import GOVERNABLE, RULES, Params, decode_params, encode_params, with_value


def test_every_field_is_governable_and_roundtrips() -> None:
    assert [s.name for s in GOVERNABLE] == [f.name for f in fields(Params)]
    params = with_value(Params(), "rule", "multi_krum")
    data = encode(encode_params(params))
    assert decode_params(decode(data)) == params
    assert encode(encode_params(decode_params(decode(data)))) == data


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("rule", "mean"),
        ("rule", 3),
        ("updates_per_round", 0),
        ("updates_per_round", 5000),
        ("trim_permille", 500),
        ("clip_drop_permille", 500),
        ("updates_min", 11),  # above updates_per_round (10)
        ("no_such_parameter", 1),
        ("round_deadline_ms", True),
    ],
)
def test_with_value_refuses_out_of_range(name: str, value: int | str) -> None:
    with pytest.raises(RejectedError):
        with_value(Params(), name, value)


def test_every_rule_is_accepted() -> None:
    for rule in RULES:
        assert with_value(Params(), "rule", rule).rule == rule


def test_decode_params_refuses_reordered_or_missing_entries() -> None:
    entries = encode_params(Params())
    assert isinstance(entries, list)
    with pytest.raises(CodecError):
        decode_params(entries[::-1])
    with pytest.raises(CodecError):
        decode_params(entries[:-1])


def test_genesis_roundtrip_and_errors() -> None:
    weights = np.arange(6, dtype=np.int64) - 3
    parsed = parse_app_state(build_app_state(((2, 3),), weights, Params(rule="median")))
    assert parsed.shapes == ((2, 3),)
    assert parsed.weights.tolist() == weights.tolist()
    assert parsed.params.rule == "median"
    assert parse_app_state(b"").shapes == ((1,),)
    for bad in (
        b"\xc1",
        encode(["other/v1", []]),
        encode(["fedchain/fl-genesis/v1", []]),
        build_app_state(((2, 3),), np.zeros(5, dtype=np.int64)),
    ):
        with pytest.raises(RejectedError):
            parse_app_state(bad)


def test_model_saturates_instead_of_overflowing() -> None:
    weights = np.array([MODEL_ABS_MAX, -MODEL_ABS_MAX, 0], dtype=np.int64)
    delta = np.array([DELTA_ABS_MAX, -DELTA_ABS_MAX, DELTA_ABS_MAX], dtype=np.int64)
    assert apply_delta(weights, delta).tolist() == [MODEL_ABS_MAX, -MODEL_ABS_MAX, DELTA_ABS_MAX]
    assert model_from_bytes(model_to_bytes(weights)).tolist() == weights.tolist()
    with pytest.raises(RejectedError):
        model_from_bytes(model_to_bytes(weights + 1))


def test_delta_conversion_at_the_widest_inputs() -> None:
    widest = np.array([2**31 - 1, -(2**31)], dtype="<i4").tobytes()
    with pytest.raises(RejectedError, match="exceeds"):
        delta_from_wire(widest, 32, 0, 2)  # shifted by 16 it is far out of range, not wrapped
    # at scale 2**31 the same integers are about +-1.0: 65535 and -65536 model units (floor)
    assert delta_from_wire(widest, 32, 31, 2).tolist() == [65535, -65536]
    with pytest.raises(RejectedError):
        delta_from_wire(widest, 24, 0, 2)
    with pytest.raises(RejectedError):
        delta_from_wire(widest, 32, 41, 2)
