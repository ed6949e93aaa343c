"""A seeded fault plan: link quality and the partition/crash episodes before the heal.

Probabilities are in per-mille (integers), delays in virtual milliseconds.
"""

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Partition:
    start_ms: int
    end_ms: int
    group_of: tuple[int, ...]  # node index -> group number


@dataclass(frozen=True, slots=True)
class Crash:
    node: int
    start_ms: int
    end_ms: int
    lose_tail: bool  # also drop WAL records that were written but not yet fsynced


@dataclass(frozen=True, slots=True)
class FaultPlan:
    drop_permille: int = 0
    duplicate_permille: int = 0
    delay_ms_min: int = 1
    delay_ms_max: int = 20
    slow_permille: int = 0  # messages that take up to slow_delay_ms_max (reordering)
    slow_delay_ms_max: int = 0
    partitions: tuple[Partition, ...] = ()
    crashes: tuple[Crash, ...] = ()
    # Twins-style message faults: in these heights, rounds below `lossy_rounds`, each directed
    # link drops each kind of message (proposal, prevote, precommit) with probability 1/2,
    # decided once per (height, round, kind, link), so retransmission cannot undo it.
    lossy_heights: tuple[int, ...] = ()
    lossy_rounds: int = 3
    # A long height: every proposal of rounds < stall_rounds at stall_height is lost (before
    # the heal), so each of those rounds times out and the height reaches round stall_rounds.
    stall_height: int = 0
    stall_rounds: int = 0

    # An adaptive network adversary: an honest node that decides a block before the heal is
    # cut off from every peer (consensus messages and block sync) for up to isolate_ms_max,
    # with this chance per decision: the others must finish the height without its commit.
    isolate_permille: int = 0
    isolate_ms_max: int = 0

    def stalls(self, height: int, round_: int) -> bool:
        """True if a proposal of (height, round_) is lost before the heal."""
        return height == self.stall_height and round_ < self.stall_rounds


def random_plan(
    rng: random.Random,
    nodes: int,
    crashable: list[int],
    heal_ms: int,
    stall_rounds: int = 0,
    after_heal_delay_ms_max: int = 20,
    isolate_deciders: bool = False,
) -> FaultPlan:
    """`after_heal_delay_ms_max` is kept for callers; SimConfig.after_heal_delay_ms draws the
    delays after the heal."""
    partitions = []
    for _ in range(rng.randint(0, 6)):
        start = rng.randrange(heal_ms)
        end = min(heal_ms, start + rng.randint(1_000, 40_000))
        groups = rng.randint(2, 3)
        partitions.append(Partition(start, end, tuple(rng.randrange(groups) for _ in range(nodes))))
    crashes = []
    for _ in range(rng.randint(0, 4)):
        if not crashable:
            break
        start = rng.randrange(heal_ms)
        end = min(heal_ms, start + rng.randint(100, 20_000))
        crashes.append(Crash(rng.choice(crashable), start, end, rng.random() < 0.5))
    lossy: list[int] = []
    if rng.random() < 0.5:
        lossy = sorted(rng.sample(range(1, 80), rng.randint(5, 30)))
    if stall_rounds:
        lossy = []  # lossy rounds stall without timeouts; a long height needs its timeouts
    return FaultPlan(
        drop_permille=rng.choice([0, 10, 50, 100, 200, 300]),
        duplicate_permille=rng.choice([0, 10, 50]),
        delay_ms_min=1,
        delay_ms_max=rng.choice([10, 50, 200, 800]),
        slow_permille=rng.choice([0, 10, 50]),
        slow_delay_ms_max=rng.choice([1_000, 3_000, 8_000]),
        partitions=tuple(sorted(partitions, key=lambda p: (p.start_ms, p.end_ms))),
        crashes=tuple(sorted(crashes, key=lambda c: (c.start_ms, c.node))),
        lossy_heights=tuple(lossy),
        # Drawn last (and only when asked for) so older seeds keep their plans.
        stall_height=rng.randint(2, 6) if stall_rounds else 0,
        stall_rounds=stall_rounds,
        isolate_permille=rng.choice([100, 300, 1000]) if isolate_deciders else 0,
        isolate_ms_max=rng.choice([2_000, 5_000, 15_000]) if isolate_deciders else 0,
    )


CALM = FaultPlan()
# A clean network whose adversary only isolates deciders.
ISOLATING = FaultPlan(isolate_permille=1000, isolate_ms_max=3_000)


def calm_plan(isolate_deciders: bool = False) -> FaultPlan:
    """The plan of a run without random faults."""
    return ISOLATING if isolate_deciders else CALM
