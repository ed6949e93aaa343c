"""Stake under attack: 30 clients on digits, 30% label flippers, through the real application.

The figures (all rules, seeds 0-3) are in docs/robustness.md; `python -m tests.econ.robustness`
prints the seed-0 tables.  These tests pin what the incentives layer achieves in five rounds:
nobody is slashed yet (slashing needs evidence over at least `evidence_rounds_min` = 10
rounds; the 50-round figures are in docs/robustness.md, "Slashing"), and the tokens (stake
plus liquid rewards) already move the honest clients' way, because updates flagged for their
conduct or left out for their distance earn nothing, and clipped ones only their kept share.
"""

import pytest

from tests.econ.robustness import run, table

pytestmark = pytest.mark.slow

RULES = ["centered_clip", "multi_krum", "median", "trimmed_mean", "fedavg"]


@pytest.mark.parametrize("rule", RULES)
def test_slashing_finds_the_label_flippers_and_tokens_move_their_way(rule: str) -> None:
    figures = run(rounds=5, rule=rule)
    print(table(figures))
    last = figures[-1]
    assert last.slashed_honest == 0
    assert last.slashed_attackers == 0  # five rounds are not evidence enough for anyone
    honest = [f.honest_tokens_mean for f in figures]
    assert honest == sorted(honest)
    assert honest[-1] > last.attacker_tokens_mean


def test_committee_with_a_lying_validator_still_finds_the_attackers() -> None:
    """Four validators score updates on held-out data; one inverts every score.  The stake-
    weighted median of the committee settles each round two blocks after it closes."""
    figures = run(rounds=5, rule="centered_clip", committee=True, liar=True)
    print(table(figures))
    assert figures[-1].slashed_honest == 0
    assert figures[-1].honest_tokens_mean > figures[-1].attacker_tokens_mean
