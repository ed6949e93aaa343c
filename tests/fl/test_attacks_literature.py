"""The literature's and the adaptive attacks of `fedchain eval`, as specifications.

Min-max / min-sum meet their distance bounds and sit on them (the gamma search found the largest
gamma, not a timid one); Fang's values lie beyond the honest extremes; the adaptive attacker's
unflagged variant is not flagged by the very rule it searched through; every coordinated attack
yields updates the chain admits; one seed gives one run.
"""

from dataclasses import replace

import numpy as np
import pytest

from consensus.crypto import PrivateKey
from fl.aggregate import ClientUpdate
from fl.client import attacks
from fl.client.attacks import adaptive, literature
from fl.client.attacks.view import Oracle, RoundView, realize
from fl.client.simulation import EvalConfig, run
from fl.fixed import DELTA_ABS_MAX, ONE
from fl.params import DEFAULT_RULE, Params


def _honest(h: int = 12, d: int = 40, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    trend = rng.normal(0.0, 0.05, d)
    return trend + rng.normal(0.0, 0.02, (h, d))


def _sq(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum((a - b) ** 2))


@pytest.mark.parametrize("direction", literature.DIRECTIONS)
def test_min_max_stays_within_the_largest_honest_distance_and_reaches_it(direction: str) -> None:
    honest = _honest()
    m = literature.shejwalkar(honest, direction, "min_max")
    widest = max(_sq(a, b) for a in honest for b in honest)
    farthest = max(_sq(m, g) for g in honest)
    assert farthest <= widest
    assert farthest >= 0.99 * widest  # the search pushed gamma to the bound


@pytest.mark.parametrize("direction", literature.DIRECTIONS)
def test_min_sum_stays_within_the_largest_honest_sum_and_reaches_it(direction: str) -> None:
    honest = _honest()
    m = literature.shejwalkar(honest, direction, "min_sum")
    bound = max(sum(_sq(a, b) for b in honest) for a in honest)
    total = sum(_sq(m, g) for g in honest)
    assert total <= bound
    assert total >= 0.99 * bound


def test_min_max_moves_against_the_honest_mean() -> None:
    honest = _honest()
    mu = honest.mean(axis=0)
    m = literature.shejwalkar(honest, "uv", "min_max")
    assert float(np.dot(m - mu, mu)) < 0


def test_gamma_search_ends_when_no_gamma_holds() -> None:
    # one honest update: the widest honest distance is 0, so only gamma = 0 meets min-max
    honest = _honest(h=2)
    honest[1] = honest[0]
    assert literature.gamma_search(honest, -honest[0], "min_max") < 1e-9


def test_fang_sends_values_beyond_the_honest_extreme_against_the_honest_direction() -> None:
    honest = _honest()
    out = literature.fang(honest, 3, np.random.default_rng(0))
    s = np.sign(honest.mean(axis=0))
    for v in out:
        assert np.all(np.where(s > 0, v <= honest.min(axis=0), v >= honest.max(axis=0)))
    assert not np.array_equal(out[0], out[1])  # each attacker draws its own values


def _view(honest: np.ndarray, m: int, params: Params) -> RoundView:
    keys = [PrivateKey.from_label(f"t-{i}").public_key for i in range(len(honest) + m)]
    known = tuple(
        ClientUpdate(keys[i], 10, np.round(realize(h, params.update_norm_max) * ONE).astype(int))
        for i, h in enumerate(honest)
    )
    oracle = Oracle(params, known, tuple(keys[len(honest) :]), (10,) * m)
    return RoundView(0, honest, honest[:m].copy(), oracle, params.update_norm_max)


@pytest.mark.parametrize("rule", ["centered_clip", "multi_krum", "trimmed_mean"])
def test_adaptive_unflagged_is_not_flagged_by_the_rule_it_searched(rule: str) -> None:
    params = replace(Params(), rule=rule)
    view = _view(_honest(h=21), 9, params)
    adversary = attacks.Adversary("adaptive_unflagged", attacks.Collusion(30, 9))
    deltas = adversary.craft(view, np.random.default_rng(0))
    outcome = view.oracle.evaluate(deltas)
    assert not any(outcome.attackers_flagged)
    # ... and it still moves the aggregate away from the honest mean
    mu = view.honest.mean(axis=0)
    assert np.linalg.norm(outcome.delta - mu) > 0.1 * adaptive.honest_spread(view.honest)


def test_adaptive_moves_the_aggregate_at_least_as_far_as_min_max_along_its_direction() -> None:
    params = Params()
    view = _view(_honest(h=21), 9, params)
    mu = view.honest.mean(axis=0)
    u = adaptive.unit(literature.perturbation(view.honest, "uv"))
    best = adaptive.along(view, u)
    min_max = realize(literature.shejwalkar(view.honest, "uv", "min_max"), params.update_norm_max)
    moved = float(np.dot(view.oracle.evaluate([min_max] * 9).delta - mu, u))
    assert best is not None
    assert best.value >= moved


def test_backdoor_pgd_sits_on_the_honest_radius() -> None:
    params = Params()
    view = _view(_honest(h=21), 9, params)
    out = attacks.Adversary("backdoor_pgd", attacks.Collusion(30, 9)).craft(
        view, np.random.default_rng(0)
    )
    mu = view.honest.mean(axis=0)
    radius = adaptive.honest_spread(view.honest)
    for v in out:
        assert abs(float(np.linalg.norm(v - mu)) - radius) < 0.01 * radius


def test_drift_keeps_the_direction_of_its_first_round() -> None:
    params = Params()
    adversary = attacks.Adversary("drift", attacks.Collusion(30, 9))
    adversary.craft(_view(_honest(h=21, seed=1), 9, params), np.random.default_rng(0))
    first = adversary.drift_direction
    adversary.craft(_view(_honest(h=21, seed=2), 9, params), np.random.default_rng(0))
    assert first is not None
    assert adversary.drift_direction is first


def test_mimic_targets_the_update_farthest_along_the_honest_main_axis() -> None:
    honest = _honest(h=12)
    main = np.zeros(40)
    main[7] = 1.0
    honest[4] += 0.5 * main  # the one client far out along a direction nobody else varies in
    honest[9] -= 0.3 * main
    assert literature.mimic_target(honest) == 4


def test_mimic_copies_one_honest_client_every_round() -> None:
    params = Params()
    adversary = attacks.Adversary("mimic", attacks.Collusion(30, 9))
    first = _view(_honest(h=21, seed=1), 9, params)
    out = adversary.craft(first, np.random.default_rng(0))
    victim = adversary.mimic_victim
    index = [u.client for u in first.oracle.honest].index(victim)
    assert all(np.array_equal(v, realize(first.honest[index], params.update_norm_max)) for v in out)
    later = _honest(h=21, seed=2)
    other = (index + 1) % 21
    later[other, 3] += 1.0  # another client is now the farthest out
    assert literature.mimic_target(later) == other
    adversary.craft(_view(later, 9, params), np.random.default_rng(0))
    assert adversary.mimic_victim == victim


def test_free_riders_send_the_last_change_disguised_and_apart() -> None:
    params = Params()
    honest = _honest(h=21)
    last = honest.mean(axis=0) * 0.8
    view = replace(_view(honest, 9, params), last_change=last)
    out = attacks.Adversary("free_ride", attacks.Collusion(30, 9)).craft(
        view, np.random.default_rng(0)
    )
    spread = adaptive.honest_spread(honest)
    expected = attacks.adversary.FREE_RIDE_NOISE * spread
    for v in out:  # the last change plus noise of the chosen share of the honest spread
        assert abs(float(np.linalg.norm(v - last)) - expected) < 0.25 * expected
    closest = min(float(np.linalg.norm(a - b)) for i, a in enumerate(out) for b in out[i + 1 :])
    assert closest > 0.5 * expected  # no two riders are near-copies of each other


def test_fixed_free_riders_keep_their_disguise_across_rounds() -> None:
    params = Params()
    adversary = attacks.Adversary("free_ride_fixed", attacks.Collusion(30, 9))
    disguises = []
    for seed in (1, 2):  # two rounds: other honest updates, another last change
        honest = _honest(h=21, seed=seed)
        last = honest.mean(axis=0) * 0.8
        view = replace(_view(honest, 9, params), last_change=last)
        out = adversary.craft(view, np.random.default_rng(seed))
        expected = attacks.adversary.FREE_RIDE_NOISE * adaptive.honest_spread(honest)
        for v in out:  # the last change plus a disguise of the chosen share of the spread
            assert abs(float(np.linalg.norm(v - last)) - expected) < 0.01 * expected
        disguises.append([adaptive.unit(v - last) for v in out])
    for before, after in zip(*disguises, strict=True):
        assert float(before @ after) > 0.99  # each rider kept its direction
    first = disguises[0]  # and no two riders share one
    assert max(abs(float(a @ b)) for i, a in enumerate(first) for b in first[i + 1 :]) < 0.5


def test_on_off_copiers_copy_only_while_no_copy_would_reach_the_slashing_bound() -> None:
    params = Params()
    view = _view(_honest(h=21), 3, params)
    adversary = attacks.Adversary("copy_on_off", attacks.Collusion(24, 3))
    rng = np.random.default_rng(0)
    copies = adversary.craft(replace(view, evidence=(0, 700, 0)), rng)
    assert all(np.array_equal(c, copies[0]) for c in copies)  # one vector from every key
    # 740 + 0.06 * (1000 - 740) reaches 750: the colluders send their own updates instead
    own = adversary.craft(replace(view, evidence=(0, 740, 0)), rng)
    for sent, trained in zip(own, view.own, strict=True):
        assert np.array_equal(sent, realize(trained, params.update_norm_max))


SMALL = EvalConfig(clients=10, rounds=2, attacker_fraction=0.3)
UNFLAGGED = ("adaptive_unflagged", "backdoor_slow", "drift")


@pytest.mark.parametrize("attack", attacks.COORDINATED)
def test_every_coordinated_attack_is_admitted_by_check_tx(attack: str) -> None:
    result = run(SMALL, "centered_clip", attack)
    assert result.attackers == 3
    assert result.refused_attackers == 0
    if attack in UNFLAGGED:  # the oracle saw exactly what finalize_block aggregated
        assert result.flagged_attackers == 0


def test_on_off_copiers_read_their_evidence_from_the_chain_and_are_never_slashed() -> None:
    """40 rounds: the same vector sent every round gets copiers slashed (2 of 3 here); sent only
    while the chain's evidence allows, it gets none slashed."""
    always = run(replace(SMALL, rounds=40), DEFAULT_RULE, "min_max_uv")
    assert always.slashed_attackers >= 1
    on_off = run(replace(SMALL, rounds=40), DEFAULT_RULE, "copy_on_off")
    assert on_off.slashed_attackers == 0
    assert on_off.flagged_attackers > 3 * 10  # they did copy


@pytest.mark.parametrize("attack", ["adaptive_unflagged", "drift"])
def test_unflagged_attacks_stay_unflagged_by_a_rule_that_carries_history(attack: str) -> None:
    """history_clip judges with the chain's history: the oracle must be given it too."""
    # (with the rule run without its history, 20 clients x 8 rounds flag 36-48 attacker updates)
    result = run(replace(SMALL, clients=20, rounds=8), "history_clip", attack)
    assert result.refused_attackers == 0
    assert result.flagged_attackers == 0


def test_realized_deltas_respect_the_chain_bounds() -> None:
    huge = np.full(50, 1e6)
    out = realize(huge, Params().update_norm_max)
    assert np.abs(out * ONE).max() <= DELTA_ABS_MAX
    assert np.linalg.norm(out) * ONE <= Params().update_norm_max


@pytest.mark.parametrize("attack", ["adaptive", "fang"])
def test_one_seed_gives_one_run(attack: str) -> None:
    a = run(SMALL, "centered_clip", attack)
    b = run(SMALL, "centered_clip", attack)
    c = run(replace(SMALL, seed=1), "centered_clip", attack)
    assert a.model_hash == b.model_hash
    assert a.model_hash != c.model_hash


def test_the_harm_objective_is_what_the_search_maximises() -> None:
    params = Params()
    view = _view(_honest(h=21), 9, params)
    u = literature.perturbation(view.honest, "uv")
    target = np.random.default_rng(3).normal(0.0, 1.0, u.size)

    def harm(agg: np.ndarray) -> float:  # an attacker that wants the model moved to `target`
        return float(np.dot(agg, target))

    best = adaptive.along(replace(view, harm=harm), u)
    assert best is not None
    assert best.value == harm(view.oracle.evaluate(best.deltas).delta)
    for g in adaptive.GRID:  # nothing on the grid does better for this attacker
        one = realize(
            view.honest.mean(axis=0) + g * adaptive.honest_spread(view.honest) * u,
            params.update_norm_max,
        )
        assert harm(view.oracle.evaluate([one] * 9).delta) <= best.value


def test_attackers_who_know_only_the_last_round_attack_differently() -> None:
    """--knowledge past (what commit-reveal leaves them): round 0 runs on their own deltas."""
    past = run(replace(SMALL, knowledge="past"), "centered_clip", "adaptive")
    current = run(SMALL, "centered_clip", "adaptive")
    assert past.refused_attackers == 0
    assert past.model_hash != current.model_hash


def test_staked_economics_runs_the_coordinated_attacks_too() -> None:
    result = run(replace(SMALL, economics="staked"), "centered_clip", "min_sum_uv")
    assert result.refused_attackers == 0  # nobody is jailed within two rounds
    assert result.slashed_honest == 0
