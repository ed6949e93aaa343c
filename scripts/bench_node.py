#!/usr/bin/env python3
"""Node benchmark: 4 validators as real processes on loopback (`fedchain start`, real sockets,
real SQLite with fsync, real WAL), measured from outside over RPC and WebSocket.

    .venv/bin/python scripts/bench_node.py [--only empty,txs,fl,kill] [--seconds S] [--json]

  empty  empty heights/s (kv app, commit_timeout_ms=0)                         target >= 50
  txs    signed FL-app transfers/s sustained (147 bytes), submit-to-commit p50/p99
  kvtxs  the same with 250-byte unsigned kv-app txs (the node without app costs)
                                                          target >= 2,000; p50 <= 150 ms; p99 <= 1 s
  fl     committed FL update payload MB/s (8 clients x ~1 MB updates per round) target >= 20
  kill   SIGKILL one validator, restart it at once: time until it is caught up target <= 5 s

Each measure runs its own fresh testnet in a temporary directory.  Numbers depend on the
machine; the 2-core CI kind is the reference (docs/benchmarks.md).
"""

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

from consensus.codec import encode
from consensus.crypto import PrivateKey, sha256
from fl.client.quantize import clip_delta, float_to_units, quantize
from fl.client.sdk import fetch_model
from fl.economics.genesis import OPEN_GENESIS, Allocation
from fl.economics.txs import Transfer
from fl.genesis import build_app_state
from fl.params import Params
from fl.txs import KIND_SUBMIT_UPDATE, SubmitUpdate, sign_tx
from node.genesis import read_genesis_file, write_genesis
from node.localnet import LocalNet
from node.rpc.client import RpcClient, RpcError
from node.rpc.transport import RpcTransport

VALIDATORS = 4


def start_net(
    root: Path,
    app: str,
    commit_timeout_ms: int,
    app_state: bytes | None = None,
    propose_timeout_ms: int = 1_000,
) -> LocalNet:
    net = LocalNet(root, validators=VALIDATORS, app=app)
    if os.environ.get("FEDCHAIN_PROFILE"):
        net.env["FEDCHAIN_PROFILE"] = os.environ["FEDCHAIN_PROFILE"]
    net.generate(commit_timeout_ms=commit_timeout_ms, propose_timeout_ms=propose_timeout_ms)
    if app_state is not None:
        for i in range(VALIDATORS):
            path = net.home(i).genesis_file
            parsed = read_genesis_file(path)
            write_genesis(path, dataclasses.replace(parsed.genesis, app_state=app_state), app)
    net.start_all()
    return net


async def heights(net: LocalNet) -> list[int]:
    out = []
    for i in range(VALIDATORS):
        async with RpcClient(net.rpc_url(i), timeout_ms=3_000) as client:
            try:
                out.append(int((await client.status())["height"]))
            except RpcError:
                out.append(-1)
    return out


