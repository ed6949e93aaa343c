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
        --out docs/sim_campaign.json [--no-twins] [--no-mutants] [--only-mutant NAME]

Only the mutant hunts and the Twins enumeration, without campaign seeds (docs/sim_mutants.json):

    .venv/bin/python scripts/sim_campaign.py --seeds 0 --jobs 2 --out docs/sim_mutants.json
"""

import argparse
import json
import resource
import sys
import time
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

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


def control(args: tuple[str, list[int]]) -> tuple[str, int, list[str]]:
    """`mutant`'s hunt shape with the correct engine: it must show no violation (else the hunt
    proves nothing about the mutant)."""
    mutant, seeds = args
    failures = []
    for seed in seeds:
        result = run_seed(replace(hunt_config(mutant, seed), mutant=""), seed)
        if result.violations:
            failures.append(f"seed {seed}: {'; '.join(map(str, result.violations[:3]))}")
    return mutant, len(seeds), failures


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
    parser.add_argument(
        "--only-mutant",
        action="append",
        choices=list(MUTANT_DESCRIPTIONS),
        help="hunt only this mutant (repeatable; default: every mutant)",
    )
    parser.add_argument(
        "--control-seeds",
        type=int,
        default=0,
        help="also run each hunted mutant's shape with the correct engine over this many seeds",
    )
    parser.add_argument(
        "--control-mutant",
        action="append",
        choices=list(MUTANT_DESCRIPTIONS),
        help="run --control-seeds only for this mutant's shape (repeatable; default: every one)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    started = time.perf_counter()
    state = Campaign(args)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        # Hunts first (few, some long), then the seeds in chunks; results as they come, and the
        # summary rewritten every PARTIAL_EVERY seeds so an interrupted campaign still reports.
        hunts = (
            []
            if args.no_mutants
            else [
                pool.submit(hunt, (m, args.mutant_seeds))
                for m in (args.only_mutant or MUTANT_DESCRIPTIONS)
            ]
        )
        hunted = [] if args.no_mutants else (args.only_mutant or list(MUTANT_DESCRIPTIONS))
        if args.control_mutant:
            hunted = [m for m in hunted if m in args.control_mutant]
        controls = [
            pool.submit(control, (m, list(range(i, min(i + CHUNK, args.control_seeds)))))
            for m in hunted
            for i in range(0, args.control_seeds, CHUNK)
        ]
        control_rows: set[Future[tuple[str, int, list[str]]]] = set(controls)
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        chunks = [
            pool.submit(seed_chunk, (list(seeds[i : i + CHUNK]), args.duration_ms))
            for i in range(0, len(seeds), CHUNK)
        ]
        hunt_rows: set[Future[dict[str, object]]] = set(hunts)
        pending: list[Future[Any]] = [*hunts, *controls, *chunks]
        for future in as_completed(pending):
            if future in control_rows:
                state.add_control(*future.result())
                continue
            if future in hunt_rows:
                row = future.result()
                state.mutants.append(row)
                print(
                    f"mutant {row['mutant']}: caught by {row['caught_by']} after "
                    f"{row['seeds_needed']} seeds ({row['first_seed_by_property']})",
                    flush=True,
                )
                continue
            rows = future.result()
            for one in rows:
                state.add(*one)
            if state.done // PARTIAL_EVERY != (state.done - len(rows)) // PARTIAL_EVERY:
                print(f"... {state.done} seeds, {len(state.failures)} failures", flush=True)
                state.write(args, started, complete=False)
        state.seeds_s = time.perf_counter() - started
        if not args.no_twins:
            jobs2 = [(s, o) for o in range(4) for s in canonical_scenarios(args.twins_rounds)]
            for scenario, offset, violations in pool.map(one_scenario, jobs2, chunksize=50):
                state.scenarios += 1
                if violations:
                    state.twins_failures.append(
                        f"twin of {offset}, {scenario}: {'; '.join(violations)}"
                    )
                    print(state.twins_failures[-1], flush=True)
    summary = state.write(args, started, complete=True)
    print(
        f"campaign: {state.done} seeds, {len(state.failures)} with violations, {state.heights} "
        f"heights, max round {state.rounds_max[0]} (seed {state.rounds_max[1]}); mutants not "
        f"caught: {summary['mutants_not_caught']}; twins: {state.scenarios} scenarios, "
        f"{len(state.twins_failures)} with violations; hunt shapes with the correct engine: "
        f"{sum(done for done, _ in state.controls.values())} runs, "
        f"{sum(len(failed) for _, failed in state.controls.values())} with violations; "
        f"{summary['wall_s']} s"
    )
    control_failed = any(failed for _, failed in state.controls.values())
    bad = state.failures or state.twins_failures or summary["mutants_not_caught"] or control_failed
    return 1 if bad else 0


CHUNK = 10
PARTIAL_EVERY = 250


def seed_chunk(args: tuple[list[int], int]) -> list[tuple[int, str, int, int, int, list[str]]]:
    seeds, duration_ms = args
    return [one_seed((seed, duration_ms)) for seed in seeds]


class Campaign:
    def __init__(self, args: argparse.Namespace) -> None:
        self.failures: list[str] = []
        self.shapes: Counter[str] = Counter()
        self.heights = 0
        self.rounds_max = (0, -1)
        self.evidence = 0
        self.done = 0
        self.mutants: list[dict[str, object]] = []
        self.twins_failures: list[str] = []
        self.scenarios = 0
        self.seeds_s = 0.0
        # mutant -> (seeds of its hunt shape run with the correct engine, failures)
        self.controls: dict[str, tuple[int, list[str]]] = {}

    def add_control(self, mutant: str, seeds: int, failures: list[str]) -> None:
        done, failed = self.controls.get(mutant, (0, []))
        self.controls[mutant] = (done + seeds, failed + failures)
        for failure in failures:
            print(f"hunt shape of {mutant}, correct engine: {failure}", flush=True)

    def add(self, seed: int, shape: str, h: int, rmax: int, ev: int, violations: list[str]) -> None:
        self.done += 1
        self.shapes[shape] += 1
        self.heights += h
        self.rounds_max = max(self.rounds_max, (rmax, seed))
        self.evidence += ev
        if violations:
            self.failures.append(f"seed {seed} ({shape}): {'; '.join(violations[:3])}")
            print(self.failures[-1], flush=True)

    def write(self, args: argparse.Namespace, started: float, complete: bool) -> dict[str, object]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        order = list(MUTANT_DESCRIPTIONS)
        mutants = sorted(self.mutants, key=lambda m: order.index(str(m["mutant"])))
        summary: dict[str, object] = {
            "complete": complete,
            "seeds": self.done,
            "first_seed": args.first_seed,
            "duration_ms": args.duration_ms,
            "violations": len(self.failures),
            "failed": self.failures[:50],
            "heights_committed": self.heights,
            "rounds_max": self.rounds_max[0],
            "rounds_max_seed": self.rounds_max[1],
            "evidence_committed": self.evidence,
            "shapes": dict(sorted(self.shapes.items())),
            "mutants": mutants,
            "mutants_not_caught": [m["mutant"] for m in mutants if m["caught_by"] is None],
            "hunt_shapes_correct_engine": {
                m: {"seeds": done, "violations": len(failed), "failed": sorted(failed)[:20]}
                for m, (done, failed) in sorted(
                    self.controls.items(), key=lambda x: order.index(x[0])
                )
            },
            "twins_rounds": 0 if args.no_twins else args.twins_rounds,
            "twins_scenarios": self.scenarios,
            "twins_violations": len(self.twins_failures),
            "twins_failed": self.twins_failures[:50],
            "jobs": args.jobs,
            "wall_s": round(time.perf_counter() - started, 1),
            "cpu_s": round(children.ru_utime + children.ru_stime, 1),
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
        }
        if args.out:
            args.out.write_text(json.dumps(summary, indent=1) + "\n")
        return summary


if __name__ == "__main__":
    raise SystemExit(main())
