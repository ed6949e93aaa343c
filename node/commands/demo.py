"""`fedchain demo`: a local testnet training digits with attackers, watched until it is done.

It generates a testnet (default 4 validators, 8 clients of which 2 attack), starts every
validator and client as its own process on loopback, prints one progress line per FL round
(height, round, accuracy of the chain's model on held-out digits, model hash) until the rounds
are done, then stops everything with SIGTERM and says where the logs are.
"""

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from consensus.codec import DecodeLimits, decode, expect_bytes, expect_int, expect_list
from fl.client.datasets import load
from fl.client.quantize import model_to_float
from fl.client.trainers import FloatArray, LabelArray, Trainer, accuracy, make_trainer
from fl.fixed import model_from_bytes
from node.apps import FL_DATASET, FL_TRAINER
from node.errors import ConfigError, NodeError
from node.keys import read_key
from node.localnet import LocalNet, terminate_all
from node.rpc.client import RpcClient, RpcError

HELP = "run a local testnet: 4 validators + 8 FL clients (2 attackers) training on digits"
MODEL_LIMITS = DecodeLimits(array_items_max=10_000_000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None, help="testnet directory")
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--attackers", type=int, default=2)
    parser.add_argument("--attack", default="sign_flip_x10")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--timeout-s", type=float, default=600.0)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except NodeError as exc:
        print(f"fedchain demo: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.validators < 1 or not 0 <= args.attackers <= args.clients:
        raise ConfigError("need --validators >= 1 and 0 <= --attackers <= --clients")
    out: Path = args.out or Path("testnet") / time.strftime("demo-%Y%m%d-%H%M%S")
    net = LocalNet(
        out, validators=args.validators, clients=args.clients, attackers=args.attackers, app="fl"
    )
    clients: list[subprocess.Popen[bytes]] = []
    interrupted = False

    def on_signal(_signo: int, _frame: object) -> None:
        nonlocal interrupted
        interrupted = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 1
    try:
        print(f"== generating a testnet in {out}", flush=True)
        net.generate(attack=args.attack)
        print(f"== starting {args.validators} validators", flush=True)
        net.start_all()
        asyncio.run(wait_healthy(net, 60.0, lambda: interrupted))
        print(
            f"== starting {args.clients} FL clients ({args.attackers} attacking with "
            f"{args.attack}); logs in {out}/client*/client.log",
            flush=True,
        )
        for j in range(args.clients):
            clients.append(start_client(out / f"client{j}", args.rounds, args.timeout_s))
        reached = asyncio.run(_watch(net, args.rounds, args.timeout_s, lambda: interrupted))
        code = 0 if reached else 1
    finally:
        terminate_all(clients)
        print("== stopping validators", flush=True)
        codes = net.stop_all()
        print(f"== validators exited with {sorted(set(codes.values()), key=str)}")
        print(f"== node logs:   {out}/node*/node.log (JSON lines)")
        print(f"== client logs: {out}/client*/client.log")
    return code


def start_client(home: Path, rounds: int, timeout_s: float) -> subprocess.Popen[bytes]:
    """`fedchain client run` for a client home of the testnet, its output appended to
    HOME/client.log (the soak benchmark restarts clients with this too)."""
    log = (home / "client.log").open("ab")
    try:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "node.cli",
                "client",
                "run",
                "--home",
                str(home),
                "--rounds",
                str(rounds),
                "--timeout-s",
                str(timeout_s),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        log.close()


async def wait_healthy(net: LocalNet, timeout_s: float, stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout_s
    for i in range(net.validators):
        async with RpcClient(net.rpc_url(i), timeout_ms=2_000) as client:
            while not await client.health():
                if time.monotonic() > deadline or stop():
                    raise SystemExit(f"node{i} did not become healthy; see {net.log_file(i)}")
                if not net.running(i):
                    raise SystemExit(f"node{i} exited; see {net.log_file(i)}")
                await asyncio.sleep(0.2)


def _attacker_keys(net: LocalNet) -> set[str]:
    keys = set()
    for j in range(net.clients - net.attackers, net.clients):
        keys.add(read_key(net.root / f"client{j}" / "client_key.json").public_key.hex())
    return keys


async def _watch(net: LocalNet, rounds: int, timeout_s: float, stop: Callable[[], bool]) -> bool:
    """One line per FL round, driven by node0's `fl_round_closed` events: polling the status
    missed rounds that closed less than a poll apart (5 of 10 lines at the demo's pace)."""
    ds = load(FL_DATASET, seed=0)
    trainer = make_trainer(FL_TRAINER, ds.n_features, ds.n_classes)
    attackers = _attacker_keys(net)
    deadline = time.monotonic() + timeout_s
    url = net.rpc_url(0)
    async with (
        RpcClient(url, timeout_ms=10_000) as client,
        aiohttp.ClientSession() as session,
        session.ws_connect(url + "/ws?events=fl_round_closed", heartbeat=10.0) as ws,
    ):
        # Subscribed first, then asked: no round can close unseen in between.
        status = await client.status()
        done = int(status.get("fl_round", 0))
        acc = await _accuracy(client, None, trainer, ds.x_test, ds.y_test)
        print(
            f"height {int(status['height']):>5} | FL round {done:>3}/{rounds} | {acc}", flush=True
        )
        while done < rounds:
            if time.monotonic() > deadline or stop():
                print("== stopped before all rounds were done", flush=True)
                return False
            if not net.running(0):
                print(f"== node0 exited; see {net.log_file(0)}", flush=True)
                return False
            try:
                msg = await asyncio.wait_for(ws.receive(), timeout=0.5)
            except TimeoutError:
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                print(f"== node0 event stream ended ({msg.type.name})", flush=True)
                return False
            event = json.loads(msg.data)
            if event.get("event") != "fl_round_closed":
                continue
            closed = int(event["fl_round"])
            if closed < done:
                continue  # the round that was open when we subscribed closed before it
            done = closed + 1
            try:
                version = int(event["model_version"])
                acc = await _accuracy(client, version, trainer, ds.x_test, ds.y_test)
                outcome = _outcome(await client.get_json("/round"), closed, attackers)
            except RpcError as exc:
                acc, outcome = f"(node0 RPC: {exc})", ""
            print(
                f"height {int(event['height']):>5} | FL round {done:>3}/{rounds} | {acc} | "
                f"round {closed} closed ({event['cause']}, {event['rule']}): "
                f"{event['accepted']} accepted, {event['flagged']} flagged{outcome}",
                flush=True,
            )
    print(f"== {rounds} FL rounds done", flush=True)
    return True


async def chain_accuracy(
    client: RpcClient, version: int | None, trainer: Trainer, x: FloatArray, y: LabelArray
) -> tuple[int, bytes, float]:
    """(version, hash, accuracy on x, y) of the chain's model `version` (None: the current one)."""
    if version is None:
        data = (await client.get_binary("/model")).data
    else:
        data = (await client.query(f"model/{version}")).data
    got, model_hash, _shapes, weights = expect_list(decode(data, MODEL_LIMITS), 4, "model")
    units = model_from_bytes(expect_bytes(weights, "weights"))
    acc = accuracy(trainer, model_to_float(units), x, y)
    return expect_int(got, "version"), expect_bytes(model_hash, "hash"), acc


async def _accuracy(
    client: RpcClient, version: int | None, trainer: Trainer, x: FloatArray, y: LabelArray
) -> str:
    """ "model v3 1a2b3c4d5e6f | accuracy 0.912" for a model version (None: the current one)."""
    got, model_hash, acc = await chain_accuracy(client, version, trainer, x, y)
    return f"model v{got} {model_hash.hex()[:12]} | accuracy {acc:.3f}"


def _outcome(body: dict[str, object], closed: int, attackers: set[str]) -> str:
    """ " (2 of 2 attackers)" from GET /round, if its last outcome is still round `closed`."""
    value = body.get("value")
    last = value.get("last_outcome") if isinstance(value, dict) else None
    if not isinstance(last, dict) or last.get("round") != closed:
        return ""
    flagged = [f.get("client") for f in last.get("flagged", []) if isinstance(f, dict)]
    caught = sum(1 for client in flagged if client in attackers)
    return f" ({caught} of {len(attackers)} attackers)"
