"""The FL application inside the seeded consensus simulator, in place of the key-value app.

Four validators run the Tendermint engine over the simulator's faulty network (drops,
duplicates, delays, partitions, crashes and restarts); FL clients'
signed updates reach each proposer's mempool built against that proposer's view of the open
round.  Every validator must end with the same app hash at every height and the same model.
"""

from dataclasses import replace

import numpy as np
import pytest

import consensus.sim.node
from consensus.app import CheckTxResult
from consensus.crypto import PrivateKey
from consensus.sim.config import SimConfig
from consensus.sim.node import SimNode
from consensus.sim.runner import Simulation
from fl.app import FLApp
from fl.errors import RejectedError
from fl.genesis import build_app_state
from fl.params import Params
from fl.txs import KIND_SUBMIT_UPDATE, SubmitUpdate, decode_tx, sign_tx, verify_tx

SHAPES = ((10, 64), (10,))
SIZE = 650
CLIENTS = 6
PARAMS = replace(Params(), updates_per_round=4, round_deadline_ms=5_000)


class ClientPool:
    """Signed updates for the round a proposer sees open; deltas seeded by (round, client)."""

    def __init__(self, chain_id: str) -> None:
        self.chain_id = chain_id
        self.keys = [PrivateKey.from_label(f"sim-fl-client-{i}") for i in range(CLIENTS)]
        self._cache: dict[tuple[int, bytes, int, int], bytes] = {}

    def txs_for(self, node: SimNode, height: int, round_: int) -> list[bytes]:
        app = node.app
        assert isinstance(app, FLApp)
        state = app.state
        txs = []
        for i, key in enumerate(self.keys):
            if key.public_key in state.pending_by_client:
                continue
            nonce = state.account(key.public_key).nonce
            cache_key = (state.round, state.model.hash, i, nonce)
            if cache_key not in self._cache:
                self._cache[cache_key] = self._update(state.round, state.model.hash, i, nonce)
            txs.append(self._cache[cache_key])
        return txs

    def _update(self, fl_round: int, base_hash: bytes, i: int, nonce: int) -> bytes:
        rng = np.random.default_rng([fl_round, i])
        delta = rng.integers(-3000, 3000, size=SIZE).astype(np.int16)
        if i == CLIENTS - 1:
            delta = (delta * -10).astype(np.int16)  # one attacker, so the rule has work to do
        body = SubmitUpdate(
            fl_round, base_hash, 50 + i, 16, 16, SIZE, delta.astype("<i2").tobytes()
        )
        return sign_tx(
            self.keys[i], self.chain_id, KIND_SUBMIT_UPDATE, nonce, body.encode()
        ).to_wire()


class AuthenticatedTx:
    """The checker's validity test for FL blocks: every committed tx is signed and well formed
    (stateful rules such as the open round legitimately fail per tx and are recorded as such)."""

    def __init__(self, chain_id: str) -> None:
        self.chain_id = chain_id

    def check_tx(self, tx: bytes) -> CheckTxResult:
        try:
            verify_tx(decode_tx(tx), self.chain_id)
        except RejectedError as exc:
            return CheckTxResult(code=1, reason=str(exc))
        return CheckTxResult()


def fl_simulation(config: SimConfig, seed: int, monkeypatch: pytest.MonkeyPatch) -> Simulation:
    # The simulator builds its nodes around the KV app; swap in the FL app and its genesis.
    monkeypatch.setattr(consensus.sim.node, "KVApp", FLApp)
    sim = Simulation(config, seed)
    sim.genesis = replace(sim.genesis, app_state=build_app_state(SHAPES, None, PARAMS))
    pool = ClientPool(sim.genesis.chain_id)
    monkeypatch.setattr(sim, "txs_for", pool.txs_for)
    monkeypatch.setattr(sim.checker, "_kv", AuthenticatedTx(sim.genesis.chain_id))
    for node in sim.nodes:
        node.genesis = sim.genesis
        node.driver = node._boot()
    return sim


@pytest.mark.parametrize("seed", [1, 2])
def test_four_validators_finish_with_the_same_model(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SimConfig(validators=4, duration_ms=60_000, liveness_ms=20_000, faults=True)
    sim = fl_simulation(config, seed, monkeypatch)
    result = sim.run()
    print(f"seed={seed} heights={result.heights_committed}..{result.max_height}")
    assert result.ok, result.violations
    common = result.heights_committed
    assert common >= 10
    hashes_at = {
        node.index: [s.result.app_hash for s in node.stored if s.block.header.height <= common]
        for node in sim.nodes
    }
    assert len({tuple(h) for h in hashes_at.values()}) == 1
    models = set()
    for node in sim.nodes:
        # Replay the node's stored blocks into a fresh app: same hashes, and the model at `common`.
        app = FLApp()
        app.init_chain(sim.genesis)
        for stored in node.stored[:common]:
            assert (
                app.finalize_block(stored.block.txs, stored.info).app_hash == stored.result.app_hash
            )
            app.commit()
        models.add((app.state.model.version, app.state.model.hash))
    assert len(models) == 1
    ((version, _),) = models
    assert version >= 2  # rounds really closed and moved the model
