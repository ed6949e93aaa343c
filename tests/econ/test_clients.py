"""Client incentives: rewards split by score, slashing only on evidence held across rounds
(never on one round's distance to the median), objective faults slashed at once, no slash for a
filter's mere rejection, admission (stake, ban, registry), and the agreement score itself."""

import math

import numpy as np
import pytest

from fl.aggregate import flags as flag
from fl.aggregate.copies import COPY_DISTANCE_DIVISOR, COPY_NORM_DIVISOR, copy_pairs, near_copies
from fl.economics.clients import (
    NEAR_COPY,
    RoundVerdict,
    next_evidence,
    punish_fault,
    set_admitted,
    settle_round,
    suspicion,
    toward,
)
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
    # weights 800*500, 800*250, 800*500 -> 400, 200, 400, paid liquid (the default).
    assert inc.econ.ledger.balance(ALICE) == 10_000 + 400
    assert inc.econ.ledger.balance(BOB) == 10_000 + 200
    assert inc.econ.ledger.stake(ALICE) == 1_000
    assert inc.econ.clients[ALICE].reputation == 550  # a tenth of the way to 1000
    inc.econ.ledger.check_invariants()


def test_floors_leave_the_remainder_in_the_reserve() -> None:
    inc = make(EconParams(round_reward_pool=1_000))
    reserve = inc.econ.ledger.reserve
    settle(inc, 0, [(ALICE, 700, 900, ""), (BOB, 700, 900, ""), (CAROL, 700, 900, "")])
    assert inc.econ.clients[ALICE].rewarded == 333
    assert inc.econ.ledger.reserve == reserve - 999


def test_rewards_bonded_when_configured() -> None:
    inc = make(EconParams(reward_to_stake=1))
    settle(inc, 0, [(ALICE, 10, 900, "")])
    assert inc.econ.ledger.stake(ALICE) == 1_000 + 1_000
    assert inc.econ.ledger.balance(ALICE) == 10_000


LOW = [(ALICE, 900, 900, ""), (CAROL, 800, 800, ""), (BOB, 0, 900, "far outlier")]  # flagged
GOOD = [(ALICE, 900, 900, ""), (CAROL, 800, 800, ""), (BOB, 900, 850, "")]
COPY = [(ALICE, 900, 900, ""), (CAROL, 800, 800, ""), (BOB, 900, 900, NEAR_COPY)]


def test_one_flagged_round_never_slashes() -> None:
    inc = make(EconParams(client_slash_permille=100, client_jail_rounds=3))
    settle(inc, 0, LOW)
    assert inc.econ.ledger.stake(BOB) == 1_000
    assert inc.econ.clients[BOB].evidence == 30  # suspicion 500 at weight 60 permille
    assert inc.econ.clients[BOB].rewarded == 0  # flagged for conduct: nothing this round
    inc.check_submit(BOB, 1)


def test_evidence_held_across_rounds_slashes_and_jails_then_starts_again() -> None:
    inc = make(EconParams(client_slash_permille=100, client_jail_rounds=3))
    slashed_at = None
    for fl_round in range(40):
        settle(inc, fl_round, COPY)
        if inc.econ.ledger.stake(BOB) < 1_000:
            slashed_at = fl_round
            break
    # Integer EWMA of 1000s at weight 60: 1000 * (1 - 0.94**n) floored reaches 750 at n = 23.
    assert slashed_at == 22
    assert inc.econ.ledger.stake(BOB) == 900
    assert inc.econ.clients[BOB].jailed_until_round == 26
    assert (inc.econ.clients[BOB].evidence, inc.econ.clients[BOB].judged) == (0, 0)
    with pytest.raises(RejectedError, match="jailed until round 26"):
        inc.check_submit(BOB, 25)
    inc.check_submit(BOB, 26)
    settle(inc, 26, COPY)  # a returning offender needs fresh evidence: no slash at once
    assert inc.econ.ledger.stake(BOB) == 900


