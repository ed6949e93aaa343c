"""The FL client SDK: fetch the model, train, quantize, sign, submit, wait for the next round.

    client = FLClient(key, transport, trainer, x, y)
    while True:
        result = client.run_round()       # one update for the open round
        client.wait_next_round()

`build_update` is split out so a simulation (or an attacker in `fedchain eval`) can change the
delta between training and signing.

Commit-reveal chains (`commit_blocks` > 0, see fl/rounds.py): `build_commit_reveal` signs both
transactions at once, the commitment sha256(update, salt) and the reveal (the update and the
salt), and `submit_update` sends the commitment, waits for the round's reveal phase, then
reveals.  The salt must be secret and fresh per round (the shell passes `secrets.token_bytes`):
a guessable salt lets anyone test candidate updates against the public commitment.
"""

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from consensus.codec import decode, expect_bytes, expect_int, expect_list, expect_str
from consensus.crypto import PrivateKey
from fl.client.errors import ClientError
from fl.client.quantize import clip_delta, model_to_float, quantize
from fl.client.trainers import Trainer
from fl.client.transport import SubmitResult, Transport
from fl.fixed import model_from_bytes
from fl.model import Shapes, decode_shapes
from fl.params import Params, decode_params
from fl.txs import (
    KIND_COMMIT_UPDATE,
    KIND_REVEAL_UPDATE,
    KIND_SUBMIT_UPDATE,
    SALT_BYTES,
    CommitUpdate,
    SubmitUpdate,
    commitment,
    sign_tx,
)

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


def round_phase(transport: Transport) -> tuple[int, str]:
    """(open round, "single" | "commit" | "reveal")."""
    items = expect_list(decode(transport.query("round/phase")), 5, "round phase")
    return expect_int(items[0], "round", 0), expect_str(items[1], "phase")


def _update_body(
    model: RemoteModel,
    delta: FloatArray,
    samples: int,
    params: Params,
    bits: int,
    rng: np.random.Generator | None,
) -> SubmitUpdate:
    q = quantize(clip_delta(delta, params.update_norm_max), bits, rng)
    return SubmitUpdate(
        round=model.round,
        base_hash=model.hash,
        samples=max(1, samples),
        scale_exp=q.scale_exp,
        bits=q.bits,
        count=q.count,
        delta=q.data,
    )


def build_commit_reveal(
    key: PrivateKey,
    chain_id: str,
    nonce: int,
    model: RemoteModel,
    delta: FloatArray,
    samples: int,
    params: Params,
    salt: bytes,
    bits: int = 16,
    rng: np.random.Generator | None = None,
) -> tuple[bytes, bytes]:
    """(commit_update at `nonce`, reveal_update at `nonce` + 1), both signed."""
    if len(salt) != SALT_BYTES:
        raise ClientError(f"salt must be {SALT_BYTES} bytes")
    body = _update_body(model, delta, samples, params, bits, rng).encode()
    digest = commitment(key.public_key, model.round, body, salt)
    commit = sign_tx(
        key, chain_id, KIND_COMMIT_UPDATE, nonce, CommitUpdate(model.round, digest).encode()
    )
    reveal = sign_tx(key, chain_id, KIND_REVEAL_UPDATE, nonce + 1, [body, salt])
    return commit.to_wire(), reveal.to_wire()


def submit_update(
    transport: Transport,
    key: PrivateKey,
    model: RemoteModel,
    delta: FloatArray,
    samples: int,
    params: Params,
    wait_block: Callable[[], None],
    salt: bytes | None = None,
    bits: int = 16,
    rng: np.random.Generator | None = None,
    blocks_max: int = 1000,
) -> SubmitResult:
    """Send `delta` for the model's round the way the chain wants it: one submit_update, or a
    commitment, then (once the reveal phase opens; `wait_block` waits about one block) the
    reveal.  The result is the last transaction's admission."""
    chain_id = transport.chain_id()
    nonce = next_nonce(transport, key)
    fl_round, phase = round_phase(transport)
    if phase == "single":
        tx = build_update(key, chain_id, nonce, model, delta, samples, params, bits, rng)
        return transport.submit(tx)
    if fl_round != model.round or phase != "commit":
        return SubmitResult(False, f"round {fl_round} is in its {phase} phase: too late to commit")
    commit, reveal = build_commit_reveal(
        key,
        chain_id,
        nonce,
        model,
        delta,
        samples,
        params,
        salt if salt is not None else secrets.token_bytes(SALT_BYTES),
        bits,
        rng,
    )
    result = transport.submit(commit)
    if not result.accepted:
        return result
    for _ in range(blocks_max):
        fl_round, phase = round_phase(transport)
        if fl_round != model.round:
            return SubmitResult(False, f"round {model.round} closed before its reveal phase")
        if phase == "reveal" and next_nonce(transport, key) == nonce + 1:
            return transport.submit(reveal)
        wait_block()
    return SubmitResult(False, f"no reveal phase within {blocks_max} blocks")


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
    body = _update_body(model, delta, samples, params, bits, rng)
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
    # Waits about one block (commit-reveal waits for the reveal phase); the shell sleeps.
    wait_block: Callable[[], None] = lambda: None
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
        result = submit_update(
            self.transport,
            self.key,
            model,
            delta,
            len(self.y),
            fetch_params(self.transport),
            self.wait_block,
            bits=self.bits,
            rng=self._rng,
        )
        return model, result

    def wait_next_round(self, model: RemoteModel, blocks_max: int = 1000) -> None:
        self.transport.wait_for_round(model.round + 1, blocks_max)
