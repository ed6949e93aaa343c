"""Client incentives: rewards split by score, strikes then slashes for malicious updates (low
agreement with the round's median), no slash for a filter's mere rejection, jail for repeat
offenders, admission checks, and the agreement score itself."""

import math

import numpy as np
import pytest

from fl.economics.clients import RoundVerdict, settle_round
from fl.economics.layer import Incentives
from fl.economics.params import EconParams
from fl.economics.scoring import COLUMNS_PER_CHUNK, DeltaArray, agreement_permille
from fl.errors import RejectedError

from .helpers import ALICE, BOB, CAROL, key, make


def settle(inc: Incentives, fl_round: int, rows: list[tuple[bytes, int, int, str]]) -> None:
    settle_round(inc.econ, fl_round, [RoundVerdict(*row) for row in rows])


def test_pool_split_by_score_times_reputation_and_bonded() -> None:
    inc = make(EconParams(round_reward_pool=1_000))
    inc.econ.client(BOB).reputation = 250  # half of the initial 500
    settle(inc, 0, [(ALICE, 800, 900, ""), (BOB, 800, 900, ""), (CAROL, 800, 900, "")])
    # weights 800*500, 800*250, 800*500 -> 400, 200, 400.
    assert inc.econ.ledger.stake(ALICE) == 1_000 + 400
    assert inc.econ.ledger.stake(BOB) == 1_000 + 200
    assert inc.econ.clients[ALICE].reputation == 520
    inc.econ.ledger.check_invariants()


def test_floors_leave_the_remainder_in_the_reserve() -> None:
    inc = make(EconParams(round_reward_pool=1_000))
    reserve = inc.econ.ledger.reserve
    settle(inc, 0, [(ALICE, 700, 900, ""), (BOB, 700, 900, ""), (CAROL, 700, 900, "")])
    assert inc.econ.ledger.stake(ALICE) == 1_333
    assert inc.econ.ledger.reserve == reserve - 999


def test_rewards_paid_liquid_when_configured() -> None:
    inc = make(EconParams(reward_to_stake=0))
    settle(inc, 0, [(ALICE, 10, 900, "")])
    assert inc.econ.ledger.balance(ALICE) == 10_000 + 1_000


def test_strike_then_slash_then_jail_for_low_agreement() -> None:
    inc = make(EconParams(client_slash_permille=100, client_jail_rounds=3))
    # median agreement 800, bar 400 * 800: BOB at 300 is malicious.
    rows = [(ALICE, 900, 900, ""), (CAROL, 800, 800, ""), (BOB, 900, 300, "")]
    settle(inc, 0, rows)
    assert inc.econ.ledger.stake(BOB) == 1_000  # first strike: no slash yet
    assert inc.econ.clients[BOB].reputation == 400
    assert inc.econ.clients[BOB].rewarded == 0
    inc.check_submit(BOB, 1)
    settle(inc, 1, rows)
    assert inc.econ.ledger.stake(BOB) == 900
    assert inc.econ.clients[BOB].jailed_until_round == 5
    for fl_round in (2, 4):
        with pytest.raises(RejectedError, match="jailed until round 5"):
            inc.check_submit(BOB, fl_round)
    inc.check_submit(BOB, 5)
    settle(inc, 5, rows)  # a returning offender is slashed and jailed again at once
    assert inc.econ.ledger.stake(BOB) == 810
    assert inc.econ.clients[BOB].jailed_until_round == 9


def test_an_accepted_round_takes_back_a_strike() -> None:
    inc = make()
    low = [(ALICE, 900, 900, ""), (CAROL, 800, 800, ""), (BOB, 900, 300, "")]
    good = [(ALICE, 900, 900, ""), (CAROL, 800, 800, ""), (BOB, 900, 850, "")]
    for rows in (low, good, low, good):
        settle(inc, 0, rows)
    assert inc.econ.ledger.stake(BOB) > 1_000  # rewarded twice, never slashed
    assert inc.econ.clients[BOB].slashed == 0


def test_rejected_by_the_rule_but_agreeing_keeps_its_stake() -> None:
    inc = make(EconParams(slash_strikes=1))
    settle(inc, 0, [(ALICE, 900, 900, ""), (CAROL, 800, 800, ""), (BOB, 0, 700, "not kept")])
    assert inc.econ.ledger.stake(BOB) == 1_000
    assert inc.econ.clients[BOB].reputation == 400
    assert inc.econ.clients[BOB].strikes == 0
    assert inc.econ.clients[BOB].rewarded == 0


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
    rows = [(ALICE, 300, 100, ""), (BOB, 700, 900, ""), (CAROL, 500, 800, "x")]
    settle(a, 0, rows)
    settle(b, 0, rows[::-1])
    assert a.encode() == b.encode()


def test_empty_reserve_pays_nothing_and_keeps_the_invariant() -> None:
    inc = make(EconParams(slash_strikes=1), reserve=0)
    settle(inc, 0, [(ALICE, 900, 900, ""), (CAROL, 900, 900, ""), (BOB, 0, 0, "x")])
    assert inc.econ.ledger.stake(ALICE) == 1_000
    assert inc.econ.ledger.stake(BOB) == 900
    inc.econ.ledger.check_invariants()


def test_agreement_is_cosine_with_the_coordinate_median() -> None:
    base = np.arange(1, 9001, dtype=np.int64)  # spans several column chunks
    updates: list[tuple[bytes, DeltaArray]] = [
        (ALICE, base),
        (BOB, 2 * base),
        (CAROL, -base),
        (key("d"), base.astype(np.int32)),
    ]
    scores = agreement_permille(updates)
    assert scores[ALICE] == 1000
    assert scores[BOB] == 1000
    assert scores[CAROL] == 0
    assert scores == agreement_permille(updates[::-1])
    orthogonal = np.zeros(9000, dtype=np.int64)
    orthogonal[0] = 1
    alone: list[tuple[bytes, DeltaArray]] = [(ALICE, orthogonal)]
    assert agreement_permille(alone)[ALICE] == 1000
    assert agreement_permille([]) == {}


@pytest.mark.parametrize("clients", [5, 6])
def test_agreement_matches_a_whole_matrix_reference_exactly(clients: int) -> None:
    rng = np.random.default_rng(clients)
    size = 2 * COLUMNS_PER_CHUNK + 77  # two full chunks and a ragged one
    updates: list[tuple[bytes, DeltaArray]] = [
        (key(f"c{i}"), rng.integers(-(2**20), 2**20, size).astype(np.int32)) for i in range(clients)
    ]
    ordered = sorted(updates, key=lambda u: u[0])
    matrix = np.stack([d for _, d in ordered]).astype(object)  # Python ints: no overflow
    centre = np.sort(matrix, axis=0)[(clients - 1) // 2]
    expected = {}
    for client, row in zip((c for c, _ in ordered), matrix, strict=True):
        dot = int(row.dot(centre))
        denominator = math.isqrt(int(row.dot(row)) * int(centre.dot(centre)))
        expected[client] = 0 if dot <= 0 else min(1000, 1000 * dot // denominator)
    assert agreement_permille(updates) == expected
    norms = {c: int(d.astype(np.int64) @ d.astype(np.int64)) for c, d in updates}
    assert agreement_permille(updates, norms) == expected  # norms known from check time
    wrong = {c: 4 * n for c, n in norms.items()}  # the known norms are really used
    assert agreement_permille(updates, wrong) != expected
