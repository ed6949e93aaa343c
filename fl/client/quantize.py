"""Float <-> fixed point on the client side.

A delta is clipped to the chain's bounds (per-coordinate range and L2 norm), then quantized to
int16 (default) or int8/int32 with the largest power-of-two scale that fits the element width;
the chain converts it to model units exactly (fl/fixed.py).  Rounding is stochastic when a
generator is given, so quantization error averages out over clients instead of biasing the sum.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fl.client.errors import ClientError
from fl.fixed import DELTA_ABS_MAX, FRAC_BITS, ONE, SCALE_EXP_MAX, IntArray

FloatArray = npt.NDArray[np.float64]

_QMAX = {8: 127, 16: 32767, 32: 2**31 - 1}
_DTYPE = {8: "<i1", 16: "<i2", 32: "<i4"}


@dataclass(frozen=True, slots=True)
class QuantizedDelta:
    bits: int
    scale_exp: int
    data: bytes
    count: int


def model_to_float(units: IntArray) -> FloatArray:
    out: FloatArray = units.astype(np.float64) / ONE
    return out


def float_to_units(values: FloatArray) -> IntArray:
    out: IntArray = np.round(values * ONE).astype(np.int64)
    return out


def clip_delta(delta: FloatArray, norm_max_units: int) -> FloatArray:
    """Clip to the coordinate range (a hair inside) and to the L2 bound, both in real units."""
    if not np.all(np.isfinite(delta)):
        raise ClientError("the trained delta contains NaN or infinity (diverged training?)")
    limit = (DELTA_ABS_MAX - 1) / ONE
    clipped = np.clip(delta, -limit, limit)
    norm_max = 0.999 * norm_max_units / ONE
    norm = float(np.linalg.norm(clipped))
    if norm > norm_max:
        clipped = clipped * (norm_max / norm)
    return clipped


def quantize(
    delta: FloatArray, bits: int = 16, rng: np.random.Generator | None = None
) -> QuantizedDelta:
    qmax = _QMAX[bits]
    peak = float(np.max(np.abs(delta))) if delta.size else 0.0
    if peak == 0.0:
        scale_exp = FRAC_BITS
    else:
        scale_exp = int(np.floor(np.log2(qmax / peak)))
        scale_exp = max(0, min(SCALE_EXP_MAX, scale_exp))
    scaled = delta * float(2**scale_exp)
    if rng is None:
        q = np.round(scaled)
    else:
        low = np.floor(scaled)
        q = low + (rng.random(scaled.shape) < (scaled - low))
    q = np.clip(q, -qmax, qmax).astype(_DTYPE[bits])
    return QuantizedDelta(bits, scale_exp, q.tobytes(), int(delta.size))


def dequantize(q: QuantizedDelta) -> FloatArray:
    values = np.frombuffer(q.data, dtype=_DTYPE[q.bits]).astype(np.float64)
    out: FloatArray = values / float(2**q.scale_exp)
    return out
