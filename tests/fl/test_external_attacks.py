"""Attacks implemented outside fedchain join `fedchain eval` through `register_external`: they
see the round as our coordinated attackers do and their deltas reach the chain as crafted."""

import numpy as np
import pytest

from fl.client import attacks, simulation
from fl.client.attacks import RoundView, adversary
from fl.client.datasets import load
from fl.client.errors import ClientError
from fl.client.simulation import EvalConfig

FloatArray = adversary.FloatArray


@pytest.fixture(autouse=True)
def empty_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adversary, "_EXTERNAL", {})


def test_a_registered_attack_is_known_to_eval_and_coordinated() -> None:
    assert "outside_zero" not in attacks.eval_attacks()
    attacks.register_external("outside_zero", lambda view, rng: [])
    assert attacks.eval_attacks()[-1] == "outside_zero"
    assert attacks.is_coordinated("outside_zero")
    attacks.check_eval("outside_zero")


@pytest.mark.parametrize("name", ["sign_flip", "min_max_uv", "", "a,b"])
def test_a_builtin_or_malformed_name_cannot_be_registered(name: str) -> None:
    with pytest.raises(ClientError):
        attacks.register_external(name, lambda view, rng: [])


def test_the_crafted_deltas_are_what_the_chain_aggregates() -> None:
    seen: list[tuple[int, int]] = []

    def reverse_mean(view: RoundView, rng: np.random.Generator) -> list[FloatArray]:
        seen.append((view.honest.shape[0], view.n_attackers))
        return [-4.0 * view.honest.mean(axis=0)] * view.n_attackers

    attacks.register_external("outside_reverse", reverse_mean)
    ds = load("digits", 0)
    config = EvalConfig(clients=10, rounds=3)
    outside = simulation.run(config, "fedavg", "outside_reverse", ds)
    clean = simulation.run(config, "fedavg", "none", ds)
    assert seen == [(7, 3)] * 3
    # FedAvg takes the reversed, amplified mean in: the model goes backwards.
    assert outside.accuracy < clean.accuracy - 0.2


def test_a_crafter_that_returns_the_wrong_count_is_an_error() -> None:
    attacks.register_external("outside_short", lambda view, rng: [view.honest[0]])
    ds = load("digits", 0)
    with pytest.raises(ClientError, match="crafted 1 deltas for 3"):
        simulation.run(EvalConfig(clients=10, rounds=1), "fedavg", "outside_short", ds)