def test_the_rules_flags_alone_never_slash() -> None:
    # Centered clipping flags some honest clients in 43-45 of 50 rounds at Dirichlet 0.1 with no
    # attacker at all: a flag costs the round's reward, never stake.
    inc = make()
    for fl_round in range(300):
        settle(inc, fl_round, LOW)
    assert inc.econ.clients[BOB].slashed == 0
    assert inc.econ.clients[BOB].evidence < 750
    assert inc.econ.clients[BOB].rewarded == 0


def test_a_client_flagged_every_other_round_is_never_slashed() -> None:
    # Flagged every other round, for 300 rounds: the evidence stays far below the bound.
    inc = make()
    for fl_round in range(300):
        settle(inc, fl_round, GOOD if fl_round % 2 == 0 else LOW)
    assert inc.econ.clients[BOB].slashed == 0
    assert inc.econ.clients[BOB].evidence < 750


def test_copying_in_half_the_rounds_is_slashed_as_evidence_fades_slowly() -> None:
    # Ten copying rounds, then ten clean ones, over and over: with evidence fading as fast as it
    # rose (forget = decay) it peaks at 641 and is never slashed; fading a tenth as fast, it
    # reaches the bound in the third copying stretch (round 45).
    for forget, first_slash in ((60, None), (6, 45)):
        inc = make(EconParams(evidence_forget_permille=forget))
        slashed_in = []
        for fl_round in range(200):
            settle(inc, fl_round, COPY if fl_round % 20 < 10 else GOOD)
            if inc.econ.clients[BOB].slashed and not slashed_in:
                slashed_in.append(fl_round)
        assert slashed_in == ([] if first_slash is None else [first_slash])


@pytest.mark.parametrize(("forget", "low", "high"), [(60, 700, 750), (6, 230, 260)])
def test_a_colluder_reading_its_own_evidence_copies_at_most_a_share_of_rounds(
    forget: int, low: int, high: int
) -> None:
    """The best an evidence-aware colluder does: copy whenever the next copy keeps its evidence
    below the bound, else send a clean update.  Its long-run share of copying rounds is about
    f B / (r (1 - B) + f B) (rise r, fade f, bound B): 75% when evidence fades as fast as it
    rises, 23% with the defaults (727 and 250 permille with the integer steps)."""
    params = EconParams(evidence_forget_permille=forget)
    inc = make(params)
    copies = 0
    for fl_round in range(3_000):
        evidence = inc.econ.clients[BOB].evidence if BOB in inc.econ.clients else 0
        copy = next_evidence(evidence, 1000, params) < params.evidence_slash_permille
        copies += copy and fl_round >= 1_000  # the share once the first climb is over
        settle(inc, fl_round, COPY if copy else GOOD)
    assert inc.econ.clients[BOB].slashed == 0
    assert low <= copies // 2 <= high


def test_the_slash_needs_the_minimum_number_of_rounds() -> None:
    # Even with evidence at once (decay 1000), fewer than evidence_rounds_min rounds never slash.
    inc = make(EconParams(evidence_decay_permille=1000, evidence_rounds_min=5))
    for fl_round in range(4):
        settle(inc, fl_round, COPY)
    assert inc.econ.ledger.stake(BOB) == 1_000
    settle(inc, 4, COPY)
    assert inc.econ.ledger.stake(BOB) == 900


def test_suspicion_from_agreement_only_when_configured() -> None:
    off = make()
    assert suspicion(off.econ, 0, 0, "", True) == 0  # evidence_low_permille = 0: no bar at all
    inc = make(EconParams(evidence_low_permille=400))
    bar = 400 * 800  # round median 800
    assert suspicion(inc.econ, bar, 320, "", True) == 0  # at the bar: not suspect
    assert suspicion(inc.econ, bar, 160, "", True) == 500
    assert suspicion(inc.econ, bar, 0, "", True) == 1000
    assert suspicion(inc.econ, bar, 900, "outlier", True) == 500  # flagged
    low_flag = make(EconParams(evidence_low_permille=400, evidence_flag_permille=250))
    assert suspicion(low_flag.econ, bar, 900, "outlier", True) == 250
    assert suspicion(low_flag.econ, bar, 160, "outlier", True) == 500  # the larger of the two
    assert suspicion(low_flag.econ, bar, 900, "outlier", False) == 0  # flags not trusted
    assert suspicion(low_flag.econ, bar, 900, NEAR_COPY, False) == 1000


