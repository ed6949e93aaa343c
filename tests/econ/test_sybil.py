"""Sybil resistance: admission costs a bond (or a governance registry), and a bond bounds the
aggregation weight and the reward linearly, so splitting one stake over many keys buys nothing.

Through FLApp with signed updates: every split of one honest client's stake over attacker keys
(each key claiming the largest sample count a transaction may carry) weighs at most what the
honest client weighs with that stake on one key."""

from dataclasses import replace

import numpy as np
import pytest

from consensus.app import BlockInfo
from consensus.crypto import PrivateKey
from fl.app import FLApp
from fl.economics.genesis import Allocation, EconGenesis
from fl.economics.params import EconParams
from fl.fixed import FRAC_BITS, SAMPLES_MAX
from fl.params import Params
from fl.txs import KIND_SUBMIT_UPDATE, SubmitUpdate, sign_tx

from .helpers import small_fl_app

CHAIN = "sybil-test"
VALIDATOR = PrivateKey.from_label("sybil-val")
HONEST = PrivateKey.from_label("sybil-honest")
STAKE = 1_000
PARAMS = replace(
    Params(),
    rule="fedavg",
    updates_per_round=64,
    round_deadline_ms=1_000,
    update_norm_max=64 << FRAC_BITS,
    sample_weight_max=SAMPLES_MAX,
)
ECON = EconParams(client_stake_min=100, bond_per_weight=1)


def chain(split: list[int], econ: EconParams = ECON) -> tuple[FLApp, list[PrivateKey]]:
    sybils = [PrivateKey.from_label(f"sybil-{i}") for i in range(len(split))]
    allocations = [Allocation(HONEST.public_key, 0, STAKE)]
    allocations += [Allocation(k.public_key, 0, s) for k, s in zip(sybils, split, strict=True)]
    genesis = EconGenesis(allocations=tuple(allocations), reserve=1_000_000, params=econ)
    app = small_fl_app(CHAIN, VALIDATOR.public_key, PARAMS, genesis)
    return app, sybils


def update(app: FLApp, key: PrivateKey, samples: int) -> bytes:
    # Independent zero-mean directions: no key's update is a near-copy of another's.
    rng = np.random.default_rng(list(key.public_key[:8]))
    values = rng.integers(-(1 << FRAC_BITS), 1 << FRAC_BITS, size=15, dtype=np.int64)
    delta = values.astype("<i4").tobytes()
    body = SubmitUpdate(0, app.state.model.hash, samples, FRAC_BITS, 32, 15, delta).encode()
    return sign_tx(key, CHAIN, KIND_SUBMIT_UPDATE, 0, body).to_wire()


def weights_after_one_round(app: FLApp, keys: list[PrivateKey], samples: int) -> dict[bytes, int]:
    txs = [update(app, k, samples) for k in keys if app.check_tx(update(app, k, samples)).ok]
    info = BlockInfo(CHAIN, 1, 1000, VALIDATOR.public_key, b"", (), ())
    app.finalize_block(txs, info)
    app.commit()
    assert app.state.round == 1
    # The records hold the samples each update was aggregated with.
    return {r.client: r.samples for r in app.state.records.values()}


SPLITS = [[1000], [500, 500], [100] * 10, [250, 250, 500], [101, 333, 566], [199] * 5]


@pytest.mark.parametrize("split", SPLITS)
def test_splitting_one_stake_over_keys_never_adds_weight(split: list[int]) -> None:
    assert sum(split) <= STAKE
    app, sybils = chain(split)
    weights = weights_after_one_round(app, [HONEST, *sybils], SAMPLES_MAX)
    honest = weights[HONEST.public_key]
    assert honest == STAKE  # its claimed samples are capped by its bond
    assert sum(weights[k.public_key] for k in sybils) <= honest


def test_keys_below_the_minimum_bond_are_refused() -> None:
    app, sybils = chain([50] * 20)
    weights = weights_after_one_round(app, [HONEST, *sybils], SAMPLES_MAX)
    assert set(weights) == {HONEST.public_key}


def test_a_fresh_unfunded_key_cannot_submit() -> None:
    app, _ = chain([])
    stranger = PrivateKey.from_label("stranger")
    check = app.check_tx(update(app, stranger, 10))
    assert not check.ok
    assert "below the client minimum" in check.reason


def test_an_honest_claim_below_its_bond_keeps_its_samples() -> None:
    app, _ = chain([])
    assert weights_after_one_round(app, [HONEST], 37) == {HONEST.public_key: 37}


def test_without_a_bound_a_split_multiplies_weight() -> None:
    """The property above fails when the bound is off: this is what bond_per_weight buys."""
    app, sybils = chain([100] * 10, replace(ECON, bond_per_weight=0))
    weights = weights_after_one_round(app, [HONEST, *sybils], 1000)
    assert sum(weights[k.public_key] for k in sybils) == 10 * weights[HONEST.public_key]


def test_rewards_are_linear_in_bond_so_a_split_earns_no_more() -> None:
    one, _ = chain([])
    weights_after_one_round(one, [HONEST], SAMPLES_MAX)
    split, sybils = chain([500, 500])
    weights_after_one_round(split, [HONEST, *sybils], SAMPLES_MAX)
    econ = split.state.incentives.econ
    honest_reward = econ.clients[HONEST.public_key].rewarded
    sybil_reward = sum(econ.clients[k.public_key].rewarded for k in sybils)
    assert honest_reward > 0
    assert sybil_reward <= honest_reward


def test_registry_mode_refuses_bonded_but_unadmitted_keys() -> None:
    app, _ = chain([], replace(ECON, client_registry=1))
    check = app.check_tx(update(app, HONEST, 10))
    assert not check.ok
    assert "registry" in check.reason
