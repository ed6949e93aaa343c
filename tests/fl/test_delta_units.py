"""The fast delta decoder agrees with the straightforward int64 one, value and error alike."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl.errors import RejectedError
from fl.fixed import (
    DELTA_ABS_MAX,
    DTYPES,
    FRAC_BITS,
    SCALE_EXP_MAX,
    delta_from_wire,
    delta_units_int32,
    squared_norm,
)


def _reference(data: bytes, bits: int, scale_exp: int) -> np.ndarray | str:
    """The original decoder: widen to int64, shift, then range-check |units|."""
    q = np.frombuffer(data, dtype=DTYPES[bits]).astype(np.int64)
    shift = FRAC_BITS - scale_exp
    units = q << shift if shift >= 0 else q >> -shift
    if units.size and int(np.abs(units).max()) > DELTA_ABS_MAX:
        return f"delta coordinate {int(np.abs(units).max())} exceeds the bound {DELTA_ABS_MAX}"
    return units


@settings(max_examples=300, deadline=None)
@given(
    bits=st.sampled_from([8, 16, 32]),
    scale_exp=st.integers(0, SCALE_EXP_MAX),
    seed=st.integers(0, 2**32 - 1),
    size=st.integers(0, 64),
    magnitude_bits=st.integers(0, 31),
)
def test_matches_the_int64_reference(
    bits: int, scale_exp: int, seed: int, size: int, magnitude_bits: int
) -> None:
    rng = np.random.default_rng(seed)
    top = min(1 << min(magnitude_bits, bits - 1), (1 << (bits - 1)) - 1)
    q = rng.integers(-top - 1, top + 1, size=size).astype(DTYPES[bits])
    data = q.tobytes()
    expected = _reference(data, bits, scale_exp)
    if isinstance(expected, str):
        with pytest.raises(RejectedError) as info:
            delta_units_int32(data, bits, scale_exp, size)
        assert str(info.value) == expected
        return
    got = delta_units_int32(data, bits, scale_exp, size)
    assert got.dtype == np.int32
    assert got.flags.writeable
    assert got.tolist() == expected.tolist()
    assert delta_from_wire(data, bits, scale_exp, size).tolist() == expected.tolist()
    assert squared_norm(got) == squared_norm(expected) == sum(int(x) ** 2 for x in expected)


@pytest.mark.parametrize("shift", [-10, -1, 0, 1, 16])
def test_values_around_the_bound_match_the_reference(shift: int) -> None:
    scale_exp = FRAC_BITS - shift
    edge = DELTA_ABS_MAX >> shift if shift >= 0 else DELTA_ABS_MAX << -shift
    accepted = 0
    for base in (edge, -edge):
        for step in range(-(1 << max(0, -shift)) - 1, (1 << max(0, -shift)) + 2):
            data = np.array([base + step], dtype="<i4").tobytes()
            expected = _reference(data, 32, scale_exp)
            if isinstance(expected, str):
                with pytest.raises(RejectedError, match="exceeds the bound"):
                    delta_units_int32(data, 32, scale_exp, 1)
            else:
                assert delta_units_int32(data, 32, scale_exp, 1).tolist() == expected.tolist()
                accepted += 1
    assert 0 < accepted < 2 * (2 * (1 << max(0, -shift)) + 3)  # both sides of the bound seen


def test_squared_norm_at_the_declared_bound_is_exact() -> None:
    v = np.full(1 << 20, -DELTA_ABS_MAX, dtype=np.int32)
    assert squared_norm(v) == (1 << 20) * DELTA_ABS_MAX**2 == 2**60
