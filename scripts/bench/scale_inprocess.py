"""Scale, in process: the FL application alone (no network, no consensus) closing a round of
1,000 signed updates to a 100k-parameter model.

This is NOT the validator figure the scale target names; it is the application's share of it,
measured with the node's own app object (`node.apps.build_app("fl")`) driven exactly as a
validator drives it: check_tx on admission, then blocks cut at the node's default
`block_bytes_max`, each through process_proposal, finalize_block and commit.  The last block
holds the last update and closes the round (integer aggregation, new model, app hash).

Reported: generation is off the clock; check_tx per update; every block's
process + finalize + commit; the last block alone (the app's part of "last update to new
model"); the aggregation rule alone on the same pending deltas; peak RSS of this process, which
also holds the 1,000 transactions the way a mempool would.
"""

import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bench.fedchain_side import Answers
from bench.stats import summarize
from consensus.app import Application, BlockInfo, Genesis, GenesisValidator
from consensus.crypto import PrivateKey
from fl.aggregate import ClientUpdate, aggregate
from fl.client.quantize import float_to_units
from fl.client.sdk import build_update, fetch_model
from fl.fixed import delta_from_wire
from fl.genesis import build_app_state
from fl.model import Shapes, parameter_count
from fl.params import Params
from fl.txs import SubmitUpdate, decode_tx
from node.apps import build_app
from node.config import ConsensusConfig

CHAIN_ID = "fedchain-scale"
# A 784-126-10 MLP (MNIST-sized): 100,180 parameters.
MLP_SHAPES: Shapes = ((126, 784), (126,), (10, 126), (10,))


@dataclass(frozen=True, slots=True)
class ScaleSpec:
    clients: int = 1000
    shapes: Shapes = MLP_SHAPES
    rule: str = "fedavg"
    bits: int = 16
    seed: int = 0

    @property
    def parameters(self) -> int:
        return parameter_count(self.shapes)


def scale_params(spec: ScaleSpec) -> Params:
    return replace(
        Params(),
        rule=spec.rule,
        updates_per_round=spec.clients,
        updates_min=1,
        round_deadline_ms=100_000_000,
    )


def scale_app_state(spec: ScaleSpec) -> bytes:
    rng = np.random.default_rng(spec.seed)
    weights = float_to_units(rng.normal(0.0, 0.05, spec.parameters))
    return build_app_state(spec.shapes, weights, scale_params(spec))


def scale_key(client: int) -> PrivateKey:
    return PrivateKey.from_label(f"fedchain-scale-client-{client}")


def make_updates(spec: ScaleSpec, model_answers: Answers, chain_id: str) -> list[bytes]:
    """One signed update per client for round 0, like trained deltas (small, dense)."""
    model = fetch_model(model_answers)
    params = scale_params(spec)
    rng = np.random.default_rng(spec.seed + 1)
    txs = []
    for c in range(spec.clients):
        delta = rng.normal(0.0, 0.01, spec.parameters)
        samples = int(rng.integers(10, 200))
        txs.append(
            build_update(scale_key(c), chain_id, 0, model, delta, samples, params, spec.bits, rng)
        )
    return txs


def _blocks(txs: Sequence[bytes], block_bytes_max: int) -> list[list[bytes]]:
    blocks: list[list[bytes]] = [[]]
    size = 0
    for tx in txs:
        if blocks[-1] and size + len(tx) > block_bytes_max:
            blocks.append([])
            size = 0
        blocks[-1].append(tx)
        size += len(tx)
    return blocks


def _answers(app: Application) -> Answers:
    return Answers(CHAIN_ID, {p: app.query(p, b"").value for p in ("model", "round")})


def run_inprocess(spec: ScaleSpec) -> dict[str, Any]:
    validator = PrivateKey.from_label("fedchain-scale-validator").public_key
    genesis = Genesis(CHAIN_ID, (GenesisValidator(validator, 1),), scale_app_state(spec))
    app = build_app("fl")
    app.init_chain(genesis)
    answers = _answers(app)
    started = time.perf_counter()
    txs = make_updates(spec, answers, CHAIN_ID)
    generate_s = time.perf_counter() - started

    check_s = []
    for tx in txs:
        t0 = time.perf_counter()
        result = app.check_tx(tx)
        check_s.append(time.perf_counter() - t0)
        if result.code != 0:
            raise RuntimeError(f"check_tx refused a scale update: {result.reason}")

    block_bytes_max = ConsensusConfig().block_bytes_max
    blocks = _blocks(txs, block_bytes_max)
    block_s = []
    block_cpu_s = []
    for height, block_txs in enumerate(blocks, start=1):
        info = BlockInfo(CHAIN_ID, height, 1_000 * height, validator)
        t0, c0 = time.perf_counter(), time.process_time()
        chosen = app.prepare_proposal(block_txs, info, block_bytes_max)
        if len(chosen) != len(block_txs) or not app.process_proposal(chosen, info):
            raise RuntimeError(f"block {height}: proposal lost transactions")
        app.finalize_block(chosen, info)
        app.commit()
        block_s.append(time.perf_counter() - t0)
        block_cpu_s.append(time.process_time() - c0)
    closed = fetch_model(
        Answers(CHAIN_ID, {p: app.query(p, b"").value for p in ("model", "round")})
    )
    if closed.round != 1 or closed.version != 1:
        raise RuntimeError(f"round did not close: round {closed.round}, model {closed.version}")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    # The rule alone, on the same updates (the chain sorts them by client key itself).
    updates = updates_from_txs(txs)
    t0, c0 = time.perf_counter(), time.process_time()
    aggregate(spec.rule, updates, scale_params(spec))
    aggregate_s = time.perf_counter() - t0
    aggregate_cpu_s = time.process_time() - c0
    return {
        "mode": "in-process FL app (no network, no consensus)",
        "clients": spec.clients,
        "parameters": spec.parameters,
        "rule": spec.rule,
        "delta_bits": spec.bits,
        "tx_bytes": len(txs[0]),
        "generate_s": generate_s,
        "check_tx": summarize(check_s).as_dict(),
        "blocks": len(blocks),
        "block_bytes_max": block_bytes_max,
        "block_s": block_s,
        "all_blocks_s": sum(block_s),
        "last_block_s": block_s[-1],
        "last_block_cpu_s": block_cpu_s[-1],
        "aggregate_only_s": aggregate_s,
        "aggregate_only_cpu_s": aggregate_cpu_s,
        "peak_rss_bytes": peak_rss,
    }


def updates_from_txs(txs: Sequence[bytes]) -> list[ClientUpdate]:
    """Every update of the round in model units, decoded from the transactions."""
    out = []
    for tx in txs:
        signed = decode_tx(tx)
        body = SubmitUpdate.decode(signed.body)
        delta = delta_from_wire(body.delta, body.bits, body.scale_exp, body.count)
        out.append(ClientUpdate(signed.sender, body.samples, delta))
    return out
