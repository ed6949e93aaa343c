"""`fedchain stake`: tokens and staking from the command line, over a node's RPC.

    fedchain stake account [HEX]                  balance, bonded, unbonding, records
    fedchain stake transfer HEX AMOUNT --key K
    fedchain stake bond AMOUNT --key K            (unbond AMOUNT likewise)
    fedchain stake unjail --key K                 a jailed validator rejoins after its jail time

Signing, nonces and `--wait` work as in `fedchain gov` (node/commands/gov.py).
"""

import argparse
import sys
from pathlib import Path

from consensus.codec import Value, decode, expect_int, expect_list
from fl.client.errors import TransportError
from fl.economics.records import ClientRecord, ValidatorRecord
from node.commands.args import RPC_DEFAULT, rpc_url
from node.commands.gov import GovCommandError, chain_time, submit
from node.errors import NodeError
from node.keys import read_key
from node.rpc.transport import RpcTransport

HELP = "tokens and staking: account, transfer, bond, unbond, unjail"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("account", "transfer", "bond", "unbond", "unjail"))
    parser.add_argument(
        "args", nargs="*", help="account: [HEX]; transfer: HEX AMOUNT; bond: AMOUNT"
    )
    parser.add_argument(
        "--rpc", type=rpc_url, default=RPC_DEFAULT, help="node RPC URL or host:port"
    )
    parser.add_argument("--key", type=Path, help="signing key file")
    parser.add_argument("--wait", action="store_true", help="wait for the block and show result")


def run(args: argparse.Namespace) -> int:
    transport = RpcTransport(args.rpc)
    try:
        match args.action:
            case "account":
                key_hex = _account_key(args)
                print(format_account(key_hex, decode(transport.query(f"econ/account/{key_hex}"))))
            case "transfer":
                if len(args.args) != 2:
                    raise GovCommandError("transfer needs HEX AMOUNT")
                to = _hex_key(args.args[0])
                submit(transport, args, "transfer", [to, _amount(args.args[1])])
            case "bond" | "unbond":
                if len(args.args) != 1:
                    raise GovCommandError(f"{args.action} needs AMOUNT")
                submit(transport, args, args.action, [_amount(args.args[0])])
            case "unjail":
                submit(transport, args, "unjail", [])
    except (GovCommandError, TransportError, NodeError, ValueError) as exc:
        print(f"fedchain stake: {exc}", file=sys.stderr)
        return 1
    finally:
        transport.close()
    return 0


def _account_key(args: argparse.Namespace) -> str:
    if args.args:
        return _hex_key(args.args[0]).hex()
    if args.key is None:
        raise GovCommandError("account needs HEX or --key")
    return read_key(args.key).public_key.hex()


def _hex_key(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise GovCommandError("key must be hex") from None
    if len(raw) != 32:
        raise GovCommandError("key must be 32 bytes (64 hex characters)")
    return raw


def _amount(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise GovCommandError("amount must be a positive integer")
    return int(text)


def format_account(key_hex: str, value: Value) -> str:
    balance, bonded, unbonding, client_v, validator_v = expect_list(value, 5, "account")
    lines = [
        f"account   {key_hex}",
        f"  balance   {expect_int(balance, 'balance')}",
        f"  bonded    {expect_int(bonded, 'bonded')}",
        f"  unbonding {expect_int(unbonding, 'unbonding')}",
    ]
    if client_v is not None:
        c = ClientRecord.decode(client_v)
        lines.append(
            f"  client    reputation {c.reputation}, accepted {c.accepted}, flagged {c.flagged}, "
            f"evidence {c.evidence} over {c.judged} rounds, faults {c.faults}, "
            f"jailed until round {c.jailed_until_round}, admitted {c.admitted}, "
            f"banned {c.banned}, rewarded {c.rewarded}, slashed {c.slashed}"
        )
    if validator_v is not None:
        v = ValidatorRecord.decode(validator_v)
        lines.append(
            f"  validator admitted {v.admitted}, jailed {v.jailed} "
            f"(until {chain_time(v.jailed_until_ms)}), tombstoned {v.tombstoned}, "
            f"missed {len(v.missed)}, rewarded {v.rewarded}, slashed {v.slashed}"
        )
    return "\n".join(lines)
