"""Client incentives: rewards split by score, slashes for flagged updates, jail for repeat
offenders, admission checks."""

import pytest

from fl.economics.params import EconParams
from fl.errors import RejectedError

from .helpers import ALICE, BOB, CAROL, make


def test_pool_split_by_score_times_reputation_and_bonded() -> None:
    inc = make(EconParams(round_reward_pool=1_000))
    inc.econ.client(BOB).reputation = 250  # half of the initial 500
    inc.settle_round(0, [(ALICE, 800), (BOB, 800), (CAROL, 0)], [])
    # weights 800*500, 800*250, 0 -> 666 and 333; the remainder 1 stays in the reserve.
    assert inc.econ.ledger.stake(ALICE) == 1_000 + 666
    assert inc.econ.ledger.stake(BOB) == 1_000 + 333
    assert inc.econ.ledger.stake(CAROL) == 1_000
    assert inc.econ.clients[ALICE].reputation == 520
    inc.econ.ledger.check_invariants()


def test_rewards_paid_liquid_when_configured() -> None:
    inc = make(EconParams(reward_to_stake=0))
    inc.settle_round(0, [(ALICE, 10)], [])
    assert inc.econ.ledger.balance(ALICE) == 10_000 + 1_000


def test_flagged_lose_stake_and_reputation_and_repeat_offenders_are_jailed() -> None:
    inc = make(EconParams(client_slash_permille=100, jail_strikes=2, client_jail_rounds=3))
    inc.settle_round(0, [(ALICE, 500)], [(BOB, "far from the others")])
    assert inc.econ.ledger.stake(BOB) == 900
    assert inc.econ.clients[BOB].reputation == 400
    inc.check_submit(BOB, 1)  # one strike: still admitted
    inc.settle_round(1, [], [(BOB, "far from the others")])
    assert inc.econ.ledger.stake(BOB) == 810
    assert inc.econ.clients[BOB].jailed_until_round == 5
    for fl_round in (2, 4):
        with pytest.raises(RejectedError, match="jailed until round 5"):
            inc.check_submit(BOB, fl_round)
    inc.check_submit(BOB, 5)


def test_admission_needs_stake_and_no_ban() -> None:
    inc = make(EconParams(client_stake_min=2_000))
    with pytest.raises(RejectedError, match="below the client minimum"):
        inc.check_submit(ALICE, 0)
    inc = make()
    inc.econ.client(ALICE).banned = True
    with pytest.raises(RejectedError, match="banned"):
        inc.check_submit(ALICE, 0)


def test_settlement_does_not_depend_on_list_order() -> None:
    a, b = make(), make()
    a.settle_round(0, [(ALICE, 3), (BOB, 7), (CAROL, 5)], [])
    b.settle_round(0, [(CAROL, 5), (ALICE, 3), (BOB, 7)], [])
    assert a.encode() == b.encode()


def test_empty_reserve_pays_nothing_and_keeps_the_invariant() -> None:
    inc = make(reserve=0)
    inc.settle_round(0, [(ALICE, 100)], [(BOB, "x")])
    assert inc.econ.ledger.stake(ALICE) == 1_000
    inc.econ.ledger.check_invariants()
