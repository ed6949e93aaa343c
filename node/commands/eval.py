"""`fedchain eval`: which aggregation rule to vote for, measured through the real application.

Runs R rounds with N clients (a share of them colluding attackers) for every chosen rule and
attack, each run through check_tx / prepare / process / finalize_block of the FL app with no
network, and prints the final accuracy of the chain's model as a table (rules x attacks) with
the mean and worst over the attacks; `--json` prints the same data as JSON.
"""

import argparse
import json
import sys
from dataclasses import asdict, dataclass, replace

from fl.client import attacks, simulation
from fl.client.datasets import load
from fl.client.errors import ClientError
from fl.client.simulation import EvalConfig, EvalResult
from fl.errors import FLError
from fl.params import DEFAULT_RULE, RULES, spec_of

HELP = "measure aggregation rules against attacks (accuracy table, rules x attacks)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules", default=DEFAULT_RULE, help=f"comma list or 'all' ({RULES})")
    parser.add_argument("--attacks", default="all", help=f"comma list or 'all' ({attacks.ATTACKS})")
    parser.add_argument("--fraction", type=float, default=0.3, help="attacker share of clients")
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet non-IID alpha")
    parser.add_argument("--dataset", default="digits", help="digits, breast_cancer, x.csv, x.npz")
    parser.add_argument("--trainer", default="softmax", help="softmax, mlp or torch")
    parser.add_argument("--seeds", default="0", help="comma list of seeds; results are averaged")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a governable parameter, e.g. --set clip_drop_permille=2000",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _choices(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    chosen = list(allowed) if text == "all" else [t.strip() for t in text.split(",") if t.strip()]
    unknown = [c for c in chosen if c not in allowed]
    if unknown or not chosen:
        raise ClientError(f"unknown {what}: {', '.join(unknown) or '(none)'}; one of {allowed}")
    return chosen


def _overrides(items: list[str]) -> tuple[tuple[str, int | str], ...]:
    out: list[tuple[str, int | str]] = []
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep:
            raise ClientError(f"--set {item!r}: expected NAME=VALUE")
        value: int | str = raw if spec_of(name).choices else int(raw)
        out.append((name, value))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Cell:
    accuracy: float  # mean over seeds
    backdoor_success: float
    flagged_attackers: int
    flagged_honest: int
    model_hashes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Row:
    rule: str
    cells: dict[str, Cell]
    mean_under_attack: float | None
    worst_under_attack: float | None


def run_table(
    config: EvalConfig, rules: list[str], attack_names: list[str], seeds: list[int]
) -> list[Row]:
    datasets = {seed: load(config.dataset, seed) for seed in seeds}
    rows: list[Row] = []
    for rule in rules:
        cells: dict[str, Cell] = {}
        for attack in attack_names:
            results: list[EvalResult] = [
                simulation.run(replace(config, seed=seed), rule, attack, datasets[seed])
                for seed in seeds
            ]
            cells[attack] = Cell(
                accuracy=sum(r.accuracy for r in results) / len(results),
                backdoor_success=sum(r.backdoor_success for r in results) / len(results),
                flagged_attackers=sum(r.flagged_attackers for r in results),
                flagged_honest=sum(r.flagged_honest for r in results),
                model_hashes=tuple(r.model_hash for r in results),
            )
            print(f"  {rule:14s} {attack:14s} {cells[attack].accuracy:.4f}", file=sys.stderr)
        under_attack = [cells[a].accuracy for a in attack_names if a != "none"]
        rows.append(
            Row(
                rule,
                cells,
                sum(under_attack) / len(under_attack) if under_attack else None,
                min(under_attack) if under_attack else None,
            )
        )
    return rows


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def format_table(rows: list[Row], attack_names: list[str]) -> str:
    header = ["rule", *attack_names, "mean", "worst"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        values = [_pct(row.cells[a].accuracy) for a in attack_names]
        values += [_pct(row.mean_under_attack), _pct(row.worst_under_attack)]
        lines.append("| " + " | ".join([row.rule, *values]) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        rules = _choices(args.rules, RULES, "rule")
        attack_names = _choices(args.attacks, attacks.ATTACKS, "attack")
        seeds = [int(s) for s in args.seeds.split(",")]
        config = EvalConfig(
            dataset=args.dataset,
            trainer=args.trainer,
            clients=args.clients,
            rounds=args.rounds,
            alpha=args.alpha,
            attacker_fraction=args.fraction,
            overrides=_overrides(args.set),
        )
        rows = run_table(config, rules, attack_names, seeds)
    except (FLError, ValueError) as exc:
        print(f"fedchain eval: {exc}", file=sys.stderr)
        return 2
    if args.json:
        document = {"config": asdict(config), "seeds": seeds, "rows": [asdict(r) for r in rows]}
        print(json.dumps(document, indent=2))
    else:
        print(format_table(rows, attack_names))
        print(
            f"\naccuracy % of the chain's model on the held-out split: {config.dataset}, "
            f"{config.trainer}, {config.clients} clients ({config.attackers} attackers under "
            f"attack), Dirichlet alpha {config.alpha}, {config.rounds} rounds, seeds {seeds}"
        )
        for row in rows:
            if "backdoor" in row.cells:
                bd = _pct(row.cells["backdoor"].backdoor_success)
                print(f"backdoor success under {row.rule}: {bd}% of triggered test inputs")
    return 0
