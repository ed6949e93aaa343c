"""`fedchain gov`: on-chain governance from the command line, over a node's RPC.

    fedchain gov propose --key K (--param NAME=VALUE | --admit-validator HEX |
                         --remove-validator HEX | --ban HEX | --unban HEX | --text TITLE)
                         [--description TEXT] [--deposit N]
    fedchain gov vote ID yes|no|abstain|veto --key K
    fedchain gov list
    fedchain gov show ID

Transactions are signed locally with the key file (e.g. HOME/validator_key.json) and POSTed to
`--rpc`; the nonce comes from the node's account query.  `--wait` blocks until the transaction
is in a block and prints its result.  Everything shown is read from the app's `gov/...` and
`econ/...` query paths, so what you see is what every node agrees on.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from consensus.codec import Value, decode, expect_int, expect_list, expect_seq, expect_str
from consensus.errors import CodecError
from fl.client.errors import TransportError
from fl.governance.proposals import OPTIONS, Proposal, Tally
from fl.txs import sign_tx
from node.commands.args import RPC_DEFAULT, rpc_url
from node.errors import NodeError
from node.keys import read_key
from node.rpc.transport import RpcTransport

HELP = "governance: propose, vote, list and show proposals"
WAIT_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("propose", "vote", "list", "show"))
    parser.add_argument("args", nargs="*", help="vote: ID OPTION; show: ID")
    parser.add_argument(
        "--rpc", type=rpc_url, default=RPC_DEFAULT, help="node RPC URL or host:port"
    )
    parser.add_argument("--key", type=Path, help="signing key file (propose, vote)")
    content = parser.add_mutually_exclusive_group()
    content.add_argument("--param", help="NAME=VALUE: change a governable parameter")
    content.add_argument("--admit-validator", metavar="HEX", help="admit a validator key")
    content.add_argument("--remove-validator", metavar="HEX", help="remove a validator key")
    content.add_argument("--ban", metavar="HEX", help="ban an FL client key")
    content.add_argument("--unban", metavar="HEX", help="lift a client ban")
    content.add_argument(
        "--admit-client", metavar="HEX", help="add a client key to the registry (registry mode)"
    )
    content.add_argument("--remove-client", metavar="HEX", help="remove a client from the registry")
    content.add_argument("--text", metavar="TITLE", help="a text proposal")
    parser.add_argument("--description", default="", help="text proposal body")
    parser.add_argument("--deposit", type=int, default=1_000, help="deposit, locked until tally")
    parser.add_argument("--wait", action="store_true", help="wait for the block and show result")


class GovCommandError(NodeError):
    """The command line asked for something impossible (bad arguments, refused transaction)."""


def run(args: argparse.Namespace) -> int:
    transport = RpcTransport(args.rpc)
    try:
        match args.action:
            case "propose":
                content = proposal_content(args)
                args.wait = True  # the id exists only once the proposal is in a block
                height = submit(transport, args, "gov_propose", [content, args.deposit])
                print(f"proposal id {_proposal_id(transport, args.key, height)}")
            case "vote":
                pid, option = _two(args.args, "vote needs ID and OPTION")
                if option not in OPTIONS:
                    raise GovCommandError(f"option must be one of {', '.join(OPTIONS)}")
                submit(transport, args, "gov_vote", [_int(pid, "proposal id"), option])
            case "list":
                print(format_list(decode(transport.query("gov/proposals"))))
            case "show":
                if len(args.args) != 1:
                    raise GovCommandError("show needs one proposal ID")
                shown = _int(args.args[0], "proposal id")
                print(format_proposal(decode(transport.query(f"gov/proposal/{shown}"))))
    except (GovCommandError, TransportError, NodeError, ValueError) as exc:
        print(f"fedchain gov: {exc}", file=sys.stderr)
        return 1
    finally:
        transport.close()
    return 0


def proposal_content(args: argparse.Namespace) -> Value:
    if args.param:
        name, sep, raw = str(args.param).partition("=")
        if not sep or not name:
            raise GovCommandError("--param takes NAME=VALUE")
        return ["param", name, int(raw) if raw.lstrip("-").isdigit() else raw]
    for flag, kind in (
        ("admit_validator", "validator_admit"),
        ("remove_validator", "validator_remove"),
        ("ban", "client_ban"),
        ("unban", "client_unban"),
        ("admit_client", "client_admit"),
        ("remove_client", "client_remove"),
    ):
        raw_key = getattr(args, flag)
        if raw_key:
            try:
                return [kind, bytes.fromhex(raw_key)]
            except ValueError:
                raise GovCommandError(f"--{flag.replace('_', '-')}: not hex") from None
    if args.text:
        return ["text", args.text, args.description]
    raise GovCommandError(
        "propose needs one of --param, --admit-validator, --remove-validator, --ban, --unban, "
        "--admit-client, --remove-client, --text"
    )


def submit(transport: RpcTransport, args: argparse.Namespace, kind: str, body: Value) -> int | None:
    """Sign `body` as `kind` with `--key` at the account's next nonce, POST it, maybe wait;
    the height of its block if it waited."""
    if args.key is None:
        raise GovCommandError(f"{args.action} needs --key")
    key = read_key(args.key)
    (nonce_v,) = expect_list(decode(transport.query(f"account/{key.public_key.hex()}")), 1, "acct")
    tx = sign_tx(key, transport.chain_id(), kind, expect_int(nonce_v, "nonce", 0), body)
    result = transport.submit(tx.to_wire())
    if not result.accepted:
        raise GovCommandError(f"refused: {result.reason}")
    tx_hash = tx.hash().hex()
    print(f"{kind} submitted: tx {tx_hash}")
    if not args.wait:
        return None
    height = _wait_for_tx(transport, tx_hash)
    print(f"committed in block {height}")
    return height


def _proposal_id(transport: RpcTransport, key_file: Path, height: int | None) -> int:
    """The id of the proposal this key made in block `height` (ids are assigned on chain)."""
    proposer = read_key(key_file).public_key
    ours = []
    for item in expect_seq(decode(transport.query("gov/proposals")), "proposals", 1_000_000):
        summary = expect_list(item, 10, "summary")
        if summary[4] != height:  # submit height: only this block's proposals are candidates
            continue
        pid = expect_int(summary[0], "proposal id", 0)
        if Proposal.decode(decode(transport.query(f"gov/proposal/{pid}"))).proposer == proposer:
            ours.append(pid)
    if not ours:
        raise GovCommandError(f"no proposal of this key found in block {height}")
    return max(ours)


def _wait_for_tx(transport: RpcTransport, tx_hash: str) -> int:
    """Poll `/txs/{hash}` until the transaction is in a block; its height (or why it failed)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{transport.url}/txs/{tx_hash}", timeout=10) as resp:
                body = json.loads(resp.read(64 * 1024))
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise GovCommandError(f"/txs/{tx_hash}: HTTP {exc.code}") from None
            body = {}
        except (OSError, ValueError) as exc:
            raise GovCommandError(f"/txs/{tx_hash}: {exc}") from None
        if isinstance(body, dict) and body.get("status") == "committed":
            code = body.get("code")
            if code != 0:
                raise GovCommandError(
                    f"in block {body.get('height')} but rejected: {body.get('reason')}"
                )
            return int(body.get("height", 0))
        time.sleep(0.25)
    raise GovCommandError(f"tx {tx_hash} not in a block after {WAIT_S:.0f} s")


