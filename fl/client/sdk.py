"""The FL client SDK: fetch the model, train, quantize, sign, submit, wait for the next round.

    client = FLClient(key, transport, trainer, x, y)
    while True:
        result = client.run_round()       # one update for the open round
        client.wait_next_round()

`build_update` is split out so a simulation (or an attacker in `fedchain eval`) can change the
delta between training and signing.
"""

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from consensus.codec import decode, expect_bytes, expect_int, expect_list
from consensus.crypto import PrivateKey
from fl.client.errors import ClientError
from fl.client.quantize import clip_delta, model_to_float, quantize
from fl.client.trainers import Trainer
from fl.client.transport import SubmitResult, Transport
from fl.fixed import model_from_bytes
from fl.model import Shapes, decode_shapes
from fl.params import Params, decode_params
from fl.txs import KIND_SUBMIT_UPDATE, SubmitUpdate, sign_tx

FloatArray = npt.NDArray[np.float64]
LabelArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class RemoteModel:
    round: int
    version: int
    hash: bytes
    shapes: Shapes
    weights: FloatArray


def fetch_model(transport: Transport) -> RemoteModel:
    version, model_hash, shapes_v, weights_v = expect_list(
        decode(transport.query("model")), 4, "model"
    )
    round_info = expect_list(decode(transport.query("round")), 8, "round")
    units = model_from_bytes(expect_bytes(weights_v, "weights"))
    return RemoteModel(
        round=expect_int(round_info[0], "round"),
        version=expect_int(version, "version"),
        hash=expect_bytes(model_hash, "model hash", 32),
        shapes=decode_shapes(shapes_v),
        weights=model_to_float(units),
    )


def fetch_params(transport: Transport) -> Params:
    return decode_params(decode(transport.query("params")))


def next_nonce(transport: Transport, key: PrivateKey) -> int:
    (nonce,) = expect_list(decode(transport.query(f"account/{key.public_key.hex()}")), 1, "account")
    return expect_int(nonce, "nonce", 0)


def build_update(
    key: PrivateKey,
    chain_id: str,
    nonce: int,
    model: RemoteModel,
    delta: FloatArray,
    samples: int,
    params: Params,
    bits: int = 16,
    rng: np.random.Generator | None = None,
) -> bytes:
    """Clip, quantize and sign `delta` as a submit_update for the model's open round."""
    q = quantize(clip_delta(delta, params.update_norm_max), bits, rng)
    body = SubmitUpdate(
        round=model.round,
        base_hash=model.hash,
        samples=max(1, samples),
        scale_exp=q.scale_exp,
        bits=q.bits,
        count=q.count,
        delta=q.data,
    )
    return sign_tx(key, chain_id, KIND_SUBMIT_UPDATE, nonce, body.encode()).to_wire()


@dataclass(slots=True)
class FLClient:
    key: PrivateKey
    transport: Transport
    trainer: Trainer
    x: FloatArray
    y: LabelArray
    seed: int = 0
    bits: int = 16
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def train(self, model: RemoteModel) -> FloatArray:
        if model.shapes != self.trainer.shapes():
            raise ClientError(f"chain model shapes {model.shapes} differ from the trainer's")
        delta: FloatArray = (
            self.trainer.train(model.weights, self.x, self.y, self._rng) - model.weights
        )
        return delta

    def run_round(self) -> tuple[RemoteModel, SubmitResult]:
        model = fetch_model(self.transport)
        delta = self.train(model)
        tx = build_update(
            self.key,
            self.transport.chain_id(),
            next_nonce(self.transport, self.key),
            model,
            delta,
            len(self.y),
            fetch_params(self.transport),
            self.bits,
            self._rng,
        )
        return model, self.transport.submit(tx)

    def wait_next_round(self, model: RemoteModel, blocks_max: int = 1000) -> None:
        self.transport.wait_for_round(model.round + 1, blocks_max)
