"""Shared fixtures for the incentives tests: deterministic keys and a small genesis."""

import json
from dataclasses import replace
from typing import TYPE_CHECKING

from consensus.app import BlockInfo, Genesis, GenesisValidator, Misbehavior, VoteInfo
from consensus.crypto import PrivateKey
from fl.economics.genesis import SECTION, Allocation, EconGenesis, initial_state
from fl.economics.layer import Incentives
from fl.economics.params import EconParams
from fl.genesis import build_app_state
from fl.params import Params

if TYPE_CHECKING:
    from fl.app import FLApp
    from node.localnet import LocalNet


def key(label: str) -> bytes:
    return PrivateKey.from_label(label).public_key


VALS = [key(f"val{i}") for i in range(4)]
# Blocks of these tests are a second of chain time apart: block h is at h * BLOCK_MS.
BLOCK_MS = 1_000
ALICE, BOB, CAROL = key("alice"), key("bob"), key("carol")


def fast(**overrides: int) -> EconParams:
    """EconParams with the periods these tests were written for, in chain time at BLOCK_MS per
    block: a 20-block vote, 20-block unbonding, 50-block jail (the defaults are days)."""
    periods = {
        "gov_voting_period_ms": 20 * BLOCK_MS,
        "unbonding_period_ms": 20 * BLOCK_MS,
        "downtime_jail_ms": 50 * BLOCK_MS,
    }
    return replace(EconParams(), **{**periods, **overrides})  # type: ignore[arg-type]


def make(
    params: EconParams | None = None,
    balance: int = 10_000,
    bonded: int = 1_000,
    reserve: int = 1_000_000,
) -> Incentives:
    genesis = EconGenesis(
        allocations=tuple(Allocation(k, balance, bonded) for k in (ALICE, BOB, CAROL)),
        reserve=reserve,
        params=params or fast(),
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
        time_ms=height * BLOCK_MS,
        proposer=proposer,
        last_commit=commit if height > 1 else (),
        misbehavior=tuple(Misbehavior("duplicate_vote", k, h, 10) for k, h in evidence),
    )


def small_fl_app(chain_id: str, validator: bytes, params: Params, section: EconGenesis) -> "FLApp":
    """An FLApp at genesis: a 15-parameter model, one validator, this economics section."""
    from fl.app import FLApp

    app = FLApp()
    app.init_chain(
        Genesis(
            chain_id=chain_id,
            validators=(GenesisValidator(validator, 10),),
            app_state=build_app_state(((3, 4), (3,)), None, params, ((SECTION, section.encode()),)),
        )
    )
    return app


def run_block(inc: Incentives, height: int, **kw: object) -> list[tuple[bytes, int]]:
    inc.begin_block(block(height, **kw))  # type: ignore[arg-type]
    _, updates, _ = inc.end_block(Params(), height, height * BLOCK_MS)
    return updates


def lengthen_votes(net: "LocalNet", period_ms: int) -> None:
    """Give a generated testnet's governance votes `period_ms` of chain time (its readable
    genesis).  The testnet's 20 s can be shorter than four `fedchain gov vote` processes take to
    start on a loaded 2-core machine (the votes then came too late)."""
    for i in range(net.validators):
        path = net.home(i).genesis_file
        body = json.loads(path.read_text())
        body["app_state"]["economics"]["params"]["gov_voting_period_ms"] = period_ms
        path.write_text(json.dumps(body, indent=2))
