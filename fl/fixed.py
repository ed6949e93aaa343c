"""Fixed-point numbers and the declared bounds that make int64 aggregation overflow-free.

The global model is a flat vector of int64 "model units": real value = units / 2**FRAC_BITS.
Clients send deltas as int8/int16/int32 with their own power-of-two scale exponent `s`
(real = q / 2**s); the state machine converts them to model units with an exact shift (left when
s <= FRAC_BITS, arithmetic right shift = floor otherwise) and then range-checks them.

Overflow proof (every bound below is checked on input before any arithmetic):
  |delta coordinate|          <= DELTA_ABS_MAX      = 2**20
  parameters per model        <= PARAMS_MAX         = 2**20
  updates per round           <= ROUND_UPDATES_MAX  = 2**12
  sample weight per update    <= SAMPLES_MAX        = 2**20
  squared L2 norm             <= 2**20 * (2**20)**2 = 2**60            < 2**63
  squared distance of 2 deltas<= 2**20 * (2**21)**2 = 2**62            < 2**63
  sample-weighted sum         <= 2**12 * 2**20 * 2**20 = 2**52         < 2**63
  clipped coordinate product  |dev| * radius <= 2**21 * 2**31 = 2**52  < 2**63
  model coordinate            saturates at +-MODEL_ABS_MAX = 2**31 - 1, so model + delta < 2**32.
Sums of more than one int64 bound (Krum scores) are taken in Python ints, which do not overflow.
"""

import numpy as np
import numpy.typing as npt

from fl.errors import RejectedError

FRAC_BITS = 16
ONE = 1 << FRAC_BITS

DELTA_ABS_MAX = 1 << 20
PARAMS_MAX = 1 << 20
ROUND_UPDATES_MAX = 1 << 12
SAMPLES_MAX = 1 << 20
MODEL_ABS_MAX = (1 << 31) - 1
NORM_MAX = 1 << 31  # >= sqrt(PARAMS_MAX) * DELTA_ABS_MAX = 2**30, so every legal norm fits
SCALE_EXP_MAX = 40

# Wire element types of a quantized delta: bits -> little-endian numpy dtype.
DTYPES: dict[int, str] = {8: "<i1", 16: "<i2", 32: "<i4"}

IntArray = npt.NDArray[np.int64]


def delta_from_wire(data: bytes, bits: int, scale_exp: int, count: int) -> IntArray:
    """Decode a quantized delta to model units; raises RejectedError with the reason."""
    dtype = DTYPES.get(bits)
    if dtype is None:
        raise RejectedError(f"delta element width {bits} bits is not one of 8, 16, 32")
    if not 0 <= scale_exp <= SCALE_EXP_MAX:
        raise RejectedError(f"scale exponent {scale_exp} outside [0, {SCALE_EXP_MAX}]")
    if len(data) != count * (bits // 8):
        raise RejectedError(
            f"delta has {len(data)} bytes, expected {count} x {bits // 8} for {count} parameters"
        )
    q = np.frombuffer(data, dtype=dtype).astype(np.int64)
    shift = FRAC_BITS - scale_exp
    # |q| < 2**31 and shift <= 16, so the left shift stays below 2**47 before the range check.
    units = q << shift if shift >= 0 else q >> -shift
    if units.size and int(np.abs(units).max()) > DELTA_ABS_MAX:
        raise RejectedError(
            f"delta coordinate {int(np.abs(units).max())} exceeds the bound {DELTA_ABS_MAX}"
        )
    return units


def squared_norm(v: IntArray) -> int:
    """Exact squared L2 norm (int64 is exact here by the bounds in the module docstring)."""
    return int(np.dot(v, v))


def model_to_bytes(weights: IntArray) -> bytes:
    return weights.astype("<i8").tobytes()


def model_from_bytes(data: bytes) -> IntArray:
    if len(data) % 8:
        raise RejectedError("model bytes are not a whole number of int64 values")
    weights = np.frombuffer(data, dtype="<i8").astype(np.int64)
    if weights.size and int(np.abs(weights).max()) > MODEL_ABS_MAX:
        raise RejectedError(f"model coordinate exceeds {MODEL_ABS_MAX}")
    return weights


def apply_delta(weights: IntArray, delta: IntArray) -> IntArray:
    """New model = old + delta, saturated at +-MODEL_ABS_MAX (both inputs bounded: no overflow)."""
    out: IntArray = np.clip(weights + delta, -MODEL_ABS_MAX, MODEL_ABS_MAX)
    return out
