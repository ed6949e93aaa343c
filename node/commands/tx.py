"""`fedchain tx`: submit a signed transaction (hex or a file of bytes) or look one up."""

import argparse
import asyncio
import json
import sys
from pathlib import Path

from node.commands.args import RPC_DEFAULT, rpc_url
from node.rpc.client import RpcClient, RpcError

HELP = "submit a signed transaction (`tx submit HEX|@FILE`) or show one (`tx show HASH`)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("submit", "show"))
    parser.add_argument("value", help="tx as hex, @FILE with its raw bytes, or a tx hash")
    parser.add_argument(
        "--rpc", type=rpc_url, default=RPC_DEFAULT, help="node RPC URL or host:port"
    )
    parser.add_argument("--wait", action="store_true", help="after submit, wait for the commit")


async def _run(args: argparse.Namespace, tx: bytes) -> dict[str, object]:
    async with RpcClient(args.rpc) as client:
        if args.action == "show":
            found = await client.tx(args.value.lower())
            if found is None:
                raise RpcError(404, "not_found", "unknown transaction")
            return found
        tx_hash = await client.submit_tx(tx)
        answer: dict[str, object] = {"hash": tx_hash, "status": "pending"}
        if args.wait:
            for _ in range(600):
                found = await client.tx(tx_hash)
                if found is not None and found.get("status") == "committed":
                    return found
                await asyncio.sleep(0.1)
        return answer


def run(args: argparse.Namespace) -> int:
    try:
        tx = b""
        if args.action == "submit":
            if args.value.startswith("@"):
                tx = Path(args.value[1:]).read_bytes()
            else:
                try:
                    tx = bytes.fromhex(args.value)
                except ValueError:
                    raise RpcError(0, "bad_input", "the tx must be hex or @FILE") from None
        answer = asyncio.run(_run(args, tx))
    except (RpcError, OSError) as exc:
        print(f"fedchain tx: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0
