"""Slashing through the real application never punishes honest clients, and still catches
colluders who send one vector (issue 14: incentives that never punish the honest).

breast_cancer is the hard case for a similarity test: with two classes every honest update is
nearly parallel or antiparallel to every other (cosine up to 0.999), so a cosine bar alone
slashed 16-27 of 30 honest clients per clean 50-round run."""

import pytest

from fl.client.simulation import EvalConfig, run
from fl.params import DEFAULT_RULE


@pytest.mark.parametrize("alpha", [0.1, 0.5])
def test_clean_breast_cancer_slashes_no_one_in_50_rounds(alpha: float) -> None:
    config = EvalConfig(dataset="breast_cancer", rounds=50, alpha=alpha, seed=0)
    result = run(config, DEFAULT_RULE, "none")
    assert result.slashed_honest == 0
    assert result.flagged_honest > 0  # the rule does flag honest updates: flags are not evidence


def test_identical_colluders_on_breast_cancer_are_slashed_and_no_one_else() -> None:
    config = EvalConfig(dataset="breast_cancer", rounds=40, alpha=0.5, seed=0)
    result = run(config, DEFAULT_RULE, "ipm")  # nine keys send one vector every round
    # In a single-phase round the first-included of identical updates is presumed the original
    # (a copy of a public update can only follow it), so the colluder that always goes first
    # is never named; the eight that follow are.
    assert result.attackers == 9
    assert result.slashed_attackers == 8
    assert result.slashed_honest == 0


def test_copiers_of_an_honest_update_are_slashed_and_their_victim_is_not() -> None:
    """The mimic attack copies one honest client's public update every round.  Naming both
    sides of a near-copy pair slashed the victim with its copiers; the later-included update
    is the copy."""
    result = run(EvalConfig(clients=10, rounds=26), DEFAULT_RULE, "mimic")
    assert result.slashed_attackers == result.attackers == 3
    assert result.slashed_honest == 0
