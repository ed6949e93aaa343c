"""Builders shared by the FL tests: a genesis, a block, a signed update from integer deltas."""

from dataclasses import replace

import numpy as np

from consensus.app import BlockInfo, FinalizeResult, Genesis, GenesisValidator
from consensus.crypto import PrivateKey
from fl.app import FLApp
from fl.fixed import FRAC_BITS, IntArray
from fl.genesis import build_app_state
from fl.model import Shapes
from fl.params import Params
from fl.txs import KIND_SUBMIT_UPDATE, SubmitUpdate, sign_tx

CHAIN_ID = "fedchain-test"
SHAPES: Shapes = ((3, 4), (3,))
SIZE = 15
# Small K, and a norm bound a 15-parameter delta can exceed (sqrt(15) * 16 > 32).
DEFAULT_PARAMS = replace(Params(), updates_per_round=3, update_norm_max=32 << FRAC_BITS)


def genesis(params: Params | None = None, shapes: Shapes = SHAPES) -> Genesis:
    return Genesis(
        chain_id=CHAIN_ID,
        validators=(GenesisValidator(PrivateKey.from_label("v0").public_key, 1),),
        app_state=build_app_state(shapes, None, params or DEFAULT_PARAMS),
    )


def new_app(params: Params | None = None, shapes: Shapes = SHAPES) -> FLApp:
    app = FLApp()
    app.init_chain(genesis(params, shapes))
    return app


def key(i: int) -> PrivateKey:
    return PrivateKey.from_label(f"client-{i}")


def block(app: FLApp) -> BlockInfo:
    height = app.state.height + 1
    return BlockInfo(CHAIN_ID, height, height * 1000, PrivateKey.from_label("v0").public_key)


def run_block(app: FLApp, txs: list[bytes]) -> FinalizeResult:
    result = app.finalize_block(txs, block(app))
    app.commit()
    return result


def update_tx(
    app: FLApp,
    client: PrivateKey,
    delta_units: IntArray,
    *,
    nonce: int | None = None,
    round_number: int | None = None,
    base_hash: bytes | None = None,
    samples: int = 10,
    count: int | None = None,
    chain_id: str = CHAIN_ID,
) -> bytes:
    """A submit_update carrying `delta_units` exactly (int32 at scale FRAC_BITS)."""
    state = app.state
    body = SubmitUpdate(
        round=state.round if round_number is None else round_number,
        base_hash=state.model.hash if base_hash is None else base_hash,
        samples=samples,
        scale_exp=FRAC_BITS,
        bits=32,
        count=delta_units.size if count is None else count,
        delta=delta_units.astype("<i4").tobytes(),
    )
    n = state.account(client.public_key).nonce if nonce is None else nonce
    return sign_tx(client, chain_id, KIND_SUBMIT_UPDATE, n, body.encode()).to_wire()


def random_delta(rng: np.random.Generator, size: int = SIZE, bound: int = 1 << 16) -> IntArray:
    out: IntArray = rng.integers(-bound, bound + 1, size=size, dtype=np.int64)
    return out
