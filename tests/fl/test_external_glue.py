"""The glue between outside attack libraries and `fedchain eval` (fl/client/attacks/external.py),
with plain numpy callables standing in for the library (ByzFL's conventions: honest rows in, one
vector out; an optimiser calls `agg` on the honest rows followed by f identical attacker rows)."""

from dataclasses import replace

import numpy as np
import pytest

from consensus.crypto import PrivateKey
from fl.aggregate import ClientUpdate
from fl.client import attacks, simulation
from fl.client.attacks import adversary
from fl.client.attacks.external import ChainRule, crafter, optimising_crafter, sendable
from fl.client.attacks.view import Oracle, RoundView, realize
from fl.client.datasets import load
from fl.client.errors import ClientError
from fl.client.simulation import EvalConfig
from fl.fixed import ONE
from fl.params import DEFAULT_RULE, Params

FloatArray = adversary.FloatArray


@pytest.fixture(autouse=True)
def empty_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adversary, "_EXTERNAL", {})


def _honest(h: int = 12, d: int = 40, seed: int = 1) -> FloatArray:
    rng = np.random.default_rng(seed)
    trend = rng.normal(0.0, 0.05, d)
    out: FloatArray = trend + rng.normal(0.0, 0.02, (h, d))
    return out


def _view(rule: str = DEFAULT_RULE, h: int = 12, m: int = 3) -> RoundView:
    params = replace(Params(), rule=rule)
    honest = np.stack([realize(v, params.update_norm_max) for v in _honest(h)])
    keys = [PrivateKey.from_label(f"glue-{i}").public_key for i in range(h + m)]
    known = tuple(
        ClientUpdate(keys[i], 10, np.round(v * ONE).astype(np.int64)) for i, v in enumerate(honest)
    )
    oracle = Oracle(params, known, tuple(keys[h:]), (10,) * m)
    return RoundView(0, honest, honest[:m].copy(), oracle, params.update_norm_max)


def _ipm(tau: float) -> adversary.Crafter:
    return crafter(lambda honest: -tau * honest.mean(axis=0))


class LineSearchIPM:
    """A stand-in for ByzFL's Optimal_InnerProductManipulation: the tau on a grid whose
    -tau * mean, sent by all f attackers, puts agg's output farthest from the honest mean."""

    GRID = (0.1, 0.3, 0.6, 1.0, 1.5, 2.5, 4.0, 8.0, 16.0, 64.0)

    def __init__(self, agg: ChainRule, f: int) -> None:
        self.agg, self.f = agg, f

    def distance(self, honest: FloatArray, tau: float) -> float:
        rows = np.vstack([honest, np.tile(-tau * honest.mean(axis=0), (self.f, 1))])
        return float(np.linalg.norm(self.agg(rows) - honest.mean(axis=0)))

    def __call__(self, honest: FloatArray) -> FloatArray:
        tau = max(self.GRID, key=lambda t: self.distance(honest, t))
        out: FloatArray = -tau * honest.mean(axis=0)
        return out


def _distance(view: RoundView, deltas: list[FloatArray]) -> float:
    return float(np.linalg.norm(view.oracle.evaluate(deltas).delta - view.honest.mean(axis=0)))


@pytest.mark.parametrize("rule", [DEFAULT_RULE, "fedavg", "median"])
def test_the_rule_adapter_returns_what_the_oracle_returns(rule: str) -> None:
    view = _view(rule)
    attacker = -2.0 * view.honest.mean(axis=0) + 0.013  # not on the quantization grid
    rows = np.vstack([view.honest, np.tile(attacker, (3, 1))])
    expected = view.oracle.evaluate([realize(attacker, view.norm_max_units)] * 3).delta
    np.testing.assert_array_equal(ChainRule(view)(rows), expected)


def test_the_rule_adapter_aggregates_the_attacker_rows_it_is_given() -> None:
    view = _view("fedavg")
    rule = ChainRule(view)
    mu = view.honest.mean(axis=0)
    mild = rule(np.vstack([view.honest, np.tile(-0.5 * mu, (3, 1))]))
    harsh = rule(np.vstack([view.honest, np.tile(-8.0 * mu, (3, 1))]))
    # FedAvg of 12 honest + 3 attackers at -tau * mu is mu * (12 - 3 tau) / 15 (equal samples)
    np.testing.assert_allclose(mild, mu * (12 - 1.5) / 15, atol=1e-4)
    np.testing.assert_allclose(harsh, mu * (12 - 24) / 15, atol=1e-4)
    assert rule.calls == 2


def test_the_rule_adapter_refuses_a_wrong_number_of_rows() -> None:
    view = _view()
    with pytest.raises(ClientError, match="expected 12 honest \\+ 3"):
        ChainRule(view)(np.vstack([view.honest, view.honest[:2]]))


def test_a_search_through_our_rule_finds_a_worse_aggregate_than_the_fixed_factor() -> None:
    # centered_clip: the default rule gives identical attacker rows weight 0 whatever their size
    # (they are near-copies), so no factor moves it and there would be nothing to search for.
    view = _view("centered_clip")
    rng = np.random.default_rng(0)
    fixed = _distance(view, _ipm(2.0)(view, rng))  # ByzFL's default IPM factor
    searched_deltas = optimising_crafter(LineSearchIPM)(view, rng)
    searched = _distance(view, [realize(v, view.norm_max_units) for v in searched_deltas])
    assert searched > 1.5 * fixed