CLIPPED = flag.clipped("history_clip", 300)


def test_a_clipped_update_is_paid_its_score_and_costs_nothing() -> None:
    # Distance from the centre is no evidence (an honest client whose classes the model gets
    # wrong is far from the median every round): the clipped update was used, and earns its
    # score (300 here; centered_clip's score is the share it kept, history_clip's its trust).
    # The split by score alone: with `bond_per_weight` > 0 the weights are also times stake,
    # which the rewards grow round by round (test_pool_split_by_score_times_reputation_and_bonded).
    inc = make(EconParams(round_reward_pool=1_600, bond_per_weight=0))
    rows = [(ALICE, 1000, 900, ""), (CAROL, 1000, 800, ""), (BOB, 300, 900, CLIPPED)]
    for fl_round in range(30):
        settle(inc, fl_round, rows)
    bob, alice = inc.econ.clients[BOB], inc.econ.clients[ALICE]
    assert (bob.evidence, bob.slashed, bob.flagged) == (0, 0, 30)
    assert bob.reputation == alice.reputation > 950  # both climbing toward 1000 alike
    # Equal reputations every round: the pool splits 1000 : 1000 : 300 -> 695, 695, 208.
    assert (bob.rewarded, alice.rewarded) == (30 * 208, 30 * 695)
    assert suspicion(inc.econ, 0, 0, CLIPPED, True) == 0


def test_an_update_left_out_for_its_distance_earns_nothing_and_loses_nothing() -> None:
    inc = make()
    dropped = flag.dropped("history_clip")
    settle(inc, 0, [(ALICE, 1000, 900, ""), (CAROL, 1000, 800, ""), (BOB, 700, 900, dropped)])
    bob = inc.econ.clients[BOB]
    assert (bob.rewarded, bob.reputation, bob.evidence) == (0, 500, 0)
    not_kept = flag.not_selected("multi_krum")  # a score, but Multi-Krum did not use it
    settle(inc, 1, [(ALICE, 1000, 900, ""), (CAROL, 1000, 800, ""), (BOB, 700, 900, not_kept)])
    assert (bob.rewarded, bob.reputation, bob.evidence) == (0, 500, 0)


def test_a_conduct_flag_costs_the_reward_and_reputation() -> None:
    inc = make()
    moves = "history_clip: moves with others (similarity 900 permille)"
    settle(inc, 0, [(ALICE, 1000, 900, ""), (CAROL, 1000, 800, ""), (BOB, 400, 900, moves)])
    bob = inc.econ.clients[BOB]
    assert (bob.rewarded, bob.reputation, bob.evidence) == (0, 450, 30)  # a tenth toward 0


def test_reputation_settles_at_the_share_of_clean_rounds() -> None:
    # On breast_cancer honest clients with alike label mixes are flagged "moves with others" in
    # 11-18 of 30 rounds.  With fixed steps (+20 clean, -100 flagged) any client flagged in more
    # than one round of six sank to 0 and was paid nothing even in its clean rounds; an EWMA of
    # its conduct keeps it near its clean share, whatever that share is.
    inc = make(EconParams(round_reward_pool=1_000))
    moves = "history_clip: moves with others (similarity 900 permille)"
    clean = [(ALICE, 1000, 900, ""), (CAROL, 1000, 800, ""), (BOB, 1000, 900, "")]
    flagged = [(ALICE, 1000, 900, ""), (CAROL, 1000, 800, ""), (BOB, 400, 900, moves)]
    settled = []
    for fl_round in range(200):
        settle(inc, fl_round, flagged if fl_round % 5 < 2 else clean)  # flagged 2 rounds in 5
        if fl_round >= 100:
            settled.append(inc.econ.clients[BOB].reputation)
    assert 450 < min(settled) <= max(settled) < 750  # around 600, the share of clean rounds
    assert inc.econ.clients[ALICE].reputation == 1000  # the steps round up: it gets there