async def wait_all(net: LocalNet, height: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while min(await heights(net)) < height:
        if time.monotonic() > deadline:
            raise SystemExit(f"testnet did not reach height {height}; logs in {net.root}")
        await asyncio.sleep(0.1)


# ---- empty heights ---------------------------------------------------------------------------


async def bench_empty(root: Path, seconds: float) -> dict[str, float]:
    net = start_net(root, "kv", commit_timeout_ms=0)
    try:
        await wait_all(net, 3)
        start_h = (await heights(net))[0]
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        end_h = (await heights(net))[0]
        elapsed = time.monotonic() - t0
    finally:
        net.stop_all()
    return {"empty_heights_per_s": (end_h - start_h) / elapsed}


# ---- signed transfers ------------------------------------------------------------------------

# The FL app hashes its whole state every block, so the number of funded accounts is a cost of
# its own; 400 senders x 16 nonces (the app's window) cover 6,400 transfers.
SENDERS = 400
# Clients submit through POST /txs/batch, 25 txs per request: one HTTP request per tx costs
# the nodes more than check_tx itself.
BATCH_TXS = 25
TX_PER_SENDER = 16


def transfer_genesis(keys: list[PrivateKey]) -> bytes:
    econ = dataclasses.replace(
        OPEN_GENESIS,
        allocations=tuple(Allocation(k.public_key, 10**12) for k in keys),
    )
    shapes = ((10,),)
    return build_app_state(
        shapes, np.zeros(10, dtype=np.int64), Params(), other=(("economics", econ.encode()),)
    )


async def bench_txs(root: Path, seconds: float, rate: int, app: str) -> dict[str, float]:
    """`app` "fl": signed FL-app transfers (ed25519 verified in check_tx, process_proposal and
    finalize_block on every validator); "kv": 250-byte unsigned key=value txs of the consensus
    kv app, which measures the node without the application's costs."""
    chain_id = "fedchain-localnet"
    txs: list[bytes] = []
    if app == "fl":
        keys = [PrivateKey.from_label(f"bench-sender-{i}") for i in range(SENDERS)]
        sink = PrivateKey.from_label("bench-sink").public_key
        net = start_net(root, "fl", commit_timeout_ms=0, app_state=transfer_genesis(keys))
        for nonce in range(TX_PER_SENDER):
            for key in keys:
                body = Transfer(sink, 1).encode()
                txs.append(sign_tx(key, chain_id, "transfer", nonce, body).to_wire())
    else:
        net = start_net(root, "kv", commit_timeout_ms=0)
        rng = np.random.default_rng(1)
        for i in range(int(rate * seconds)):
            txs.append(b"k%07d=" % i + rng.bytes(120).hex().encode())
    try:
        await wait_all(net, 2)
        total = min(len(txs), int(rate * seconds))
        txs = txs[:total]
        sizes = [len(t) for t in txs]
        submitted: dict[str, float] = {}
        committed: dict[str, float] = {}
        refused = 0
        done = asyncio.Event()

        async def listen() -> None:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(net.rpc_url(0) + "/ws?events=txs", max_msg_size=64 << 20) as ws,
            ):
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        raise SystemExit(f"event stream ended: {msg.type} {msg.data!r}")
                    now = time.monotonic()
                    for tx in json.loads(msg.data)["txs"]:
                        committed.setdefault(tx["hash"], now)
                    if len(committed) >= total - refused:
                        done.set()
                        return

        listener = asyncio.create_task(listen())
        await asyncio.sleep(0.3)
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as session:
            sem = asyncio.Semaphore(64)

            async def submit(i: int, batch: list[bytes]) -> None:
                nonlocal refused
                url = net.rpc_url(i % VALIDATORS) + "/txs/batch"
                async with sem:
                    now = time.monotonic()
                    for tx in batch:
                        submitted[sha256(tx).hex()] = now
                    async with session.post(
                        url,
                        data=encode(batch),
                        headers={"Content-Type": "application/octet-stream"},
                    ) as resp:
                        answer = await resp.json()
                        for item in answer["results"]:
                            if "error" in item:
                                refused += 1
                                print(f"refused: {item}")

            t0 = time.monotonic()
            tasks = []
            for k in range(0, len(txs), BATCH_TXS):
                target = t0 + k / rate
                delay = target - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(submit(k // BATCH_TXS, txs[k : k + BATCH_TXS])))
            await asyncio.gather(*tasks)
            submit_s = time.monotonic() - t0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 60)
        listener.cancel()
        t_end = max(committed.values()) if committed else time.monotonic()
        latencies = sorted(
            (committed[h] - submitted[h]) * 1000 for h in committed if h in submitted
        )
        elapsed = t_end - t0
    finally:
        net.stop_all()
    n = len(latencies)
    return {
        f"{app}_tx_bytes_mean": statistics.mean(sizes),
        f"{app}_txs_offered_per_s": total / submit_s,
        f"{app}_txs_committed": n,
        f"{app}_txs_refused": refused,
        f"{app}_txs_committed_per_s": n / elapsed if elapsed > 0 else 0.0,
        f"{app}_latency_p50_ms": latencies[n // 2] if n else float("nan"),
        f"{app}_latency_p99_ms": latencies[min(n - 1, (n * 99) // 100)] if n else float("nan"),
    }


# ---- FL update payload -----------------------------------------------------------------------

FL_CLIENTS = 8
FL_PARAMS = 500_000  # int16 deltas: ~1 MB per update


async def bench_fl(root: Path, rounds: int) -> dict[str, float]:
    params = dataclasses.replace(
        Params(),
        rule="fedavg",
        updates_per_round=FL_CLIENTS,
        round_deadline_ms=100_000_000,
        update_norm_max=Params().update_norm_max,
    )
    app_state = build_app_state(((FL_PARAMS,),), float_to_units(np.zeros(FL_PARAMS)), params)
    # An 8 MB block takes the FL app about a second to prepare and to check on every node
    # (2 cores for 4 validators), so the first round's propose timeout is raised to 5 s.
    net = start_net(root, "fl", commit_timeout_ms=0, app_state=app_state, propose_timeout_ms=5_000)
    keys = [PrivateKey.from_label(f"bench-fl-{i}") for i in range(FL_CLIENTS)]
    rng = np.random.default_rng(0)
    bodies = []
    for _ in range(FL_CLIENTS):
        q = quantize(clip_delta(rng.normal(0, 1e-3, FL_PARAMS), params.update_norm_max), 16, rng)
        bodies.append(
            SubmitUpdate(
                round=0,
                base_hash=b"\x00" * 32,
                samples=100,
                scale_exp=q.scale_exp,
                bits=q.bits,
                count=q.count,
                delta=q.data,
            )
        )
    payload = 0
    try:
        await wait_all(net, 2)
        transports = [RpcTransport(net.rpc_url(i % VALIDATORS)) for i in range(FL_CLIENTS)]
        chain_id = transports[0].chain_id()
        async with aiohttp.ClientSession() as session:
            t0 = 0.0
            for r in range(rounds + 1):
                model = await asyncio.to_thread(fetch_model, transports[0])
                if r == 1:
                    t0 = time.monotonic()  # round 0 warms up; measure the rest
                    payload = 0
                # Quantized once (the chain's cost is measured, not the client's training);
                # each round only re-signs for the round's base model.
                txs = [
                    sign_tx(
                        keys[c],
                        chain_id,
                        KIND_SUBMIT_UPDATE,
                        r,
                        dataclasses.replace(
                            bodies[c], round=model.round, base_hash=model.hash
                        ).encode(),
                    ).to_wire()
                    for c in range(FL_CLIENTS)
                ]
                payload += sum(len(t) for t in txs)

                async def post(c: int, tx: bytes) -> None:
                    async with session.post(
                        net.rpc_url(c % VALIDATORS) + "/txs",
                        data=tx,
                        headers={"Content-Type": "application/octet-stream"},
                    ) as resp:
                        if resp.status != 202:
                            raise SystemExit(f"update refused: {await resp.text()}")

                await asyncio.gather(*(post(c, tx) for c, tx in enumerate(txs)))
                while True:
                    round_now = await asyncio.to_thread(transports[0].current_round)
                    if round_now > r:
                        break
                    await asyncio.sleep(0.02)
            elapsed = time.monotonic() - t0
    finally:
        net.stop_all()
    return {
        "fl_update_bytes": payload / (rounds * FL_CLIENTS),
        "fl_rounds": rounds,
        "fl_payload_mb_per_s": payload / elapsed / 1e6,
    }


# ---- kill and catch up -----------------------------------------------------------------------


async def bench_kill(root: Path, trials: int) -> dict[str, float]:
    net = start_net(root, "kv", commit_timeout_ms=10)
    times = []
    try:
        await wait_all(net, 5)
        for _ in range(trials):
            await asyncio.sleep(1.0)
            t0 = time.monotonic()
            net.kill(3)
            net.start(3)
            while True:
                hs = await heights(net)
                if hs[3] >= max(hs[:3]) - 1 and hs[3] > 0:
                    break
                await asyncio.sleep(0.05)
            times.append(time.monotonic() - t0)
    finally:
        net.stop_all()
    return {"kill_to_caught_up_s_median": statistics.median(times), "kill_trials": trials}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="empty,txs,kvtxs,fl,kill")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=2_500, help="offered tx/s")
    parser.add_argument("--fl-rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, float] = {}
    only = args.only.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-node-") as tmp:
        root = Path(tmp)
        if "empty" in only:
            results |= await bench_empty(root / "empty", args.seconds)
            print(results, flush=True)
        if "txs" in only:
            results |= await bench_txs(root / "txs", args.seconds, args.rate, "fl")
            print(results, flush=True)
        if "kvtxs" in only:
            results |= await bench_txs(root / "kvtxs", args.seconds, args.rate, "kv")
            print(results, flush=True)
        if "fl" in only:
            results |= await bench_fl(root / "fl", args.fl_rounds)
            print(results, flush=True)
        if "kill" in only:
            results |= await bench_kill(root / "kill", 5)
    results["cpus"] = os.cpu_count() or 0
    if args.json:
        print(json.dumps(results))
    else:
        for k, v in results.items():
            print(f"{k:>28}: {v:.2f}" if isinstance(v, float) else f"{k:>28}: {v}")


if __name__ == "__main__":
    asyncio.run(main())
