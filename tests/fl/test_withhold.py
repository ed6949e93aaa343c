"""Selective reveal (`--knowledge withhold`): a committed attacker that sees the honest reveals
can only reveal or withhold.  The choice is greedy through the chain's own rule: it withholds
what helps the honest and keeps what harms, never ends worse than revealing everything, and
the eval plays it through the real app."""

from dataclasses import replace

import numpy as np
import pytest

from consensus.crypto import PrivateKey
from fl.aggregate import ClientUpdate
from fl.client.attacks.view import Oracle, realize
from fl.client.attacks.withhold import choose_reveals
from fl.client.errors import ClientError
from fl.client.simulation import EvalConfig, run
from fl.fixed import ONE
from fl.params import Params

PARAMS = replace(Params(), rule="fedavg")


def _oracle(honest: np.ndarray, attackers: int) -> Oracle:
    keys = [PrivateKey.from_label(f"w-{i}").public_key for i in range(len(honest) + attackers)]
    known = tuple(
        ClientUpdate(keys[i], 10, np.round(realize(h, PARAMS.update_norm_max) * ONE).astype(int))
        for i, h in enumerate(honest)
    )
    return Oracle(PARAMS, known, tuple(keys[len(honest) :]), (10,) * attackers)


def _honest(h: int = 8, d: int = 20, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 0.05, d) + rng.normal(0.0, 0.01, (h, d))


def test_the_commitment_that_helps_the_honest_is_withheld_and_the_harmful_one_revealed() -> None:
    honest = _honest()
    mean = honest.mean(axis=0)
    oracle = _oracle(honest, 3)
    committed = [realize(v, PARAMS.update_norm_max) for v in (mean, -mean, 2 * mean)]

    def harm(agg: np.ndarray) -> float:
        return -float(np.dot(agg, mean))

    assert choose_reveals(oracle, committed, harm) == (False, True, False)


def test_the_choice_never_ends_worse_than_revealing_everything() -> None:
    rng = np.random.default_rng(7)
    honest = _honest()
    mean = honest.mean(axis=0)
    oracle = _oracle(honest, 5)

    def harm(agg: np.ndarray) -> float:
        return -float(np.dot(agg, mean))

    for _ in range(10):
        committed = [realize(v, PARAMS.update_norm_max) for v in rng.normal(0, 0.05, (5, 20))]
        reveal = choose_reveals(oracle, committed, harm)
        shown = [c for c, r in zip(committed, reveal, strict=True) if r]
        chosen = replace(
            oracle,
            attacker_keys=tuple(k for k, r in zip(oracle.attacker_keys, reveal, strict=True) if r),
            attacker_samples=(10,) * len(shown),
        )
        assert harm(chosen.evaluate(shown).delta) >= harm(oracle.evaluate(committed).delta)


def test_the_eval_withholds_through_the_real_app() -> None:
    config = EvalConfig(clients=10, rounds=3, seed=0, knowledge="withhold")
    withheld = run(config, "fedavg", "min_max_uv")
    past = run(replace(config, knowledge="past"), "fedavg", "min_max_uv")
    assert withheld.refused_attackers == 0
    # Under fedavg some committed min-max vectors help the honest mean once it is known.
    assert withheld.withheld_attackers > 0
    assert past.withheld_attackers == 0
    assert withheld.model_hash != past.model_hash


def test_on_a_commit_reveal_chain_the_eval_commits_then_reveals_or_withholds() -> None:
    """`--set commit_blocks=3`: every client commits, the honest reveal, and the attackers
    withhold after seeing them; the chain aggregates what the single-phase run aggregated."""
    config = EvalConfig(
        clients=10, rounds=3, seed=0, knowledge="withhold", overrides=(("commit_blocks", 3),)
    )
    committed = run(config, "fedavg", "min_max_uv")
    single = run(replace(config, overrides=()), "fedavg", "min_max_uv")
    assert committed.withheld_attackers == single.withheld_attackers > 0
    assert committed.refused_attackers == 0
    assert committed.model_hash == single.model_hash


def test_a_commit_reveal_chain_hides_this_rounds_updates_from_the_eval_attackers() -> None:
    config = EvalConfig(clients=10, rounds=1, overrides=(("commit_blocks", 3),))
    with pytest.raises(ClientError, match="hide this round"):
        run(config, "fedavg", "min_max_uv")  # --knowledge current
    assert run(config, "fedavg", "sign_flip").accuracy > 0  # needs no knowledge of the round
