"""Twins (Bano et al., 2020): run two honest copies of one validator key on two network
identities, and enumerate how the network is split in each round.

With n = 4 validators and one twinned key (nodes: the validator `a`, its twin `b = 4`, and the
three others), the split of a round that can matter puts the two copies on different sides:
each of the three other nodes joins `a` or `b` (8 masks), plus "no partition" -- 9 options per
round, applied to every message of that round of height 1 (proposal, votes, relays) until the
heal, so retransmission cannot undo them; the heal comes after the last scenario round even
if every round times out.  After the
heal the network is whole (gossip may now carry old rounds' messages): the run must commit
(liveness) and never disagree (safety).

Pruning, and why it loses nothing:
- Mirror symmetry: the copies run the same code with the same key; swapping their roles maps a
  scenario to its complement-mask scenario, so only the canonical one (the first split round
  has a mask <= 3) is run.  4 rounds: 1 + (9^4 - 1) / 2 = 3281 scenarios per leader placement.
- Leaders are not free in Tendermint: the proposer of each round is fixed by the weighted
  round-robin, so over 4 rounds every key (the twinned one included) leads exactly once.  The
  leader arrangements are covered by choosing which validator is twinned (`twin_offset`): the
  full enumeration for every placement is the campaign; CI runs one placement in full and a
  seeded sample of the others.
"""

import itertools
from collections.abc import Iterator

from consensus.sim.config import RoundPartitions, SimConfig
from consensus.sim.runner import RunResult, run_seed

OPTIONS = 9  # 0: connected; 1 + mask: nodes in mask go with the twin copy


def canonical_scenarios(rounds: int) -> Iterator[tuple[int, ...]]:
    for scenario in itertools.product(range(OPTIONS), repeat=rounds):
        first_split = next((o for o in scenario if o != 0), None)
        if first_split is None or first_split - 1 <= 3:
            yield scenario


def partitions(scenario: tuple[int, ...], twin_offset: int, validators: int = 4) -> RoundPartitions:
    a, b = twin_offset % validators, validators
    others = [i for i in range(validators) if i != a]
    result: list[tuple[tuple[int, ...], ...]] = []
    for option in scenario:
        if option == 0:
            result.append((tuple(range(validators + 1)),))
            continue
        mask = option - 1
        with_b = tuple(x for bit, x in enumerate(others) if mask >> bit & 1)
        with_a = tuple(x for bit, x in enumerate(others) if not mask >> bit & 1)
        result.append(((a, *with_a), (b, *with_b)))
    return tuple(result)


def heal_ms(rounds: int) -> int:
    """Past the last scenario round even if every round times out (2000 + 1000 r ms each)."""
    return sum(2_000 + 1_000 * r for r in range(rounds)) + 1_000


def twins_config(scenario: tuple[int, ...], twin_offset: int = 0, mutant: str = "") -> SimConfig:
    return SimConfig(
        validators=4,
        twins=1,
        twin_offset=twin_offset,
        faults=False,
        duration_ms=heal_ms(len(scenario)) + 60_000,
        liveness_ms=60_000,
        stop_height=2,
        # No random loss here: gossip only has to carry old rounds across after the heal.
        gossip_interval_ms=3_000,
        round_partitions=partitions(scenario, twin_offset),
        mutant=mutant,
    )


def two_twins_config(rounds: int = 4) -> SimConfig:
    """Beyond f: validators 0 and 1 both twinned (nodes 4 and 5).  Splitting {0, 1, 2} from
    {4, 5, 3} gives each side three of the four keys, a quorum each: the checker must report
    the resulting disagreement."""
    split = ((0, 1, 2), (4, 5, 3))
    return SimConfig(
        validators=4,
        twins=2,
        faults=False,
        duration_ms=heal_ms(rounds) + 60_000,
        liveness_ms=60_000,
        stop_height=2,
        round_partitions=tuple(split for _ in range(rounds)),
    )


def run_scenario(scenario: tuple[int, ...], twin_offset: int = 0, mutant: str = "") -> RunResult:
    # The seed only jitters start times and delays; the scenario is the adversary.
    return run_seed(twins_config(scenario, twin_offset, mutant), seed=0)
