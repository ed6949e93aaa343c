"""`fedchain status --rpc URL`: print a node's status as JSON."""

import argparse
import asyncio
import json
import sys

from node.commands.args import RPC_DEFAULT, rpc_url
from node.rpc.client import RpcClient, RpcError

HELP = "show a running node's status (height, round, peers, FL round)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rpc", type=rpc_url, default=RPC_DEFAULT, help="node RPC URL or host:port"
    )


async def _status(url: str) -> dict[str, object]:
    async with RpcClient(url, timeout_ms=5_000) as client:
        return await client.status()


def run(args: argparse.Namespace) -> int:
    try:
        status = asyncio.run(_status(args.rpc))
    except RpcError as exc:
        print(f"fedchain status: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2))
    return 0
