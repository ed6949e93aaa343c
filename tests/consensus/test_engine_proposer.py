"""The memoized proposer is the iterative weighted round-robin, whatever order rounds are asked in,
and priorities stay within a few total powers of zero (so they fit int64 with the power bounds)."""

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.app import ValidatorUpdate
from consensus.errors import ValidatorUpdateError
from consensus.types import INT64_MAX, TOTAL_POWER_MAX
from consensus.validators import Validator, ValidatorSet


def reference_proposer(vs: ValidatorSet, round_: int) -> bytes:
    """The definition, re-computed from scratch: round_+1 steps of
    A(i) += VP(i); p = argmax A (lowest index on ties); A(p) -= total."""
    priorities = [v.priority for v in vs.validators]
    chosen = 0
    for _ in range(round_ + 1):
        chosen = 0
        for i, v in enumerate(vs.validators):
            priorities[i] += v.power
            if priorities[i] > priorities[chosen]:
                chosen = i
        priorities[chosen] -= vs.total_power
    return vs.validators[chosen].public_key


def _key(i: int) -> bytes:
    return i.to_bytes(32, "big")


validator_sets = st.lists(
    st.tuples(st.integers(1, 1_000), st.integers(-3_000, 3_000)), min_size=1, max_size=12
).map(
    lambda rows: ValidatorSet(
        tuple(Validator(_key(i), power, prio) for i, (power, prio) in enumerate(rows))
    )
)


@settings(max_examples=200, deadline=None)
@given(validator_sets, st.lists(st.integers(0, 120), min_size=1, max_size=20))
def test_memoized_proposer_equals_the_iterative_definition(
    vs: ValidatorSet, rounds: list[int]
) -> None:
    fresh = ValidatorSet(vs.validators)
    for r in rounds:  # any order: forwards, backwards, repeats
        assert vs.proposer(r) == reference_proposer(fresh, r)


@settings(max_examples=100, deadline=None)
@given(validator_sets)
def test_advanced_is_the_first_step(vs: ValidatorSet) -> None:
    """The next height starts one step on: its round 0 is this height's round 1."""
    assert vs.advanced().proposer(0) == reference_proposer(vs, 1)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 7), st.integers(0, 10_000)), max_size=3),
        min_size=1,
        max_size=60,
    )
)
def test_priorities_stay_within_three_totals_across_updates_and_heights(
    history: list[list[tuple[int, int]]],
) -> None:
    vs = ValidatorSet.of([(_key(0), 5_000), (_key(1), 1)])
    for updates in history:
        # Updates removing every validator raise: the old set stays.
        with contextlib.suppress(ValidatorUpdateError):
            vs = vs.updated([ValidatorUpdate(_key(k), p) for k, p in updates])
        for _ in range(3):
            vs = vs.advanced()
        bound = 3 * vs.total_power
        assert all(abs(v.priority) <= bound for v in vs.validators)
    assert 3 * TOTAL_POWER_MAX < INT64_MAX


def test_removing_a_heavy_validator_squeezes_the_priority_spread() -> None:
    """Without the squeeze two power-1 validators kept priorities thousands apart."""
    vs = ValidatorSet.of([(_key(0), 10_000), (_key(1), 1)])
    vs = vs.updated([ValidatorUpdate(_key(2), 1)])  # a newcomer starts 1.125 totals below
    small = vs.advanced().updated([ValidatorUpdate(_key(0), 0)])
    assert all(abs(v.priority) <= 2 * small.total_power for v in small.validators)
