"""`fedchain client run`: one FL participant training on its shard and submitting over RPC.

The client home (written by `fedchain testnet`) holds `client_key.json` and `client.toml`:
rpc URL, shard `index` of `clients`, `dataset`, `seed` and `attack` ("" for honest).  Every
client splits the dataset with the same Dirichlet(0.5) seed, so shards are disjoint.  Each round
it fetches the chain's model, trains, signs and POSTs an update (on a commit-reveal chain: a
commitment, then the reveal when the reveal phase opens), prints one progress line
(round, model version, accuracy of the chain's model on the held-out split) and waits for the
next round.  An attacker trains normally (or on poisoned data) and then sends the crafted
delta; omniscient attacks (alie, ipm) use its own clean delta as the estimate of honest ones.
"""

import argparse
import os
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fl.client import attacks
from fl.client.datasets import load
from fl.client.errors import ClientError, TransportError
from fl.client.partition import dirichlet
from fl.client.sdk import fetch_model, fetch_params, submit_update
from fl.client.trainers import accuracy, make_trainer
from node.apps import FL_TRAINER
from node.commands.args import rpc_url
from node.errors import ConfigError
from node.keys import read_key
from node.rpc.transport import RpcTransport

HELP = "run an FL client: train on a local shard and submit updates over a node's RPC"
PARTITION_SEED = 0
PARTITION_ALPHA = 0.5
BLOCK_POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class ClientConfig:
    rpc: str = "http://127.0.0.1:26657"
    index: int = 0
    clients: int = 1
    attack: str = ""
    dataset: str = "digits"
    seed: int = 1


def load_client_config(path: Path) -> ClientConfig:
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ClientConfig()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    kinds = {"rpc": str, "index": int, "clients": int, "attack": str, "dataset": str, "seed": int}
    for key, value in raw.items():
        kind = kinds.get(key)
        if kind is None:
            raise ConfigError(f"{path}: {key}: unknown setting")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"{path}: {key}: expected {kind.__name__}")
    cfg = ClientConfig(**raw)
    if not 0 <= cfg.index < cfg.clients:
        raise ConfigError(f"{path}: index: must be in [0, clients)")
    return cfg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("run",))
    parser.add_argument("--home", type=Path, required=True, help="client home directory")
    parser.add_argument(
        "--rpc", type=rpc_url, help="node RPC URL or host:port (overrides client.toml)"
    )
    parser.add_argument("--attack", help=f"one of {', '.join(attacks.ATTACKS)}")
    parser.add_argument("--rounds", type=int, default=10, help="rounds to take part in")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="give up after this")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (ConfigError, ClientError) as exc:
        print(f"fedchain client: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    cfg = load_client_config(args.home / "client.toml")
    key = read_key(args.home / "client_key.json")
    attack = args.attack if args.attack is not None else (cfg.attack or "none")
    attacks.check(attack)
    ds = load(cfg.dataset, seed=0)
    parts = dirichlet(ds.y_train, cfg.clients, PARTITION_ALPHA, PARTITION_SEED)
    shard = parts[cfg.index]
    x, y = ds.x_train[shard], ds.y_train[shard]
    px, py = attacks.poison_data(attack, x, y, ds.n_classes)
    trainer = make_trainer(FL_TRAINER, ds.n_features, ds.n_classes)
    rng = np.random.default_rng(cfg.seed)
    collusion = attacks.Collusion(cfg.clients, max(1, 1 if attack != "none" else 0))
    transport = RpcTransport(args.rpc or cfg.rpc)
    name = f"client{cfg.index}" + (f" [{attack}]" if attack != "none" else "")
    deadline = time.monotonic() + args.timeout_s
    _wait_for_node(transport, deadline)
    done = 0
    while done < args.rounds:
        try:
            model = fetch_model(transport)
            if model.shapes != trainer.shapes():
                # Before any training: numpy would otherwise fail deep inside with a traceback.
                raise ClientError(
                    f"dataset {cfg.dataset!r} ({ds.n_features} features, "
                    f"{ds.n_classes} classes) gives a {FL_TRAINER} model of shapes "
                    f"{trainer.shapes()}, but the chain trains shapes {model.shapes}: use the "
                    "chain's dataset layout"
                )
            if model.round <= _last_submitted(args.home):
                # Submitted before a restart: a second, different update for this round would be
                # signed equivocation, which the chain slashes.  Wait for the next round instead.
                _wait_round(transport, model.round + 1, deadline, args.timeout_s)
                continue
            clean = trainer.train(model.weights, x, y, rng) - model.weights
            own = (
                trainer.train(model.weights, px, py, rng) - model.weights
                if attack != "none"
                else clean
            )
            delta = attacks.craft(attack, own, [clean], collusion, rng)
            # One submit_update, or on a commit-reveal chain a commitment, then the reveal once
            # the reveal phase opens (polling about once per block).  The round is recorded first
            # (durably), as a validator records LastSigned before a signature leaves.
            _mark_submitted(args.home, model.round)
            result = submit_update(
                transport,
                key,
                model,
                delta,
                len(y),
                fetch_params(transport),
                lambda: time.sleep(BLOCK_POLL_S),
                rng=rng,
            )
            acc = accuracy(trainer, model.weights, ds.x_test, ds.y_test)
            verdict = "submitted" if result.accepted else f"refused ({result.reason})"
            print(
                f"{name}: round {model.round} model v{model.version} "
                f"accuracy {acc:.3f} update {verdict}",
                flush=True,
            )
            done += 1
            _wait_round(transport, model.round + 1, deadline, args.timeout_s)
        except TransportError as exc:
            # Our validator restarted or is briefly unreachable: wait for it and go on.  A
            # round whose update may have left is recorded already, so it is never re-sent.
            print(f"{name}: node unreachable ({exc}); waiting for it", flush=True)
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)
            _wait_for_node(transport, deadline)
    final = fetch_model(transport)
    print(
        f"{name}: done after {done} rounds; chain model v{final.version} accuracy "
        f"{accuracy(trainer, final.weights, ds.x_test, ds.y_test):.3f}",
        flush=True,
    )
    transport.close()
    return 0


def _wait_round(transport: RpcTransport, fl_round: int, deadline: float, timeout_s: float) -> None:
    while True:
        try:
            transport.wait_for_round(fl_round, blocks_max=10_000)
            return
        except TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        if time.monotonic() > deadline:
            raise ClientError(f"gave up after {timeout_s} s")


SUBMITTED_FILE = "submitted_round"


def _last_submitted(home: Path) -> int:
    try:
        return int((home / SUBMITTED_FILE).read_text().strip())
    except FileNotFoundError:
        return -1
    except ValueError:
        raise ConfigError(f"{home / SUBMITTED_FILE}: not a round number") from None


def _mark_submitted(home: Path, fl_round: int) -> None:
    tmp = home / (SUBMITTED_FILE + ".tmp")
    with tmp.open("w") as out:
        out.write(f"{fl_round}\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, home / SUBMITTED_FILE)


def _wait_for_node(transport: RpcTransport, deadline: float) -> None:
    while True:
        try:
            transport.chain_id()
            return
        except TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
