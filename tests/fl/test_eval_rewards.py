"""`fedchain eval` reports what the incentives layer paid each group of clients, read from the
chain's own client records (issue 14: reward by measured contribution)."""

from fl.client.simulation import EvalConfig, run
from fl.params import DEFAULT_RULE

SMALL = EvalConfig(clients=10, rounds=10)


def test_a_clean_run_pays_the_whole_pool_to_honest_clients() -> None:
    result = run(SMALL, DEFAULT_RULE, "none")
    assert result.reward_attackers == 0.0
    # round_reward_pool (1,000) a round, split with floors: at most 10 tokens a round are kept
    assert 10 * 1_000 - 10 * 10 <= 10 * result.reward_honest <= 10 * 1_000


def test_sign_flippers_earn_less_than_honest_clients() -> None:
    result = run(SMALL, DEFAULT_RULE, "sign_flip")
    assert result.reward_attackers < 0.5 * result.reward_honest


def test_a_client_whose_updates_are_copied_is_still_paid() -> None:
    """Karimireddy et al.'s mimic attack: nine colluders copy one honest client's public update
    every round.  The rule saw ten look-alikes and flagged and paid none of them, the victim
    included (seed 0: paid 0 over 10 rounds); the inclusion order shows which came first."""
    result = run(EvalConfig(clients=30, rounds=10, alpha=0.1), DEFAULT_RULE, "mimic")
    assert result.reward_attackers == 0.0
    assert result.reward_honest_least > 0.25 * result.reward_honest


def test_an_honest_client_far_from_the_centre_is_still_paid() -> None:
    """Dirichlet 0.1, clean: the honest clients whose classes the model gets wrong send the
    updates farthest from the median, and the rule clips them.  A clip is a verdict on distance,
    not conduct (fl/aggregate/flags.py): the clipped update was used at its kept share and is
    paid that.  When a clip cost the whole round's reward and 100 reputation, the least-paid
    honest client earned 21% of the mean (seed 2, 15 rounds: 104 of 493 tokens); now 50%."""
    result = run(EvalConfig(clients=30, rounds=15, alpha=0.1, seed=2), DEFAULT_RULE, "none")
    assert result.reward_honest_least > 0.35 * result.reward_honest


def test_an_honest_client_flagged_for_resemblance_recovers_its_pay() -> None:
    """breast_cancer, clean: honest clients with alike label mixes move alike, and the rule
    flags them "moves with others" in their first 11-14 rounds.  With fixed reputation steps
    (+20 clean, -100 flagged) they sank to 0 and climbed back too slowly to be paid: the
    least-paid honest client earned 8% of the mean over 30 rounds (78 of 986 tokens).  As an
    EWMA of conduct its reputation recovers with its clean rounds: 27% (262)."""
    result = run(EvalConfig(dataset="breast_cancer", rounds=30, seed=0), DEFAULT_RULE, "none")
    assert result.reward_honest_least > 0.2 * result.reward_honest
