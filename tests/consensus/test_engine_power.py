"""Voting power bounds: POWER_MAX per validator, TOTAL_POWER_MAX (int64max / 8, as CometBFT) in
all, so sums and priorities fit int64.  A genesis breaking them is a configuration error
(GenesisError); validator updates from the app breaking them are the app's broken invariant
(ValidatorUpdateError, an InvariantError).  Each error names the validator and the bound."""

import pytest

from consensus.app import Genesis, GenesisValidator, ValidatorUpdate
from consensus.codec import decode, encode
from consensus.engine import ChainState
from consensus.errors import GenesisError, InvariantError, ValidatorUpdateError
from consensus.types import INT64_MAX, POWER_MAX, TOTAL_POWER_MAX, Commit
from consensus.validators import ValidatorSet
from tests.consensus.harness import CHAIN, make_block, proposer


def _key(i: int) -> bytes:
    return i.to_bytes(32, "big")


def _genesis(powers: list[int]) -> Genesis:
    return Genesis("power", tuple(GenesisValidator(_key(i + 1), p) for i, p in enumerate(powers)))


def test_the_bounds_leave_int64_headroom() -> None:
    assert TOTAL_POWER_MAX == INT64_MAX // 8
    assert POWER_MAX <= TOTAL_POWER_MAX


def test_genesis_whose_total_overflows_int64_is_refused() -> None:
    """Regression: 9,000 validators at POWER_MAX (total > int64max) were accepted, although the
    comments promised sums far inside int64; the state could not even be stored."""
    with pytest.raises(GenesisError) as err:
        ChainState.from_genesis(_genesis([POWER_MAX] * 9_000), b"")
    assert "TOTAL_POWER_MAX" in str(err.value)
    assert _key(1025).hex()[:16] in str(err.value)  # the first validator past the bound


def test_genesis_at_exactly_the_total_bound_starts_and_is_stored() -> None:
    powers = [POWER_MAX] * 1_023 + [TOTAL_POWER_MAX - 1_023 * POWER_MAX]
    chain = ChainState.from_genesis(_genesis(powers), b"")
    assert chain.validators.total_power == TOTAL_POWER_MAX
    assert ChainState.decode(chain.encode()) == chain  # msgpack: every integer fits int64
    advanced = chain.validators.advanced().advanced()
    assert all(abs(v.priority) <= TOTAL_POWER_MAX for v in advanced.validators)
    assert ValidatorSet.from_value(decode(encode(advanced.to_value()))) == advanced


BAD_GENESIS = [
    ("power zero", [10, 0], "power 0"),
    ("power above POWER_MAX", [10, POWER_MAX + 1], "POWER_MAX"),
    ("no validators", [], "at least one validator"),
]


@pytest.mark.parametrize(
    ("what", "powers", "says"), BAD_GENESIS, ids=[w for w, _, _ in BAD_GENESIS]
)
def test_bad_genesis_powers_are_a_config_error_naming_the_bound(
    what: str, powers: list[int], says: str
) -> None:
    with pytest.raises(GenesisError) as err:
        ChainState.from_genesis(_genesis(powers), b"")
    assert says in str(err.value), what
    assert not isinstance(err.value, InvariantError)


def test_genesis_with_a_validator_twice_is_a_config_error() -> None:
    genesis = Genesis("power", (GenesisValidator(_key(1), 1), GenesisValidator(_key(1), 2)))
    with pytest.raises(GenesisError, match="twice"):
        ChainState.from_genesis(genesis, b"")


def test_init_chain_overrides_beyond_the_bound_are_the_apps_broken_invariant() -> None:
    overrides = (ValidatorUpdate(_key(1), POWER_MAX + 1),)
    with pytest.raises(ValidatorUpdateError, match=_key(1).hex()[:16]):
        ChainState.from_genesis(_genesis([10]), b"", overrides)


def _after_height_1(updates: tuple[ValidatorUpdate, ...]) -> ChainState:
    block = make_block(proposer(0))
    return CHAIN.after_block(block, Commit(1, 0, block.id(), ()), b"h", updates)


def test_an_update_pushing_the_total_past_the_bound_raises_naming_the_validator() -> None:
    updates = tuple(ValidatorUpdate(_key(100 + i), POWER_MAX) for i in range(1_024))
    with pytest.raises(ValidatorUpdateError) as err:
        _after_height_1(updates)
    assert "TOTAL_POWER_MAX" in str(err.value)
    assert isinstance(err.value, InvariantError)


def test_an_update_above_power_max_raises_naming_the_validator() -> None:
    with pytest.raises(ValidatorUpdateError) as err:
        _after_height_1((ValidatorUpdate(_key(7), POWER_MAX + 1),))
    assert _key(7).hex()[:16] in str(err.value)
    assert "POWER_MAX" in str(err.value)


def test_an_update_within_the_bounds_is_applied() -> None:
    chain = _after_height_1((ValidatorUpdate(_key(7), POWER_MAX),))
    assert chain.next_validators.power_of(_key(7)) == POWER_MAX
