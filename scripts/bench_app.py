#!/usr/bin/env python3
"""In-process FL-app benchmark: the application's own cost per block, without the node.

    .venv/bin/python scripts/bench_app.py [--only transfers,fl] [--profile] [--json]

Drives one `FLApp` exactly as one validator's node does for each block: check_tx on every
transaction (mempool admission), prepare_proposal, process_proposal, finalize_block, commit.
Figures are CPU seconds of this process (`time.process_time`), so a busy shared machine
inflates them less than wall time.

  transfers  signed `transfer` txs (ed25519), --accounts funded senders, --block-txs per block
  fl         8 clients x 1 MB submit_update txs (500k int16 params) per block, FedAvg, one
             round per block
"""

import argparse
import cProfile
import dataclasses
import json
import pstats
import time
from collections.abc import Callable

import numpy as np

from consensus.app import BlockInfo, Genesis, GenesisValidator
from consensus.crypto import PrivateKey
from fl.app import FLApp
from fl.client.quantize import clip_delta, quantize
from fl.economics.genesis import OPEN_GENESIS, Allocation
from fl.economics.txs import Transfer
from fl.genesis import build_app_state
from fl.params import Params
from fl.txs import KIND_SUBMIT_UPDATE, SubmitUpdate, sign_tx

CHAIN_ID = "bench-app"
FL_CLIENTS = 8
FL_PARAMS = 500_000
BLOCK_BYTES_MAX = 64 * 1024 * 1024


def new_app(app_state: bytes) -> FLApp:
    validator = PrivateKey.from_label("bench-app-validator").public_key
    app = FLApp()
    app.init_chain(Genesis(CHAIN_ID, (GenesisValidator(validator, 10),), app_state))
    return app


def run_block(app: FLApp, txs: list[bytes], height: int) -> dict[str, float]:
    """One validator's app work for one block; returns CPU seconds per phase."""
    block = BlockInfo(CHAIN_ID, height, height * 1000, b"\x01" * 32)
    times: dict[str, float] = {}
    t = time.process_time()
    for tx in txs:
        result = app.check_tx(tx)
        if result.code != 0:
            raise SystemExit(f"check_tx refused: {result.reason}")
    times["check_tx"] = time.process_time() - t
    t = time.process_time()
    chosen = app.prepare_proposal(txs, block, BLOCK_BYTES_MAX)
    times["prepare"] = time.process_time() - t
    if len(chosen) != len(txs):
        raise SystemExit(f"prepare_proposal kept {len(chosen)} of {len(txs)}")
    t = time.process_time()
    if not app.process_proposal(chosen, block):
        raise SystemExit("process_proposal rejected the block")
    times["process"] = time.process_time() - t
    t = time.process_time()
    result = app.finalize_block(chosen, block)
    times["finalize"] = time.process_time() - t
    if any(r.code != 0 for r in result.tx_results):
        raise SystemExit(f"a tx failed: {[r.reason for r in result.tx_results if r.code][:1]}")
    t = time.process_time()
    app.commit()
    times["commit"] = time.process_time() - t
    return times


def sum_times(all_times: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for times in all_times:
        for k, v in times.items():
            out[k] = out.get(k, 0.0) + v
    return out


def bench_transfers(accounts: int, block_txs: int, blocks: int) -> dict[str, float]:
    keys = [PrivateKey.from_label(f"bench-sender-{i}") for i in range(accounts)]
    sink = PrivateKey.from_label("bench-sink").public_key
    econ = dataclasses.replace(
        OPEN_GENESIS, allocations=tuple(Allocation(k.public_key, 10**12) for k in keys)
    )
    app = new_app(
        build_app_state(
            ((10,),), np.zeros(10, dtype=np.int64), Params(), other=(("economics", econ.encode()),)
        )
    )
    body = Transfer(sink, 1).encode()
    nonces = [0] * accounts
    sender = 0
    per_block: list[dict[str, float]] = []
    for b in range(blocks):
        txs = []
        for _ in range(block_txs):
            i = sender % accounts
            txs.append(sign_tx(keys[i], CHAIN_ID, "transfer", nonces[i], body).to_wire())
            nonces[i] += 1
            sender += 1
        per_block.append(run_block(app, txs, b + 1))
    total = sum_times(per_block)
    n = block_txs * blocks
    cpu = sum(total.values())
    out = {f"{k}_us_per_tx": v / n * 1e6 for k, v in total.items()}
    out["app_us_per_tx"] = cpu / n * 1e6
    out["tx_per_cpu_s"] = n / cpu
    t = time.process_time()
    for _ in range(10):
        app.state.app_hash()
    out["app_hash_ms"] = (time.process_time() - t) / 10 * 1e3
    return out


def bench_fl(blocks: int) -> dict[str, float]:
    params = dataclasses.replace(
        Params(), rule="fedavg", updates_per_round=FL_CLIENTS, round_deadline_ms=100_000_000
    )
    app = new_app(build_app_state(((FL_PARAMS,),), np.zeros(FL_PARAMS, dtype=np.int64), params))
    keys = [PrivateKey.from_label(f"bench-fl-{i}") for i in range(FL_CLIENTS)]
    rng = np.random.default_rng(0)
    bodies = []
    for _ in range(FL_CLIENTS):
        q = quantize(clip_delta(rng.normal(0, 1e-3, FL_PARAMS), params.update_norm_max), 16, rng)
        bodies.append(SubmitUpdate(0, b"", 100, q.scale_exp, q.bits, q.count, q.data))
    per_block: list[dict[str, float]] = []
    payload = 0
    for b in range(blocks):
        state = app.state
        txs = [
            sign_tx(
                keys[c],
                CHAIN_ID,
                KIND_SUBMIT_UPDATE,
                b,
                dataclasses.replace(
                    bodies[c], round=state.round, base_hash=state.model.hash
                ).encode(),
            ).to_wire()
            for c in range(FL_CLIENTS)
        ]
        payload += sum(len(t) for t in txs)
        per_block.append(run_block(app, txs, b + 1))
        if app.state.round != b + 1:
            raise SystemExit("the round did not close in its block")
    total = sum_times(per_block)
    cpu = sum(total.values())
    out = {f"{k}_ms_per_block": v / blocks * 1e3 for k, v in total.items()}
    out["app_ms_per_block"] = cpu / blocks * 1e3
    out["payload_mb_per_cpu_s"] = payload / cpu / 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="transfers,fl")
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--block-txs", type=int, default=500)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--fl-blocks", type=int, default=4)
    parser.add_argument("--profile", action="store_true", help="cProfile, top 25 by cumtime")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs: dict[str, Callable[[], dict[str, float]]] = {
        "transfers": lambda: bench_transfers(args.accounts, args.block_txs, args.blocks),
        "fl": lambda: bench_fl(args.fl_blocks),
    }
    results: dict[str, float] = {}
    for name in args.only.split(","):
        if args.profile:
            profiler = cProfile.Profile()
            results.update(profiler.runcall(runs[name]))
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        else:
            results.update(runs[name]())
    if args.json:
        print(json.dumps(results))
    else:
        for k, v in results.items():
            print(f"{k:32s} {v:12.1f}")


if __name__ == "__main__":
    main()
