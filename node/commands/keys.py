"""`fedchain keys`: create or show an ed25519 key file (client, validator or node key)."""

import argparse
import json
import sys
from pathlib import Path

from node.errors import ConfigError
from node.keys import generate_key, read_key, write_key
from node.p2p.peer_id import PeerId

HELP = "create (`keys new FILE`) or show (`keys show FILE`) an ed25519 key file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("new", "show"))
    parser.add_argument("file", type=Path)


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "new":
            if args.file.exists():
                raise ConfigError(f"{args.file} exists; refusing to overwrite a key")
            key = generate_key()
            write_key(args.file, key)
        else:
            key = read_key(args.file)
    except ConfigError as exc:
        print(f"fedchain keys: {exc}", file=sys.stderr)
        return 1
    body = {
        "public_key": key.public_key.hex(),
        "peer_id": str(PeerId.from_public_key(key.public_key)),
    }
    print(json.dumps(body, indent=2))
    return 0
