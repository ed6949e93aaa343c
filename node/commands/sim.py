"""`fedchain sim`: run the consensus engine in the seeded simulator and check every run.

Each seed is one run: N validators (plus twins) on virtual time with the seed's faults and
adversaries; the checker's violations are printed with the seed, and `--seed S` replays that
run exactly.  Exit status 1 if any run violated a property.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace

from consensus.engine.config import MUTANT_DESCRIPTIONS
from consensus.errors import InvariantError
from consensus.sim.config import BEHAVIOURS, SimConfig
from consensus.sim.runner import RunResult, run_seed
from consensus.sim.shapes import campaign_config, hunt_config

HELP = "run seeded consensus simulations (faults, byzantine nodes, Twins) and check them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--validators", type=int, default=4, help="validators (default 4)")
    parser.add_argument(
        "--powers",
        type=_powers,
        default=(),
        metavar="P1,P2,...",
        help="voting power of each validator at genesis (default: all 1)",
    )
    parser.add_argument(
        "--validator-changes",
        action="store_true",
        help="change powers and remove/re-add validators through the app (effective at H+2)",
    )
    parser.add_argument("--seeds", type=int, default=100, help="runs, seeds first..first+S-1")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, help="replay exactly this one seed")
    parser.add_argument(
        "--byzantine",
        type=int,
        default=0,
        metavar="K",
        help=f"K byzantine validators; behaviours rotate per seed over {', '.join(BEHAVIOURS)}",
    )
    parser.add_argument(
        "--twins",
        type=int,
        nargs="?",
        const=1,
        default=0,
        metavar="K",
        help="K validators (default 1) run a twin copy on another network identity",
    )
    parser.add_argument(
        "--mutant", choices=list(MUTANT_DESCRIPTIONS), metavar="NAME", help="break a rule"
    )
    parser.add_argument(
        "--list-mutants", action="store_true", help="print each mutant and what it breaks"
    )
    parser.add_argument(
        "--crash-points",
        action="store_true",
        help="also kill nodes at WAL append, fsync and store boundaries",
    )
    parser.add_argument(
        "--stall-rounds",
        type=int,
        default=0,
        metavar="R",
        help="one height loses its proposals for R rounds before the heal (long heights)",
    )
    parser.add_argument(
        "--isolate-deciders",
        action="store_true",
        help="before the heal, cut off the first node to decide a height for a while",
    )
    parser.add_argument(
        "--no-block-sync", action="store_true", help="catch up through consensus gossip only"
    )
    parser.add_argument(
        "--after-heal-delay-ms",
        type=int,
        default=20,
        metavar="MS",
        help="message delays after the heal reach up to MS (default 20)",
    )
    parser.add_argument("--duration-ms", type=int, default=300_000, help="virtual run length")
    parser.add_argument(
        "--liveness-ms", type=int, default=60_000, help="heal this long before the end"
    )
    parser.add_argument("--no-faults", action="store_true", help="a clean network")
    shapes = parser.add_mutually_exclusive_group()
    shapes.add_argument(
        "--campaign",
        action="store_true",
        help="each seed runs its scripts/sim_campaign.py shape (n, adversary, faults; the "
        "other shape options are ignored), e.g. --campaign --seed 9112",
    )
    shapes.add_argument(
        "--hunt",
        choices=list(MUTANT_DESCRIPTIONS),
        metavar="NAME",
        help="each seed runs the shape that exposes mutant NAME (the other shape options are "
        "ignored); add --mutant NAME to break the rule, leave it out for the correct engine",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _powers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected comma-separated integers") from None


def behaviours_for(seed: int, count: int) -> tuple[str, ...]:
    return tuple(BEHAVIOURS[(seed + i) % len(BEHAVIOURS)] for i in range(count))


def config_for(args: argparse.Namespace, seed: int) -> SimConfig:
    if args.campaign:
        return replace(campaign_config(seed), mutant=args.mutant or "")
    if args.hunt:
        return replace(hunt_config(args.hunt, seed), mutant=args.mutant or "")
    return SimConfig(
        validators=args.validators,
        byzantine=behaviours_for(seed, args.byzantine),
        twins=args.twins,
        duration_ms=args.duration_ms,
        liveness_ms=min(args.liveness_ms, args.duration_ms - 1),
        faults=not args.no_faults,
        mutant=args.mutant or "",
        powers=args.powers,
        validator_changes=args.validator_changes,
        crash_points=args.crash_points,
        stall_rounds=args.stall_rounds,
        after_heal_delay_ms_max=args.after_heal_delay_ms,
        isolate_deciders=args.isolate_deciders,
        block_sync=not args.no_block_sync,
    )


def run(args: argparse.Namespace) -> int:
    if args.list_mutants:
        for name, description in MUTANT_DESCRIPTIONS.items():
            print(f"{name}  {description}")
        return 0
    if args.validators < 1 or args.seeds < 1 or args.byzantine + args.twins > args.validators:
        print(
            "sim: need validators >= 1, seeds >= 1, byzantine + twins <= validators",
            file=sys.stderr,
        )
        return 2
    seeds: Sequence[int] = (
        [args.seed]
        if args.seed is not None
        else range(args.first_seed, args.first_seed + args.seeds)
    )
    try:
        config_for(args, seeds[0])
    except InvariantError as exc:
        print(exc, file=sys.stderr)
        return 2
    results: list[RunResult] = []
    for seed in seeds:
        result = run_seed(config_for(args, seed), seed)
        results.append(result)
        if result.violations and not args.json:
            for v in result.violations:
                print(f"seed {seed}: {v}")
            print(f"  replay: fedchain sim {_replay_flags(args)} --seed {seed}")
    failed = [r.seed for r in results if r.violations]
    heights = [r.heights_committed for r in results]
    if args.json:
        print(
            json.dumps(
                {
                    "seeds": len(results),
                    "validators": args.validators,
                    "byzantine": args.byzantine,
                    "twins": args.twins,
                    "mutant": args.mutant or "",
                    "powers": list(args.powers),
                    "crash_points": args.crash_points,
                    "duration_ms": args.duration_ms,
                    "violations": sum(len(r.violations) for r in results),
                    "failed_seeds": failed,
                    "violation_kinds": sorted({v.kind for r in results for v in r.violations}),
                    "heights_committed": sum(heights),
                    "heights_committed_min": min(heights),
                    "rounds_max": max(r.rounds_max for r in results),
                    "evidence_committed": sum(r.evidence_committed for r in results),
                }
            )
        )
    else:
        print(
            f"sim: {len(results)} seeds, {len(failed)} with violations"
            f"{' (' + ', '.join(map(str, failed[:10])) + ')' if failed else ''}, "
            f"heights committed {sum(heights)} (min per run {min(heights)}), "
            f"max round {max(r.rounds_max for r in results)}"
        )
    return 1 if failed else 0


def _replay_flags(args: argparse.Namespace) -> str:
    mutant = [f"--mutant {args.mutant}"] if args.mutant else []
    if args.campaign:
        return " ".join(["--campaign", *mutant])
    if args.hunt:
        return " ".join([f"--hunt {args.hunt}", *mutant])
    flags = [f"--validators {args.validators}", f"--duration-ms {args.duration_ms}"]
    if args.byzantine:
        flags.append(f"--byzantine {args.byzantine}")
    if args.twins:
        flags.append(f"--twins {args.twins}")
    if args.mutant:
        flags.append(f"--mutant {args.mutant}")
    if args.no_faults:
        flags.append("--no-faults")
    if args.powers:
        flags.append("--powers " + ",".join(map(str, args.powers)))
    if args.validator_changes:
        flags.append("--validator-changes")
    if args.crash_points:
        flags.append("--crash-points")
    if args.stall_rounds:
        flags.append(f"--stall-rounds {args.stall_rounds}")
    if args.isolate_deciders:
        flags.append("--isolate-deciders")
    if args.no_block_sync:
        flags.append("--no-block-sync")
    if args.after_heal_delay_ms != 20:
        flags.append(f"--after-heal-delay-ms {args.after_heal_delay_ms}")
    if args.liveness_ms != 60_000:
        flags.append(f"--liveness-ms {args.liveness_ms}")
    return " ".join(flags)
