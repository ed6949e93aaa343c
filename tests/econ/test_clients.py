"""Client incentives: rewards split by score, slashes for malicious updates, no slash for a
filter's mere rejection, jail for repeat offenders, admission checks."""

import pytest

from fl.economics.params import EconParams
from fl.errors import RejectedError

from .helpers import ALICE, BOB, CAROL, key, make


def test_pool_split_by_score_times_reputation_and_bonded() -> None:
    inc = make(EconParams(round_reward_pool=1_000))
    inc.econ.client(BOB).reputation = 250  # half of the initial 500
    inc.settle_round(0, [(ALICE, 800, ""), (BOB, 800, ""), (CAROL, 800, "")])
    # weights 800*500, 800*250, 800*500 -> 400, 200, 400.
    assert inc.econ.ledger.stake(ALICE) == 1_000 + 400
    assert inc.econ.ledger.stake(BOB) == 1_000 + 200
    assert inc.econ.clients[ALICE].reputation == 520
    inc.econ.ledger.check_invariants()


def test_floors_leave_the_remainder_in_the_reserve() -> None:
    inc = make(EconParams(round_reward_pool=1_000))
    reserve = inc.econ.ledger.reserve
    inc.settle_round(0, [(ALICE, 700, ""), (BOB, 700, ""), (CAROL, 700, "")])
    assert inc.econ.ledger.stake(ALICE) == 1_333
    assert inc.econ.ledger.reserve == reserve - 999


def test_rewards_paid_liquid_when_configured() -> None:
    inc = make(EconParams(reward_to_stake=0))
    inc.settle_round(0, [(ALICE, 10, "")])
    assert inc.econ.ledger.balance(ALICE) == 10_000 + 1_000


def test_below_half_the_median_is_slashed_and_repeat_offenders_are_jailed() -> None:
    inc = make(EconParams(client_slash_permille=100, jail_strikes=2, client_jail_rounds=3))
    verdicts = [(ALICE, 900, ""), (CAROL, 800, ""), (BOB, 300, "")]  # median 800, bar 400
    inc.settle_round(0, verdicts)
    assert inc.econ.ledger.stake(BOB) == 900
    assert inc.econ.clients[BOB].reputation == 400
    assert inc.econ.clients[BOB].rewarded == 0
    inc.check_submit(BOB, 1)  # one strike: still admitted
    inc.settle_round(1, verdicts)
    assert inc.econ.ledger.stake(BOB) == 810
    assert inc.econ.clients[BOB].jailed_until_round == 5
    for fl_round in (2, 4):
        with pytest.raises(RejectedError, match="jailed until round 5"):
            inc.check_submit(BOB, fl_round)
    inc.check_submit(BOB, 5)


def test_rejected_by_the_rule_but_not_malicious_keeps_its_stake() -> None:
    inc = make()
    inc.settle_round(0, [(ALICE, 900, ""), (CAROL, 800, ""), (BOB, 500, "multi_krum: not kept")])
    assert inc.econ.ledger.stake(BOB) == 1_000
    assert inc.econ.clients[BOB].reputation == 400
    assert inc.econ.clients[BOB].strikes == 0
    assert inc.econ.clients[BOB].rewarded == 0


def test_a_flagged_update_with_a_zero_score_is_malicious() -> None:
    inc = make()
    inc.settle_round(0, [(ALICE, 900, ""), (CAROL, 800, ""), (BOB, 0, "centered_clip: dropped")])
    assert inc.econ.ledger.stake(BOB) == 900


def test_admission_needs_stake_and_no_ban() -> None:
    inc = make(EconParams(client_stake_min=2_000))
    with pytest.raises(RejectedError, match="below the client minimum"):
        inc.check_submit(ALICE, 0)
    with pytest.raises(RejectedError, match="below the client minimum"):
        inc.check_submit(key("stranger"), 0)
    inc = make()
    inc.econ.client(ALICE).banned = True
    with pytest.raises(RejectedError, match="banned"):
        inc.check_submit(ALICE, 0)


def test_settlement_does_not_depend_on_list_order() -> None:
    a, b = make(), make()
    a.settle_round(0, [(ALICE, 300, ""), (BOB, 700, ""), (CAROL, 500, "x")])
    b.settle_round(0, [(CAROL, 500, "x"), (ALICE, 300, ""), (BOB, 700, "")])
    assert a.encode() == b.encode()


def test_empty_reserve_pays_nothing_and_keeps_the_invariant() -> None:
    inc = make(reserve=0)
    inc.settle_round(0, [(ALICE, 900, ""), (CAROL, 900, ""), (BOB, 0, "x")])
    assert inc.econ.ledger.stake(ALICE) == 1_000
    assert inc.econ.ledger.stake(BOB) == 900
    inc.econ.ledger.check_invariants()
