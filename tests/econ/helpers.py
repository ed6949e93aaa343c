"""Shared fixtures for the incentives tests: deterministic keys and a small genesis."""

import json
from typing import TYPE_CHECKING

from consensus.app import BlockInfo, GenesisValidator, Misbehavior, VoteInfo
from consensus.crypto import PrivateKey
from fl.economics.genesis import Allocation, EconGenesis, initial_state
from fl.economics.layer import Incentives
from fl.economics.params import EconParams
from fl.params import Params

if TYPE_CHECKING:
    from node.localnet import LocalNet


def key(label: str) -> bytes:
    return PrivateKey.from_label(label).public_key


VALS = [key(f"val{i}") for i in range(4)]
ALICE, BOB, CAROL = key("alice"), key("bob"), key("carol")


def make(
    params: EconParams | None = None,
    balance: int = 10_000,
    bonded: int = 1_000,
    reserve: int = 1_000_000,
) -> Incentives:
    genesis = EconGenesis(
        allocations=tuple(Allocation(k, balance, bonded) for k in (ALICE, BOB, CAROL)),
        reserve=reserve,
        params=params or EconParams(),
    )
    consensus_vals = [GenesisValidator(v, 10) for v in VALS]
    return Incentives(econ=initial_state(genesis, consensus_vals, 0))


def block(
    height: int,
    signers: list[bytes] | None = None,
    missing: list[bytes] | None = None,
    evidence: list[tuple[bytes, int]] = (),  # type: ignore[assignment]
    proposer: bytes = VALS[0],
) -> BlockInfo:
    signed = VALS if signers is None else signers
    absent = missing or []
    commit = tuple(VoteInfo(v, 10, v not in absent) for v in signed)
    return BlockInfo(
        chain_id="test",
        height=height,
        time_ms=0,
        proposer=proposer,
        last_commit=commit if height > 1 else (),
        misbehavior=tuple(Misbehavior("duplicate_vote", k, h, 10) for k, h in evidence),
    )


def run_block(inc: Incentives, height: int, **kw: object) -> list[tuple[bytes, int]]:
    inc.begin_block(block(height, **kw))  # type: ignore[arg-type]
    _, updates, _ = inc.end_block(Params(), height)
    return updates


def lengthen_votes(net: "LocalNet", blocks: int) -> None:
    """Give a generated testnet's governance votes `blocks` blocks (its readable genesis).

    The 20-block default lasts about 4 s at the testnet's pace: less than four `fedchain gov
    vote` processes take to start on a loaded 2-core machine (the votes then came too late)."""
    for i in range(net.validators):
        path = net.home(i).genesis_file
        body = json.loads(path.read_text())
        body["app_state"]["economics"]["params"]["gov_voting_blocks"] = blocks
        path.write_text(json.dumps(body, indent=2))