def _two(items: list[str], message: str) -> tuple[str, str]:
    if len(items) != 2:
        raise GovCommandError(message)
    return items[0], items[1]


def _int(text: str, what: str) -> int:
    if not text.isdigit():
        raise GovCommandError(f"{what} must be a non-negative integer")
    return int(text)


def format_list(value: Value) -> str:
    rows = ["  id  status     end     deposit  yes/no/abstain/veto of bonded  content"]
    for item in expect_seq(value, "proposals", 1_000_000):
        pid, _, summary, status, _, end, deposit, _, tally_v, _ = expect_list(item, 10, "summary")
        tally = Tally.decode(tally_v)
        votes = (
            "(voting)"
            if status == "voting"
            else f"{tally.yes}/{tally.no}/{tally.abstain}/{tally.veto} of {tally.total_bonded}"
        )
        rows.append(
            f"{expect_int(pid, 'id'):>4}  {expect_str(status, 'status'):<9} "
            f"{expect_int(end, 'end'):>5} {expect_int(deposit, 'deposit'):>11}  {votes:<30}  "
            f"{expect_str(summary, 'summary')}"
        )
    return "\n".join(rows) if len(rows) > 1 else "no proposals"


def chain_time(ms: int) -> str:
    """A chain (block) time in milliseconds since the epoch, as ISO-8601 UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def format_proposal(value: Value) -> str:
    try:
        p = Proposal.decode(value)
    except CodecError as exc:
        raise GovCommandError(f"the node answered with a malformed proposal: {exc}") from None
    t = p.tally
    lines = [
        f"proposal {p.id}: {p.status}",
        f"  content   {p.content.summary()}",
        f"  proposer  {p.proposer.hex()}",
        f"  deposit   {p.deposit}",
        f"  voting    from height {p.submit_height} until {chain_time(p.voting_end_ms)}",
        f"  tally     yes {t.yes}  no {t.no}  abstain {t.abstain}  veto {t.veto}"
        f"  (bonded {t.total_bonded})"
        if p.status != "voting"
        else "  tally     at the end of the first block at or past that time "
        "(weights: bonded stake then)",
    ]
    if p.note:
        lines.append(f"  note      {p.note}")
    lines += [f"  vote      {voter.hex()} {p.votes[voter]}" for voter in sorted(p.votes)]
    return "\n".join(lines)
