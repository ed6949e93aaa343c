"""The FL part of the genesis file: named sections, so other layers can add their own.

    app_state = encode(["fedchain/fl-genesis/v1", [[name, value], ...]])

Known sections: "model" -> [shapes, int64 LE weights or b"" for zeros], "params" -> the params
encoding.  An empty app_state means the default: a one-weight zero model and default params
(unit tests and in-process drivers; `fedchain testnet` always writes a model section).
"""

from dataclasses import dataclass, field

import numpy as np

from consensus.codec import Value, decode, encode, expect_bytes, expect_list, expect_seq, expect_str
from consensus.errors import CodecError
from fl.errors import RejectedError
from fl.fixed import IntArray, model_from_bytes, model_to_bytes
from fl.model import Shapes, decode_shapes, encode_shapes, parameter_count
from fl.params import Params, decode_params, encode_params

GENESIS_DOMAIN = "fedchain/fl-genesis/v1"
SECTIONS_MAX = 32


@dataclass(frozen=True, slots=True)
class FLGenesis:
    shapes: Shapes = ((1,),)
    weights: IntArray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    params: Params = field(default_factory=Params)
    # Sections this module does not know, left for other layers (economics, governance).
    other: tuple[tuple[str, Value], ...] = ()


def build_app_state(
    shapes: Shapes,
    weights: IntArray | None = None,
    params: Params | None = None,
    other: tuple[tuple[str, Value], ...] = (),
) -> bytes:
    weight_bytes = b"" if weights is None else model_to_bytes(weights)
    sections: list[Value] = [
        ["model", [encode_shapes(shapes), weight_bytes]],
        ["params", encode_params(params or Params())],
    ]
    sections.extend([name, value] for name, value in other)
    return encode([GENESIS_DOMAIN, sections])


def parse_app_state(app_state: bytes) -> FLGenesis:
    if not app_state:
        return FLGenesis()
    try:
        domain, sections_v = expect_list(decode(app_state), 2, "fl genesis")
        if domain != GENESIS_DOMAIN:
            raise CodecError(f"expected domain {GENESIS_DOMAIN!r}")
        shapes: Shapes | None = None
        weights: IntArray | None = None
        params = Params()
        other: list[tuple[str, Value]] = []
        for item in expect_seq(sections_v, "genesis sections", SECTIONS_MAX):
            name_v, value = expect_list(item, 2, "genesis section")
            match expect_str(name_v, "section name"):
                case "model":
                    shapes_v, weights_v = expect_list(value, 2, "model section")
                    shapes = decode_shapes(shapes_v)
                    raw = expect_bytes(weights_v, "weights")
                    size = parameter_count(shapes)
                    weights = np.zeros(size, dtype=np.int64) if not raw else model_from_bytes(raw)
                    if weights.size != size:
                        raise CodecError(f"weights have {weights.size} values, shapes {size}")
                case "params":
                    params = decode_params(value)
                case name:
                    other.append((name, value))
    except (CodecError, RejectedError) as exc:
        raise RejectedError(f"bad FL genesis: {exc}") from None
    if shapes is None or weights is None:
        raise RejectedError("bad FL genesis: no model section")
    return FLGenesis(shapes, weights, params, tuple(other))
