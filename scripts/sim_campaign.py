"""The long simulator campaign: 10,000+ seeded runs plus the full 4-round Twins enumeration.

Seeds rotate through cluster shapes so one campaign covers them all:
    seed % 10 in 0-3: 4 validators, one byzantine (equivocate, double_vote, silent, amnesia)
    seed % 10 in 4-5: 4 validators, honest, faults only
    seed % 10 == 6:   4 validators + 1 twin
    seed % 10 == 7:   7 validators, two byzantine (rotating)
    seed % 10 == 8:   7 validators + 1 twin and one byzantine
    seed % 10 == 9:   4 validators, honest (faults only)
Every run has the seed's random faults (drops, duplicates, delays, partitions, crashes, lossy
rounds).  Then every canonical 4-round Twins scenario for each of the 4 leader placements.
Failures print the seed (replay: `fedchain sim ... --seed S`).  Writes a JSON summary.

    .venv/bin/python scripts/sim_campaign.py --seeds 10000 --duration-ms 60000 \
        --out docs/sim_campaign.json [--jobs 2] [--no-twins]
"""

import argparse
import json
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.sim.config import BEHAVIOURS, SimConfig
from consensus.sim.runner import run_seed
from consensus.sim.twins import canonical_scenarios, run_scenario


def config_for(seed: int, duration_ms: int) -> SimConfig:
    kind = seed % 10
    b = BEHAVIOURS
    common = {"duration_ms": duration_ms, "liveness_ms": min(60_000, duration_ms // 2)}
    if kind <= 3:
        return SimConfig(validators=4, byzantine=(b[kind],), **common)  # type: ignore[arg-type]
    if kind <= 5:
        return SimConfig(validators=4, **common)  # type: ignore[arg-type]
    if kind == 6:
        return SimConfig(validators=4, twins=1, **common)  # type: ignore[arg-type]
    if kind == 7:
        pair = (b[seed // 10 % 4], b[(seed // 10 + 1) % 4])
        return SimConfig(validators=7, byzantine=pair, **common)  # type: ignore[arg-type]
    if kind == 8:
        return SimConfig(validators=7, twins=1, byzantine=(b[seed // 10 % 4],), **common)  # type: ignore[arg-type]
    return SimConfig(validators=4, **common)  # type: ignore[arg-type]


def one_seed(args: tuple[int, int]) -> tuple[int, str, int, int, int, list[str]]:
    seed, duration_ms = args
    config = config_for(seed, duration_ms)
    r = run_seed(config, seed)
    shape = f"n={config.validators} byz={','.join(config.byzantine) or '-'} twins={config.twins}"
    return (
        seed,
        shape,
        r.heights_committed,
        r.rounds_max,
        r.evidence_committed,
        [str(v) for v in r.violations],
    )


def one_scenario(args: tuple[tuple[int, ...], int]) -> tuple[tuple[int, ...], int, list[str]]:
    scenario, offset = args
    return scenario, offset, [str(v) for v in run_scenario(scenario, offset).violations]


def main() -> int:
    parser = argparse.ArgumentParser(description="long consensus simulator campaign")
    parser.add_argument("--seeds", type=int, default=10_000)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--duration-ms", type=int, default=60_000)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--no-twins", action="store_true")
    parser.add_argument("--twins-rounds", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    started = time.perf_counter()
    failures: list[str] = []
    shapes: Counter[str] = Counter()
    heights = 0
    rounds_max = 0
    evidence = 0
    work = [(s, args.duration_ms) for s in range(args.first_seed, args.first_seed + args.seeds)]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for i, (seed, shape, h, rmax, ev, violations) in enumerate(
            pool.map(one_seed, work, chunksize=20)
        ):
            shapes[shape] += 1
            heights += h
            rounds_max = max(rounds_max, rmax)
            evidence += ev
            if violations:
                failures.append(f"seed {seed} ({shape}): {'; '.join(violations)}")
                print(failures[-1], flush=True)
            if (i + 1) % 1000 == 0:
                print(f"... {i + 1} seeds, {len(failures)} failures", flush=True)
        seeds_s = time.perf_counter() - started
        twins_failures: list[str] = []
        scenarios = 0
        if not args.no_twins:
            jobs = [(s, o) for o in range(4) for s in canonical_scenarios(args.twins_rounds)]
            for scenario, offset, violations in pool.map(one_scenario, jobs, chunksize=50):
                scenarios += 1
                if violations:
                    twins_failures.append(f"twin of {offset}, {scenario}: {'; '.join(violations)}")
                    print(twins_failures[-1], flush=True)
    summary = {
        "seeds": args.seeds,
        "first_seed": args.first_seed,
        "duration_ms": args.duration_ms,
        "violations": len(failures),
        "failed": failures[:50],
        "heights_committed": heights,
        "rounds_max": rounds_max,
        "evidence_committed": evidence,
        "shapes": dict(sorted(shapes.items())),
        "seeds_wall_s": round(seeds_s, 1),
        "twins_rounds": args.twins_rounds,
        "twins_scenarios": scenarios,
        "twins_violations": len(twins_failures),
        "twins_failed": twins_failures[:50],
        "wall_s": round(time.perf_counter() - started, 1),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    print(
        f"campaign: {args.seeds} seeds x {args.duration_ms} ms, {len(failures)} with violations, "
        f"{heights} heights; twins: {scenarios} scenarios, {len(twins_failures)} with violations; "
        f"{summary['wall_s']} s"
    )
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    return 1 if failures or twins_failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
