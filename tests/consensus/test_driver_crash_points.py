"""Crash points in the simulator: honest nodes die at WAL appends, syncs, rotations, store writes
and background-store completions (torn tails included) and come back through the driver's real
recovery; the checker's properties hold all the same.  The campaign (scripts/sim_campaign.py,
`fedchain sim --crash-points`) runs many more seeds."""

from consensus.sim.config import SimConfig
from consensus.sim.runner import Simulation

SEEDS = range(4)


def test_runs_with_crash_points_keep_every_property_and_hit_every_boundary() -> None:
    kinds: dict[str, int] = {}
    for seed in SEEDS:
        config = SimConfig(duration_ms=120_000, liveness_ms=40_000, crash_points=True)
        sim = Simulation(config, seed)
        result = sim.run()
        assert result.violations == [], f"seed {seed}: {result.violations}"
        assert result.heights_committed > 10, f"seed {seed}"
        for node in sim.nodes:
            for kind, count in node.crashed_at.items():
                kinds[kind] = kinds.get(kind, 0) + count
    assert {"wal_append", "wal_sync", "store_write", "store_background"} <= set(kinds), kinds


def test_a_seed_with_crash_points_replays_exactly() -> None:
    config = SimConfig(duration_ms=60_000, liveness_ms=20_000, crash_points=True)
    first, second = Simulation(config, 7), Simulation(config, 7)
    a, b = first.run(), second.run()
    assert (a.heights_committed, a.events) == (b.heights_committed, b.events)
    assert [n.crashed_at for n in first.nodes] == [n.crashed_at for n in second.nodes]
    assert any(n.crashed_at for n in first.nodes)
