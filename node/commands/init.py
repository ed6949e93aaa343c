"""`fedchain init`: create a node home (config, keys, a single-validator genesis)."""

import argparse
import sys
import time
import tomllib
from dataclasses import replace
from pathlib import Path

from consensus.app import Genesis, GenesisValidator
from node.apps import genesis_app_state
from node.config import (
    METRICS_PORT_DEFAULT,
    P2P_PORT_DEFAULT,
    RPC_PORT_DEFAULT,
    NodeConfig,
    config_from_dict,
    render_config,
)
from node.errors import ConfigError
from node.genesis import APPS, read_genesis_file, write_genesis
from node.home import Home
from node.keys import load_or_create_key
from node.p2p.peer_id import PeerId

HELP = "create a node home directory: config.toml, node and validator keys, genesis.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", required=True, type=Path, help="node home directory")
    parser.add_argument("--moniker", default="node", help="human-readable node name")
    parser.add_argument("--chain-id", default="fedchain-local", help="chain id for genesis.json")
    parser.add_argument("--app", default="fl", choices=APPS, help="application the chain runs")
    parser.add_argument("--force", action="store_true", help="overwrite config and genesis")
    parser.add_argument(
        "--p2p-laddr", default=f"0.0.0.0:{P2P_PORT_DEFAULT}", help="p2p listen HOST:PORT"
    )
    parser.add_argument(
        "--rpc-laddr", default=f"127.0.0.1:{RPC_PORT_DEFAULT}", help="RPC listen HOST:PORT"
    )
    parser.add_argument(
        "--metrics-laddr",
        default=f"127.0.0.1:{METRICS_PORT_DEFAULT}",
        help="Prometheus metrics listen HOST:PORT",
    )
    parser.add_argument(
        "--persistent-peers",
        default="",
        help="comma-separated multiaddrs /ip4/H/tcp/P/p2p/12D3KooW... (or /dns4/...) to keep",
    )
    parser.add_argument(
        "--genesis",
        type=Path,
        help="use this genesis.json (e.g. from `fedchain genesis collect`) instead of a new one",
    )


def run(args: argparse.Namespace) -> int:
    home = Home(args.home)
    try:
        return _init(home, args)
    except ConfigError as exc:
        print(f"fedchain init: {exc}", file=sys.stderr)
        return 1


def _hostport(text: str, flag: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65_535:
        raise ConfigError(f"{flag} {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _init(home: Home, args: argparse.Namespace) -> int:
    home.root.mkdir(parents=True, exist_ok=True)
    home.data_dir.mkdir(exist_ok=True)
    if home.config_file.exists() and not args.force:
        raise ConfigError(f"{home.config_file} exists (use --force to overwrite)")
    node_key = load_or_create_key(home.node_key_file)
    validator_key = load_or_create_key(home.validator_key_file)
    p2p_host, p2p_port = _hostport(args.p2p_laddr, "--p2p-laddr")
    rpc_host, rpc_port = _hostport(args.rpc_laddr, "--rpc-laddr")
    metrics_host, metrics_port = _hostport(args.metrics_laddr, "--metrics-laddr")
    peers = tuple(p.strip() for p in args.persistent_peers.split(",") if p.strip())
    defaults = NodeConfig()
    cfg = replace(
        defaults,
        moniker=args.moniker,
        p2p=replace(
            defaults.p2p, listen_host=p2p_host, listen_port=p2p_port, persistent_peers=peers
        ),
        rpc=replace(defaults.rpc, listen_host=rpc_host, listen_port=rpc_port),
        metrics=replace(defaults.metrics, listen_host=metrics_host, listen_port=metrics_port),
    )
    text = render_config(cfg)
    config_from_dict(tomllib.loads(text))  # the same checks `start` makes, before writing
    loaded = None if args.genesis is None else read_genesis_file(args.genesis)  # not a draft
    home.config_file.write_text(text)
    if loaded is not None:
        write_genesis(home.genesis_file, loaded.genesis, loaded.app)
    elif not home.genesis_file.exists() or args.force:
        genesis = Genesis(
            chain_id=args.chain_id,
            validators=(GenesisValidator(validator_key.public_key, 10, args.moniker),),
            app_state=genesis_app_state(args.app, 1),
            # Now, not 0: chain-time periods (the first FL round's deadline) count from it.
            genesis_time_ms=time.time_ns() // 1_000_000,
        )
        write_genesis(home.genesis_file, genesis, args.app)
    print(f"initialized {home.root}")
    print(f"  node id:    {PeerId.from_public_key(node_key.public_key)}")
    print(f"  validator:  {validator_key.public_key.hex()}")
    print(f"  p2p:        {p2p_host}:{p2p_port}  rpc: {rpc_host}:{rpc_port}")
    print(f"  start with: fedchain start --home {home.root}")
    return 0
