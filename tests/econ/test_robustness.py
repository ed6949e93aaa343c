"""Stake under attack: 30 clients on digits, 30% label flippers, through the real application.

The figures (all rules) are in docs/robustness.md; `python -m tests.econ.robustness` prints
them.  These tests pin what the incentives layer must achieve with the default rule and with
Multi-Krum, five rounds each.
"""

import pytest

from tests.econ.robustness import run, table

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("rule", ["centered_clip", "multi_krum"])
def test_honest_stake_rises_and_attackers_stake_falls(rule: str) -> None:
    figures = run(rounds=5, rule=rule)
    print(table(figures))
    honest = [f.honest_stake_mean for f in figures]
    assert honest == sorted(honest)
    assert honest[-1] > 1_150
    assert figures[-1].attacker_stake_mean < 950


def test_multi_krum_slashes_every_attacker_and_no_honest_client_within_four_rounds() -> None:
    figures = run(rounds=4, rule="multi_krum")
    print(table(figures))
    assert figures[-1].precision >= 0.95
    assert figures[-1].recall >= 0.95


def test_centered_clip_never_slashes_an_honest_client() -> None:
    figures = run(rounds=5, rule="centered_clip")
    assert all(f.slashed_honest == 0 for f in figures)
    assert figures[-1].recall >= 0.85
