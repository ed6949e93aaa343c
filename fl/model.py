"""The global model as the chain holds it: layer shapes plus one flat int64 vector.

A model version's hash commits to the version number, the shapes and the weights, so a round's
base hash names exactly one model on every validator.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from consensus.codec import Value, encode, expect_int, expect_seq
from consensus.crypto import sha256
from consensus.errors import CodecError
from fl.fixed import PARAMS_MAX, IntArray, model_to_bytes

MODEL_DOMAIN = "fedchain/model/v1"
LAYERS_MAX = 64
RANK_MAX = 4

Shapes = tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True)
class ModelVersion:
    version: int
    shapes: Shapes
    weights: IntArray  # never mutated once built
    hash: bytes

    @classmethod
    def build(cls, version: int, shapes: Shapes, weights: IntArray) -> "ModelVersion":
        return cls(version, shapes, weights, model_hash(version, shapes, model_to_bytes(weights)))

    def encode(self) -> Value:
        return [self.version, self.hash, encode_shapes(self.shapes), model_to_bytes(self.weights)]


def model_hash(version: int, shapes: Shapes, weights_bytes: bytes) -> bytes:
    return sha256(encode([MODEL_DOMAIN, version, encode_shapes(shapes), weights_bytes]))


def parameter_count(shapes: Shapes) -> int:
    return sum(math.prod(shape) for shape in shapes)


def encode_shapes(shapes: Shapes) -> list[Value]:
    return [list(shape) for shape in shapes]


def decode_shapes(value: Value) -> Shapes:
    layers = expect_seq(value, "model shapes", LAYERS_MAX)
    shapes: list[tuple[int, ...]] = []
    for layer in layers:
        dims = expect_seq(layer, "layer shape", RANK_MAX)
        shapes.append(tuple(expect_int(d, "dimension", 1, PARAMS_MAX) for d in dims))
    result = tuple(shapes)
    if not result or parameter_count(result) > PARAMS_MAX:
        raise CodecError(f"model must have between 1 and {PARAMS_MAX} parameters")
    return result


def zeros(shapes: Sequence[tuple[int, ...]]) -> IntArray:
    return np.zeros(parameter_count(tuple(shapes)), dtype=np.int64)
