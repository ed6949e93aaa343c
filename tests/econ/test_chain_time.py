"""Periods end by chain time (the BFT block time), not by block count.

For each period (governance vote, unbonding, downtime jail, FL round deadline): a thousand
blocks 10 ms apart that stay inside the period do not end it, and two blocks a long way apart
that pass it do.  Block h's time is whatever the test gives it, as the header would carry it.
"""

from dataclasses import replace

import numpy as np
import pytest

from consensus.app import BlockInfo
from consensus.crypto import PrivateKey
from fl.app import FLApp
from fl.economics.layer import Incentives
from fl.errors import RejectedError
from fl.params import Params
from tests.fl.helpers import genesis, random_delta, update_tx

from .helpers import ALICE, VALS, block, fast, make

PERIOD_MS = 60_000
FAST_BLOCKS = 1_000
FAST_GAP_MS = 10  # a thousand blocks: 10 s of chain time, a sixth of the period


def at(inc: Incentives, height: int, time_ms: int, **kw: object) -> None:
    """One block of the incentives layer at `height`, stamped `time_ms`."""
    inc.begin_block(replace(block(height, **kw), time_ms=time_ms))  # type: ignore[arg-type]
    inc.end_block(Params(), height, time_ms)


def test_a_vote_outlasts_a_thousand_fast_blocks_and_ends_after_two_slow_ones() -> None:
    inc = make(fast(gov_voting_period_ms=PERIOD_MS))
    start = 1_000_000
    inc.execute(Params(), "gov_propose", ALICE, [["text", "t", ""], 1_000], 1, start, True)
    proposal = inc.gov.proposals[1]
    assert proposal.voting_end_ms == start + PERIOD_MS
    for h in range(2, 2 + FAST_BLOCKS):
        at(inc, h, start + (h - 1) * FAST_GAP_MS)
    assert proposal.status == "voting"
    late = 2 + FAST_BLOCKS
    inc.execute(Params(), "gov_vote", VALS[0], [1, "yes"], late, start + PERIOD_MS - 1, True)
    at(inc, late, start + PERIOD_MS - 1)  # one block short of the end: still voting
    assert proposal.status == "voting"
    at(inc, late + 1, start + PERIOD_MS)  # the first block at the end time tallies
    assert proposal.status != "voting"
    with pytest.raises(RejectedError, match="ended at chain time"):
        inc.execute(Params(), "gov_vote", VALS[1], [1, "no"], late + 2, start + PERIOD_MS + 1, True)


def test_a_slow_chain_ends_a_vote_in_few_blocks() -> None:
    inc = make(fast(gov_voting_period_ms=PERIOD_MS))
    inc.execute(Params(), "gov_propose", ALICE, [["text", "t", ""], 1_000], 1, 0, True)
    at(inc, 2, PERIOD_MS // 2)
    assert inc.gov.proposals[1].status == "voting"
    at(inc, 3, PERIOD_MS)
    assert inc.gov.proposals[1].status == "no_quorum"


def test_unbonded_stake_returns_by_chain_time() -> None:
    inc = make(fast(unbonding_period_ms=PERIOD_MS))
    balance = inc.econ.ledger.balance(ALICE)
    inc.execute(Params(), "unbond", ALICE, [400], 1, 0, True)
    assert inc.econ.ledger.unbonding[0].mature_ms == PERIOD_MS
    for h in range(2, 2 + FAST_BLOCKS):
        at(inc, h, (h - 1) * FAST_GAP_MS)
    assert inc.econ.ledger.balance(ALICE) == balance
    assert inc.econ.ledger.unbonding_of(ALICE) == 400
    at(inc, 2 + FAST_BLOCKS, PERIOD_MS)
    assert inc.econ.ledger.balance(ALICE) == balance + 400
    assert inc.econ.ledger.unbonding_of(ALICE) == 0


def test_a_jailed_validator_waits_chain_time_not_blocks() -> None:
    inc = make(fast(downtime_window_blocks=10, downtime_jail_ms=PERIOD_MS))
    h = 2
    while not inc.econ.validators[VALS[3]].jailed:
        at(inc, h, h * FAST_GAP_MS, missing=[VALS[3]])
        h += 1
    jailed_at_ms = (h - 1) * FAST_GAP_MS
    record = inc.econ.validators[VALS[3]]
    assert record.jailed_until_ms == jailed_at_ms + PERIOD_MS
    for _ in range(FAST_BLOCKS):
        at(inc, h, h * FAST_GAP_MS, signers=VALS[:3])
        h += 1
    assert h * FAST_GAP_MS < record.jailed_until_ms
    with pytest.raises(RejectedError, match="jailed until chain time"):
        inc.execute(Params(), "unjail", VALS[3], [], h, h * FAST_GAP_MS, True)
    inc.execute(Params(), "unjail", VALS[3], [], h, record.jailed_until_ms, True)
    assert not record.jailed


def fl_block(app: FLApp, time_ms: int, txs: list[bytes] | None = None) -> None:
    height = app.state.height + 1
    info = BlockInfo("fl-test", height, time_ms, PrivateKey.from_label("v0").public_key)
    app.finalize_block(txs or [], info)
    app.commit()


def test_an_fl_round_deadline_is_chain_time() -> None:
    params = replace(Params(), updates_per_round=5, round_deadline_ms=PERIOD_MS)
    app = FLApp()
    app.init_chain(replace(genesis(params), genesis_time_ms=0))
    tx = update_tx(app, PrivateKey.from_label("client-0"), random_delta(np.random.default_rng(1)))
    fl_block(app, FAST_GAP_MS, [tx])
    for _ in range(FAST_BLOCKS):
        fl_block(app, (app.state.height + 1) * FAST_GAP_MS)
    assert app.state.round == 0  # a thousand blocks, a sixth of the deadline
    assert app.state.round_deadline_ms() == PERIOD_MS
    fl_block(app, PERIOD_MS - 1)
    assert app.state.round == 0
    fl_block(app, PERIOD_MS)
    assert app.state.round == 1
    assert app.state.model.version == 1  # closed with what it had (updates_min = 1)
    assert app.state.round_opened_ms == PERIOD_MS
    # The next round counts from the block that closed this one, even after a long silence.
    fl_block(app, 10 * PERIOD_MS)
    assert app.state.round == 2
    assert app.state.round_deadline_ms() == 11 * PERIOD_MS