def test_the_optimiser_is_built_each_round_around_that_rounds_rule_and_attacker_count() -> None:
    built: list[tuple[RoundView, int]] = []

    def factory(agg: ChainRule, f: int) -> LineSearchIPM:
        built.append((agg.view, f))
        return LineSearchIPM(agg, f)

    craft = optimising_crafter(factory)
    first, second = _view(m=3), _view(m=5)
    assert len(craft(first, np.random.default_rng(0))) == 3
    assert len(craft(second, np.random.default_rng(0))) == 5
    assert built == [(first, 3), (second, 5)]


def test_every_attacker_sends_the_one_vector_the_outside_attack_returns() -> None:
    view = _view(m=4)
    seen: list[FloatArray] = []

    def attack(honest: FloatArray) -> list[float]:  # a library may return a list or a tensor
        seen.append(honest)
        return list(honest[0] - honest[1])

    deltas = crafter(attack)(view, np.random.default_rng(0))
    np.testing.assert_array_equal(seen[0], view.honest)
    assert len(deltas) == 4
    for v in deltas:
        np.testing.assert_array_equal(v, view.honest[0] - view.honest[1])


def test_camouflaged_attackers_differ_by_noise_at_the_honest_spread() -> None:
    view = _view(h=12, m=4)
    one = -2.0 * view.honest.mean(axis=0)
    deltas = crafter(lambda honest: -2.0 * honest.mean(axis=0), camouflage=True)(
        view, np.random.default_rng(0)
    )
    noise = np.stack(deltas) - one
    assert len({v.tobytes() for v in deltas}) == 4
    spread = view.honest.std(axis=0)
    ratio = float(np.mean(noise.std(axis=0) / spread))
    assert 0.5 < ratio < 1.5


def test_a_camouflaged_optimiser_searches_with_the_noise_it_will_send() -> None:
    built: list[ChainRule] = []

    def factory(agg: ChainRule, f: int) -> LineSearchIPM:
        built.append(agg)
        return LineSearchIPM(agg, f)

    view = _view(m=3)
    deltas = optimising_crafter(factory, camouflage=True)(view, np.random.default_rng(0))
    rule = built[0]
    assert rule.camouflage is not None
    sent_noise = np.stack(deltas) - deltas[0] + rule.camouflage[0]
    np.testing.assert_allclose(sent_noise, rule.camouflage, atol=1e-12)
    # what the search scored for the vector it chose is what the chain makes of what is sent
    chosen = deltas[0] - rule.camouflage[0]
    rows = np.vstack([view.honest, np.tile(chosen, (3, 1))])
    realized = [realize(v, view.norm_max_units) for v in deltas]
    np.testing.assert_array_equal(rule(rows), view.oracle.evaluate(realized).delta)


def test_an_outside_attack_returning_a_wrong_shape_is_an_error() -> None:
    view = _view()
    with pytest.raises(ClientError, match="expected one vector"):
        crafter(lambda honest: honest)(view, np.random.default_rng(0))
    with pytest.raises(ClientError, match="3 values for 40"):
        crafter(lambda honest: honest[0, :3])(view, np.random.default_rng(0))


def test_infinity_is_sent_as_the_largest_coordinate_a_client_may_send() -> None:
    v = np.array([np.inf, np.inf, -np.inf, np.nan, 0.5])
    out = realize(sendable(v), 1024 * ONE)
    np.testing.assert_array_equal(out, [16.0, 16.0, -16.0, 0.0, 0.5])
    # ... and the norm bound still applies to a vector of them
    long = realize(sendable(np.full(10_000, np.inf)), 1024 * ONE)
    assert np.all(long == long[0])
    assert long[0] > 0
    assert 1000.0 < float(np.linalg.norm(long)) <= 1024.0


def test_reseeding_from_the_run_rng_makes_a_global_random_attack_reproducible() -> None:
    view = _view()

    def draw(honest: FloatArray) -> FloatArray:
        out: FloatArray = np.random.normal(0.0, 1.0, honest.shape[1])  # global, as ByzFL draws
        return out

    craft = crafter(draw, reseed=np.random.seed)
    a = craft(view, np.random.default_rng(7))[0]
    np.random.seed(12345)  # whatever the global state was
    b = craft(view, np.random.default_rng(7))[0]
    c = craft(view, np.random.default_rng(8))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def infinities(honest: FloatArray) -> FloatArray:
    """+inf where the honest mean is negative, -inf where it is not."""
    out: FloatArray = np.where(honest.mean(axis=0) < 0, np.inf, -np.inf)
    return out


def test_an_infinite_outside_attack_runs_through_the_app_and_wrecks_fedavg() -> None:
    # (ByzFL's own Inf is +inf everywhere: on a softmax model that shifts every class's logit
    # alike, which changes no prediction, so it could not show the vector reaching the model.)
    attacks.register_external("outside_inf", crafter(infinities))
    ds = load("digits", 0)
    config = EvalConfig(clients=10, rounds=2)
    outside = simulation.run(config, "fedavg", "outside_inf", ds)
    clean = simulation.run(config, "fedavg", "none", ds)
    assert outside.accuracy < clean.accuracy - 0.3
