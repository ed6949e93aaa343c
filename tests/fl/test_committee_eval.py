"""The evaluation committee's scorer and `fedchain eval --committee`, which drives it through
the real settlement (eval_scores transactions, stake-weighted median, cross-round evidence)."""

from dataclasses import replace

import numpy as np
import pytest

from fl.client import simulation
from fl.client.committee import SCORE_MAX, SCORE_NEUTRAL, score_delta
from fl.client.datasets import load
from fl.client.simulation import EvalConfig
from fl.client.trainers import make_trainer


def test_a_zero_update_scores_neutral() -> None:
    ds = load("digits", 0)
    trainer = make_trainer("softmax", ds.n_features, ds.n_classes)
    weights = trainer.init(np.random.default_rng(0))
    zero = np.zeros_like(weights)
    assert score_delta(trainer, weights, zero, ds.x_test, ds.y_test) == SCORE_NEUTRAL


def test_a_step_down_the_heldout_loss_scores_high_and_its_reverse_low() -> None:
    ds = load("digits", 0)
    trainer = make_trainer("softmax", ds.n_features, ds.n_classes)
    weights = trainer.init(np.random.default_rng(0))
    step = trainer.train(weights, ds.x_train[:200], ds.y_train[:200], np.random.default_rng(1))
    delta = step - weights
    x, y = ds.x_test[:90], ds.y_test[:90]
    assert score_delta(trainer, weights, delta, x, y) > SCORE_NEUTRAL
    assert score_delta(trainer, weights, -delta, x, y) < SCORE_NEUTRAL


def test_every_round_is_settled_by_the_committee() -> None:
    ds = load("digits", 0)
    on = simulation.run(EvalConfig(clients=10, rounds=3, committee=4), "history_clip", "none", ds)
    off = simulation.run(EvalConfig(clients=10, rounds=3), "history_clip", "none", ds)
    assert on.committee_settled == 3
    assert off.committee_settled == 0


def test_the_committee_scores_replace_the_agreement_in_the_evidence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One round, a bar that one round of full suspicion (60) reaches and a rule flag (30)
    does not.  Noise attackers are slashed on the committee's scores; a committee that scores
    every update 1000 saves them, though their on-chain agreement alone would slash them."""
    ds = load("digits", 0)
    overrides: tuple[tuple[str, int | str], ...] = (
        ("evidence_low_permille", 1000),
        ("evidence_rounds_min", 1),
        ("evidence_slash_permille", 50),
    )
    config = EvalConfig(clients=10, rounds=1, overrides=overrides, committee=4)
    scored = simulation.run(config, "history_clip", "gaussian", ds)
    on_chain = simulation.run(replace(config, committee=0), "history_clip", "gaussian", ds)
    monkeypatch.setattr(simulation, "score_tx", lambda *_: SCORE_MAX)
    praised = simulation.run(config, "history_clip", "gaussian", ds)
    assert scored.slashed_attackers == scored.attackers == 3
    assert on_chain.slashed_attackers == 3
    assert praised.slashed_attackers == praised.slashed_honest == 0
    assert praised.committee_settled == 1
