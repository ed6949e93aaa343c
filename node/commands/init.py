"""`fedchain init`: create a node home (config, keys, a single-validator genesis)."""

import argparse
import sys
from pathlib import Path

from consensus.app import Genesis, GenesisValidator
from node.apps import genesis_app_state
from node.config import NodeConfig, render_config
from node.errors import ConfigError
from node.genesis import APPS, write_genesis
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


def run(args: argparse.Namespace) -> int:
    home = Home(args.home)
    try:
        return _init(home, args)
    except ConfigError as exc:
        print(f"fedchain init: {exc}", file=sys.stderr)
        return 1


def _init(home: Home, args: argparse.Namespace) -> int:
    home.root.mkdir(parents=True, exist_ok=True)
    home.data_dir.mkdir(exist_ok=True)
    if home.config_file.exists() and not args.force:
        raise ConfigError(f"{home.config_file} exists (use --force to overwrite)")
    node_key = load_or_create_key(home.node_key_file)
    validator_key = load_or_create_key(home.validator_key_file)
    home.config_file.write_text(render_config(NodeConfig(moniker=args.moniker)))
    if not home.genesis_file.exists() or args.force:
        genesis = Genesis(
            chain_id=args.chain_id,
            validators=(GenesisValidator(validator_key.public_key, 10, args.moniker),),
            app_state=genesis_app_state(args.app, 1),
        )
        write_genesis(home.genesis_file, genesis, args.app)
    print(f"initialized {home.root}")
    print(f"  node id:    {PeerId.from_public_key(node_key.public_key)}")
    print(f"  validator:  {validator_key.public_key.hex()}")
    print(f"  start with: fedchain start --home {home.root}")
    return 0
