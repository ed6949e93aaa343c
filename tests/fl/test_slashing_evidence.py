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
    assert result.slashed_attackers == result.attackers == 9
    assert result.slashed_honest == 0
