"""The same blocks give the same app hashes in processes with different hash seeds and threads."""

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from consensus.codec import Value, encode
from fl.model import Shapes
from fl.params import RULES, Params, encode_params
from tests.fl.helpers import key, new_app, run_block, update_tx
from tests.fl.replay import replay

ROOT = Path(__file__).resolve().parents[2]
SHAPES: Shapes = ((50, 400),)  # 20,000 parameters: large enough for BLAS to use threads
CLIENTS = 16
ROUNDS = 3


def _record_chains() -> tuple[bytes, list[str]]:
    chains: list[Value] = []
    hashes: list[str] = []
    rng = np.random.default_rng(2024)
    for rule in RULES:
        params = replace(Params(), rule=rule, updates_per_round=CLIENTS)
        app = new_app(params, SHAPES)
        blocks: list[Value] = []
        for rnd in range(ROUNDS):
            deltas = rng.integers(-40_000, 40_000, size=(CLIENTS, 20_000), dtype=np.int64)
            deltas[: CLIENTS // 4] *= -(rnd + 2)  # attackers, so robust rules have work to do
            txs = [update_tx(app, key(i), deltas[i]) for i in range(CLIENTS)]
            # two blocks per round: arrival order differs from key order on purpose
            for part in (txs[1::2], txs[0::2]):
                blocks.append(part)
                hashes.append(run_block(app, part).app_hash.hex())
        chains.append([encode_params(params), [list(s) for s in SHAPES], blocks])
    return encode(chains), hashes


def _child(path: Path, hash_seed: str, threads: str) -> list[str]:
    env = dict(os.environ)
    env.update(
        PYTHONHASHSEED=hash_seed,
        OPENBLAS_NUM_THREADS=threads,
        OMP_NUM_THREADS=threads,
        MKL_NUM_THREADS=threads,
    )
    out = subprocess.run(
        [sys.executable, "-m", "tests.fl.replay", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return out.stdout.split()


def test_two_processes_with_different_seeds_and_threads_agree(tmp_path: Path) -> None:
    data, hashes = _record_chains()
    path = tmp_path / "blocks.bin"
    path.write_bytes(data)
    assert len(set(hashes)) == len(hashes)  # every block changed the state
    assert _child(path, "0", "1") == hashes
    assert _child(path, "4242", "2") == hashes


def test_replay_in_process_matches_recording() -> None:
    data, hashes = _record_chains()
    assert replay(data) == hashes


def test_block_order_of_updates_does_not_change_the_model() -> None:
    # Through the whole app (signatures, pending list, round close): only the set of updates
    # matters for the model, never the order the proposer put them in.
    rng = np.random.default_rng(7)
    shapes: Shapes = ((8, 8),)
    for rule in RULES:
        params = replace(Params(), rule=rule, updates_per_round=9)
        template = new_app(params, shapes)
        deltas = rng.integers(-40_000, 40_000, size=(9, 64), dtype=np.int64)
        deltas[:2] *= -5
        txs = [update_tx(template, key(i), deltas[i]) for i in range(9)]
        models = set()
        for _ in range(25):
            app = new_app(params, shapes)
            run_block(app, [txs[i] for i in rng.permutation(9)])
            assert app.state.model.version == 1
            models.add((app.state.model.hash, app.state.model.weights.tobytes()))
        assert len(models) == 1, rule
