"""The default rule gives near-copies weight 0 through the real app (fl/aggregate/copies.py):
on a two-class task every update lies near one line, so the history rule's traces do not tell
nine identical colluders from the honest crowd, but the exact copy test does."""

from fl.client.datasets import load
from fl.client.simulation import EvalConfig, run
from fl.params import DEFAULT_RULE

# breast_cancer, seed 1, 15 rounds: IPM's nine identical updates took the chain's model from
# 92.0% (clean) to 65.5% before copies weighed nothing.
CONFIG = EvalConfig(dataset="breast_cancer", rounds=15, seed=1)


def test_identical_colluders_do_not_move_a_two_class_model() -> None:
    data = load(CONFIG.dataset, CONFIG.seed)
    clean = run(CONFIG, DEFAULT_RULE, "none", data)
    attacked = run(CONFIG, DEFAULT_RULE, "ipm", data)
    assert attacked.accuracy >= clean.accuracy - 0.01
    # every copier's update is flagged every round: 8 copiers (the first-included is not named)
    assert attacked.flagged_attackers >= 8 * CONFIG.rounds
    assert attacked.flagged_honest <= clean.flagged_honest + CONFIG.rounds