def test_toward_moves_at_least_one_and_never_past_the_target() -> None:
    assert toward(999, 1000, 100) == 1000
    assert toward(1, 0, 100) == 0
    assert toward(500, 1000, 100) == 550
    assert toward(500, 0, 1000) == 0
    assert toward(500, 0, 0) == 500


def test_the_flag_kinds_are_read_back_exactly() -> None:
    assert flag.distance(flag.clipped("centered_clip", 12)) is flag.Distance.CLIPPED
    assert flag.distance(flag.dropped("centered_clip")) is flag.Distance.UNUSED
    assert flag.distance(flag.not_selected("multi_krum")) is flag.Distance.UNUSED
    for other in ("", NEAR_COPY, "history_clip: moves with others (clipped to 3 permille)"):
        assert flag.distance(other) is flag.Distance.NONE


def test_in_a_round_with_near_copies_the_rules_flags_are_no_evidence() -> None:
    inc = make()
    # Colluders (ALICE, CAROL copy one vector) steer the rule into flagging honest BOB.
    rows = [(ALICE, 900, 900, NEAR_COPY), (CAROL, 900, 900, NEAR_COPY), (BOB, 0, 300, "far")]
    for fl_round in range(50):
        settle(inc, fl_round, rows)
    assert inc.econ.clients[BOB].evidence == 0
    assert inc.econ.clients[BOB].slashed == 0
    assert inc.econ.clients[ALICE].slashed > 0
    assert inc.econ.clients[CAROL].slashed > 0


def test_low_agreement_alone_never_slashes_by_default() -> None:
    inc = make()
    for fl_round in range(100):
        settle(inc, fl_round, [(ALICE, 900, 900, ""), (CAROL, 800, 800, ""), (BOB, 900, 0, "")])
    assert inc.econ.clients[BOB].evidence == 0
    assert inc.econ.clients[BOB].rewarded > 0  # rewarded for what the rule kept


def test_objective_fault_slashes_at_once_but_once_per_round() -> None:
    inc = make(EconParams(client_slash_permille=100, client_jail_rounds=2))
    events = punish_fault(inc.econ, BOB, 4, "two different commitments")
    assert [e.kind for e in events] == ["client_slashed"]
    assert inc.econ.ledger.stake(BOB) == 900
    assert inc.econ.clients[BOB].jailed_until_round == 7
    assert punish_fault(inc.econ, BOB, 4, "again") == []
    assert inc.econ.ledger.stake(BOB) == 900
    assert inc.econ.clients[BOB].faults == 1


def test_registry_mode_admits_only_governance_approved_clients() -> None:
    inc = make(EconParams(client_registry=1))
    with pytest.raises(RejectedError, match="registry"):
        inc.check_submit(ALICE, 0)
    set_admitted(inc.econ, ALICE, True)
    inc.check_submit(ALICE, 0)
    set_admitted(inc.econ, ALICE, False)
    with pytest.raises(RejectedError, match="registry"):
        inc.check_submit(ALICE, 0)


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
    inc = make(EconParams(evidence_rounds_min=1, evidence_decay_permille=1000), reserve=0)
    settle(inc, 0, [(ALICE, 900, 900, ""), (CAROL, 900, 900, ""), (BOB, 0, 0, NEAR_COPY)])
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


