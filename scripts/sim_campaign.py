"""The long simulator campaign: seeded runs over every cluster shape, the mutant hunts, and
the full 4-round Twins enumeration.

Seeds rotate through consensus/sim/shapes.py's campaign shapes (n in {4, 7, 10}, unequal
powers, validator changes through the app, every byzantine behaviour incl. the lock_breaker
coalition, twins, crash points at WAL/store boundaries, a 12-round height, 1.5 s messages after
the heal, a synchronous run with silent validators); each run has the seed's random faults.
With the correct engine every run must show 0 violations.  Then every mutant is hunted with
its shape (seeds 0..--mutant-seeds-1) until the property it must break reports it: the table
says which property caught it and after how many seeds.  Failures print the seed
(replay: `fedchain sim ... --seed S`, or `campaign_config(S)` in Python).

    .venv/bin/python scripts/sim_campaign.py --seeds 10000 --jobs 2 \
        --out docs/sim_campaign.json [--no-twins] [--no-mutants]
"""

import argparse
import json
import resource
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.engine.config import MUTANT_DESCRIPTIONS
from consensus.sim.checker import SAFETY
from consensus.sim.config import SimConfig
from consensus.sim.runner import run_seed
from consensus.sim.shapes import HUNTS, campaign_config, hunt_config
from consensus.sim.twins import canonical_scenarios, run_scenario


def shape_name(config: SimConfig) -> str:
    parts = [f"n={config.validators}", f"byz={','.join(config.byzantine) or '-'}"]
    if config.twins:
        parts.append(f"twins={config.twins}")
    if config.powers:
        parts.append("powers")
    if config.validator_changes:
        parts.append("valchanges")
    if config.crash_points:
        parts.append("crashpoints")
    if config.stall_rounds:
        parts.append(f"stall={config.stall_rounds}")
    if config.after_heal_delay_ms_max > 20:
        parts.append(f"gst_delay={config.after_heal_delay_ms_max}")
    if config.isolate_deciders:
        parts.append("isolate")
    if not config.faults:
        parts.append("nofaults")
    return " ".join(parts)


def one_seed(args: tuple[int, int]) -> tuple[int, str, int, int, int, list[str]]:
    seed, duration_ms = args
    config = campaign_config(seed, duration_ms)
    r = run_seed(config, seed)
    violations = [str(v) for v in r.violations]
    return (
        seed,
        shape_name(config),
        r.heights_committed,
        r.rounds_max,
        r.evidence_committed,
        violations,
    )


def hunt(args: tuple[str, int]) -> dict[str, object]:
    """Run `mutant`'s shape seed by seed until its expected property (for a safety mutant:
    any safety property) fires; report the first seed of every property seen on the way."""
    mutant, seeds_max = args
    expected = HUNTS[mutant][1]
    wanted = set(SAFETY) if expected in SAFETY else {expected}
    first: dict[str, int] = {}
    seeds = 0
    for seed in range(seeds_max):
        seeds += 1
        result = run_seed(hunt_config(mutant, seed), seed)
        for v in result.violations:
            first.setdefault(v.kind, seed)
        if wanted & set(first):
            break
    caught = sorted(wanted & set(first), key=lambda k: first[k])
    return {
        "mutant": mutant,
        "description": MUTANT_DESCRIPTIONS[mutant],
        "shape": HUNTS[mutant][0],
        "expected": expected,
        "caught_by": caught[0] if caught else None,
        "seeds_needed": first[caught[0]] + 1 if caught else None,
        "seeds_run": seeds,
        "first_seed_by_property": dict(sorted(first.items())),
    }


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
    parser.add_argument("--no-mutants", action="store_true")
    parser.add_argument("--mutant-seeds", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    started = time.perf_counter()
    failures: list[str] = []
    shapes: Counter[str] = Counter()
    heights = 0
    rounds_max = (0, -1)
    evidence = 0
    mutants: list[dict[str, object]] = []
    twins_failures: list[str] = []
    scenarios = 0
    work = [(s, args.duration_ms) for s in range(args.first_seed, args.first_seed + args.seeds)]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for i, (seed, shape, h, rmax, ev, violations) in enumerate(
            pool.map(one_seed, work, chunksize=8)
        ):
            shapes[shape] += 1
            heights += h
            rounds_max = max(rounds_max, (rmax, seed))
            evidence += ev
            if violations:
                failures.append(f"seed {seed} ({shape}): {'; '.join(violations[:3])}")
                print(failures[-1], flush=True)
            if (i + 1) % 500 == 0:
                print(f"... {i + 1} seeds, {len(failures)} failures", flush=True)
        seeds_s = time.perf_counter() - started
        if not args.no_mutants:
            jobs = [(m, args.mutant_seeds) for m in MUTANT_DESCRIPTIONS]
            for row in pool.map(hunt, jobs):
                mutants.append(row)
                print(
                    f"mutant {row['mutant']}: caught by {row['caught_by']} "
                    f"after {row['seeds_needed']} seeds ({row['first_seed_by_property']})",
                    flush=True,
                )
        if not args.no_twins:
            jobs2 = [(s, o) for o in range(4) for s in canonical_scenarios(args.twins_rounds)]
            for scenario, offset, violations in pool.map(one_scenario, jobs2, chunksize=50):
                scenarios += 1
                if violations:
                    twins_failures.append(f"twin of {offset}, {scenario}: {'; '.join(violations)}")
                    print(twins_failures[-1], flush=True)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = {
        "seeds": args.seeds,
        "first_seed": args.first_seed,
        "duration_ms": args.duration_ms,
        "violations": len(failures),
        "failed": failures[:50],
        "heights_committed": heights,
        "rounds_max": rounds_max[0],
        "rounds_max_seed": rounds_max[1],
        "evidence_committed": evidence,
        "shapes": dict(sorted(shapes.items())),
        "seeds_wall_s": round(seeds_s, 1),
        "mutants": mutants,
        "mutants_not_caught": [m["mutant"] for m in mutants if m["caught_by"] is None],
        "twins_rounds": args.twins_rounds if not args.no_twins else 0,
        "twins_scenarios": scenarios,
        "twins_violations": len(twins_failures),
        "twins_failed": twins_failures[:50],
        "jobs": args.jobs,
        "wall_s": round(time.perf_counter() - started, 1),
        "cpu_s": round(children.ru_utime + children.ru_stime, 1),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    print(
        f"campaign: {args.seeds} seeds, {len(failures)} with violations, {heights} heights, "
        f"max round {rounds_max[0]} (seed {rounds_max[1]}); mutants not caught: "
        f"{summary['mutants_not_caught']}; twins: {scenarios} scenarios, "
        f"{len(twins_failures)} with violations; {summary['wall_s']} s"
    )
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    bad = failures or twins_failures or summary["mutants_not_caught"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
