"""The evaluation committee: validators' off-chain scores, stake-weighted median, deferred
settlement; bad score transactions rejected with a reason and no change."""

import numpy as np
import pytest

from consensus.codec import Value, decode, encode
from fl.economics.committee import weighted_median
from fl.economics.layer import Incentives
from fl.errors import RejectedError
from fl.params import Params

from .helpers import ALICE, BLOCK_MS, BOB, CAROL, VALS, fast, key, make

P = Params()
ROUND = 7
CLOSE = 10


def committee_chain() -> Incentives:
    inc = make(
        fast(
            committee_blocks=3,
            evidence_low_permille=400,
            collusion_permille=0,  # the fixture's updates are near-copies by construction
            evidence_rounds_min=1,
            evidence_decay_permille=1000,
            evidence_slash_permille=500,
        )
    )
    base = np.arange(1, 51, dtype=np.int64)
    # On chain, all three agree with the median: only the committee can tell BOB apart.
    pending = [(ALICE, base), (BOB, base + 1), (CAROL, base + 2)]
    verdicts = [(ALICE, 900, "", b"a" * 32), (BOB, 900, "", b"b" * 32), (CAROL, 900, "", b"")]
    assert inc.settle_round(ROUND, CLOSE, pending, verdicts) == []
    return inc


def scores(inc: Incentives, validator: bytes, body: Value, height: int) -> None:
    inc.execute(P, "eval_scores", validator, body, height, height * BLOCK_MS, apply=True)


def test_weighted_median_ignores_a_minority_of_stake() -> None:
    a, b, c, d = (bytes([i]) * 32 for i in range(4))
    assert weighted_median([(100, 10, a), (120, 10, b), (110, 10, c), (1000, 10, d)]) == 110
    assert weighted_median([(100, 10, a), (1000, 29, b)]) == 1000
    assert weighted_median([(100, 30, a), (1000, 29, b)]) == 100
    assert weighted_median([(5, 1, a)]) == 5


def test_round_waits_for_the_committee_then_settles_on_the_weighted_median() -> None:
    inc = committee_chain()
    assert [u.round for u in inc.econ.unsettled] == [ROUND]
    honest: Value = [ROUND, [[ALICE, 900], [BOB, 100], [CAROL, 850]]]
    liar: Value = [ROUND, [[ALICE, 0], [BOB, 1000], [CAROL, 0]]]
    for v in VALS[:3]:
        scores(inc, v, honest, CLOSE + 1)
    scores(inc, VALS[3], liar, CLOSE + 2)
    for h in (CLOSE + 1, CLOSE + 2):
        inc.end_block(P, h, h * BLOCK_MS)
        assert inc.econ.unsettled
    _, _, events = inc.end_block(P, CLOSE + 3, (CLOSE + 3) * BLOCK_MS)
    assert inc.econ.unsettled == []
    assert "committee_settled" in [e.kind for e in events]
    # median 100 < 40% of the round median, evidence taken at once here (decay 1000): slashed
    assert inc.econ.ledger.stake(BOB) == 900
    assert inc.econ.clients[ALICE].rewarded > 0
    assert inc.econ.clients[CAROL].rewarded > 0


def test_unscored_clients_keep_their_on_chain_agreement() -> None:
    inc = committee_chain()
    scores(inc, VALS[0], [ROUND, [[BOB, 0]]], CLOSE + 1)
    inc.end_block(P, CLOSE + 3, (CLOSE + 3) * BLOCK_MS)
    assert inc.econ.ledger.stake(BOB) == 900
    assert inc.econ.clients[ALICE].rewarded > 0


def test_a_later_submission_replaces_the_earlier_one() -> None:
    inc = committee_chain()
    scores(inc, VALS[0], [ROUND, [[BOB, 0]]], CLOSE + 1)
    scores(inc, VALS[0], [ROUND, [[BOB, 950]]], CLOSE + 2)
    inc.end_block(P, CLOSE + 3, (CLOSE + 3) * BLOCK_MS)
    assert inc.econ.clients[BOB].rewarded > 0
    assert inc.econ.clients[BOB].slashed == 0


BAD = [
    (ALICE, [ROUND, [[BOB, 1]]], CLOSE + 1, "only an active validator"),
    (VALS[0], [ROUND + 1, [[BOB, 1]]], CLOSE + 1, "not awaiting committee scores"),
    (VALS[0], [ROUND, [[BOB, 1]]], CLOSE + 4, "scoring of round 7 has ended"),
    (VALS[0], [ROUND, [[key("x"), 1]]], CLOSE + 1, "has no update in round 7"),
    (VALS[0], [ROUND, [[BOB, 1001]]], CLOSE + 1, "malformed eval_scores"),
    (VALS[0], [ROUND, [[BOB, 1], [BOB, 2]]], CLOSE + 1, "scored twice"),
    (VALS[0], "nonsense", CLOSE + 1, "malformed eval_scores"),
]


@pytest.mark.parametrize(("sender", "body", "height", "reason"), BAD)
def test_bad_scores_are_rejected_and_change_nothing(
    sender: bytes, body: Value, height: int, reason: str
) -> None:
    inc = committee_chain()
    before = encode(inc.encode())
    for apply in (False, True):
        with pytest.raises(RejectedError, match=reason):
            inc.execute(P, "eval_scores", sender, body, height, height * BLOCK_MS, apply=apply)
    assert encode(inc.encode()) == before


def test_jailed_validator_may_not_score() -> None:
    inc = committee_chain()
    inc.econ.validators[VALS[1]].jailed = True
    with pytest.raises(RejectedError, match="only an active validator"):
        scores(inc, VALS[1], [ROUND, [[BOB, 1]]], CLOSE + 1)


def test_unsettled_rounds_survive_encoding() -> None:
    inc = committee_chain()
    scores(inc, VALS[0], [ROUND, [[BOB, 10], [ALICE, 20]]], CLOSE + 1)
    raw = encode(inc.encode())
    again = Incentives.decode(decode(raw))
    assert encode(again.encode()) == raw
    assert again.econ.unsettled[0].scores[VALS[0]] == {BOB: 10, ALICE: 20}


def test_validators_are_paid_for_scoring_in_consensus_and_the_liar_is_not() -> None:
    inc = committee_chain()
    honest: Value = [ROUND, [[ALICE, 900], [BOB, 100], [CAROL, 850]]]
    liar: Value = [ROUND, [[ALICE, 0], [BOB, 1000], [CAROL, 0]]]
    for v in VALS[:3]:
        scores(inc, v, honest, CLOSE + 1)
    scores(inc, VALS[3], liar, CLOSE + 1)
    before = [inc.econ.ledger.balance(v) for v in VALS]
    inc.end_block(P, CLOSE + 3, (CLOSE + 3) * BLOCK_MS)
    gained = [inc.econ.ledger.balance(v) - b for v, b in zip(VALS, before, strict=True)]
    # Consensus: 1000 for the honest three; the liar is 883 away on average -> 117.
    # Pool 100 split by stake * consensus: 100 * 1000 // 3117 = 32 each, 100 * 117 // 3117 = 3.
    assert gained == [32, 32, 32, 3]