def _spread_sq(updates: list[tuple[bytes, np.ndarray]]) -> int:
    """r**2 of scoring.near_copies, in Python ints: the lower median squared distance of an
    update from the lower coordinate median."""
    rows = np.stack([d for _, d in sorted(updates, key=lambda u: u[0])]).astype(object)
    centre = np.sort(rows, axis=0)[(len(rows) - 1) // 2]
    return sorted(int((row - centre).dot(row - centre)) for row in rows)[(len(rows) - 1) // 2]


def test_near_copies_are_found_exactly_and_honest_spread_is_not() -> None:
    rng = np.random.default_rng(3)
    base = rng.integers(-(1 << 16), 1 << 16, size=5000)
    noise = rng.integers(-(1 << 4), 1 << 4, size=5000)  # cosine ~1 with base, tiny distance
    crowd = [(key(f"h{i}"), rng.integers(-(1 << 16), 1 << 16, size=5000)) for i in range(5)]
    updates = [(ALICE, base), (BOB, base + noise), *crowd]
    assert near_copies(updates, 990) == {ALICE, BOB}
    assert near_copies(updates[::-1], 990) == {ALICE, BOB}  # order is moot
    assert near_copies(updates, 0) == set()  # off
    # The cosine threshold is exact: at the pair's cosine (floored to permille) it is a copy,
    # one permille above it is not.
    a, b = base.astype(float), (base + noise).astype(float)
    permille = math.floor(1000 * float(a @ b) / math.sqrt(float(a @ a) * float(b @ b)))
    assert near_copies(updates, permille) == {ALICE, BOB}
    assert near_copies(updates, permille + 1) == set()
    crowd_opposed = [(ALICE, base), (BOB, -base), *crowd]
    assert near_copies(crowd_opposed, 990) == set()  # opposed is not a copy


def test_in_inclusion_order_only_the_later_of_a_pair_is_the_copy() -> None:
    rng = np.random.default_rng(3)
    base = rng.integers(-(1 << 16), 1 << 16, size=5000)
    crowd = [(key(f"h{i}"), rng.integers(-(1 << 16), 1 << 16, size=5000)) for i in range(5)]
    carol = key("carol")
    # Alice's update was included first; Bob and Carol sent copies of it afterwards.
    updates = [crowd[0], (ALICE, base), *crowd[1:], (BOB, base + 1), (carol, base - 1)]
    assert near_copies(updates, 990, originals_first=True) == {BOB, carol}
    assert near_copies(updates, 990, originals_first=False) == {ALICE, BOB, carol}
    # The order is the inclusion order, not the key order: Bob first makes Alice the copier.
    bob_first = [(BOB, base + 1), *crowd, (ALICE, base), (carol, base - 1)]
    assert near_copies(bob_first, 990, originals_first=True) == {ALICE, carol}
    # The pairs themselves: (earlier, later) in inclusion order, sorted.
    assert copy_pairs(bob_first, 990) == sorted([(BOB, ALICE), (BOB, carol), (ALICE, carol)])


def test_a_near_copy_lies_within_a_hundredth_of_the_spread_exactly() -> None:
    rng = np.random.default_rng(4)
    base = rng.integers(-(1 << 16), 1 << 16, size=2000)
    crowd = [(key(f"h{i}"), rng.integers(-(1 << 16), 1 << 16, size=2000)) for i in range(6)]
    seen = set()
    for step in range(0, 1200, 3):
        updates = [(ALICE, base), (BOB, base + step), *crowd]
        copy = step * step * 2000 * COPY_DISTANCE_DIVISOR**2 <= _spread_sq(updates)
        assert (near_copies(updates, 500) == {ALICE, BOB}) == copy, step
        seen.add(copy)
    assert seen == {True, False}  # the bar was crossed
    # Parallel but not the same vector (two-class updates, where every honest pair has cosine
    # near +-1): never a copy, however high the cosine.
    assert near_copies([(ALICE, base), (BOB, 2 * base), *crowd], 990) == set()


def test_near_zero_updates_that_agree_are_not_copies() -> None:
    """Clients whose data a collapsed model already fits send near-zero updates that agree to
    rounding; only vectors at least r / 20 long can be copies."""
    rng = np.random.default_rng(6)
    crowd = [(key(f"h{i}"), rng.integers(-(1 << 16), 1 << 16, size=500)) for i in range(6)]
    tiny = np.ones(500, dtype=np.int64)
    seen = set()
    for scale in range(1, 20000, 97):
        updates = [(ALICE, tiny * scale), (BOB, tiny * scale), *crowd]
        long_enough = scale * scale * 500 * COPY_NORM_DIVISOR**2 >= _spread_sq(updates)
        assert (near_copies(updates, 950) == {ALICE, BOB}) == long_enough, scale
        seen.add(long_enough)
    assert seen == {True, False}
