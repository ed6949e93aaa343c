"""`fedchain eval`: which aggregation rule to vote for, measured through the real application.

Runs R rounds with N clients (a share of them colluding attackers) for every chosen rule and
attack, each run through check_tx / prepare / process / finalize_block of the FL app with no
network, and prints the final accuracy of the chain's model as a table (rules x attacks) with
the mean and worst over the attacks; `--json` prints the same data as JSON.

Besides accuracy it reports, per attack: backdoor success (for the backdoor attacks), fairness
(worst class, and the worst honest client on its own label mix) and what the economics layer
slashed (honest clients slashed, precision and recall against the attackers).  `--jobs` runs
the (rule, attack, seed) cells in that many processes; the figures do not depend on it.
"""

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace

from fl.client import attacks, simulation
from fl.client.datasets import load
from fl.client.errors import ClientError
from fl.client.simulation import EvalConfig, EvalResult
from fl.economics.params import is_econ_param
from fl.errors import FLError
from fl.params import DEFAULT_RULE, RULES, spec_of

HELP = "measure aggregation rules against attacks (accuracy table, rules x attacks)"
FRACTION_MAX = 0.45
GROUPS = {
    "all": attacks.EVAL_ATTACKS,
    "basic": attacks.ATTACKS,
    "coordinated": ("none", *attacks.COORDINATED),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules", default=DEFAULT_RULE, help=f"comma list or 'all' ({RULES})")
    parser.add_argument(
        "--attacks",
        default="all",
        help=f"comma list, 'all', 'basic' or 'coordinated' ({', '.join(attacks.EVAL_ATTACKS)})",
    )
    parser.add_argument(
        "--fraction", type=float, default=0.3, help=f"attacker share of clients, <= {FRACTION_MAX}"
    )
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet non-IID alpha")
    parser.add_argument("--dataset", default="digits", help="digits, breast_cancer, x.csv, x.npz")
    parser.add_argument(
        "--trainer",
        default="auto",
        help="softmax, mlp, mlp_wide, cnn or torch; auto: cnn for mnist1d, softmax otherwise",
    )
    parser.add_argument("--seeds", default="0", help="comma list of seeds; results are averaged")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a governable parameter, e.g. --set clip_drop_permille=2000",
    )
    parser.add_argument(
        "--knowledge",
        default="current",
        choices=KNOWLEDGE_CHOICES,
        help="honest updates coordinated attackers see: this round's, only the last round's "
        "(as commit-reveal leaves them), the last round's and then this round's to choose "
        "which of their commitments to reveal (withhold), or the worse for the model of this "
        "round's and the last round's, per attack (worst: coordinated attacks run twice)",
    )
    parser.add_argument(
        "--economics",
        default="open",
        choices=simulation.ECONOMICS,
        help="open: no stake, slashes only reported; staked: clients bond, jailed ones sit out",
    )
    parser.add_argument(
        "--objective",
        default="class_loss",
        choices=simulation.OBJECTIVES,
        help="what the adaptive attacks maximise: progress taken back, or on their own data "
        "cross-entropy, 0-1 error or the worst class's cross-entropy (strongest: class_loss)",
    )
    parser.add_argument(
        "--committee",
        type=int,
        default=0,
        metavar="N",
        help="N validators score every update on held-out data (eval_scores); rounds settle on "
        "the stake-weighted median of their scores (0: on-chain agreement score)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="processes to run cells in")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _choices(
    text: str, allowed: tuple[str, ...], what: str, groups: dict[str, tuple[str, ...]] | None = None
) -> list[str]:
    named = groups or {"all": allowed}
    if text in named:
        return list(named[text])
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [c for c in chosen if c not in allowed]
    if unknown or not chosen:
        raise ClientError(f"unknown {what}: {', '.join(unknown) or '(none)'}; one of {allowed}")
    return chosen


def _trainer(name: str, dataset: str) -> str:
    if name != "auto":
        return name
    return "cnn" if dataset == "mnist1d" else "softmax"


def _overrides(items: list[str]) -> tuple[tuple[str, int | str], ...]:
    out: list[tuple[str, int | str]] = []
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep:
            raise ClientError(f"--set {item!r}: expected NAME=VALUE")
        value: int | str = raw if not is_econ_param(name) and spec_of(name).choices else int(raw)
        out.append((name, value))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Cell:
    accuracy: float  # mean over seeds
    backdoor_success: float
    flagged_attackers: int
    flagged_honest: int
    model_hashes: tuple[str, ...]
    worst_class_accuracy: float = 0.0  # means over seeds
    worst_client_accuracy: float = 0.0
    slashed_honest: int = 0  # summed over seeds (distinct clients per run)
    slashed_attackers: int = 0
    slash_precision: float = 1.0  # means over seeds
    slash_recall: float = 1.0
    refused_attackers: int = 0
    withheld_attackers: int = 0
    worst_seed_accuracy: float = 0.0
    reward_honest: float = 0.0  # tokens per client over the run, means over seeds
    reward_attackers: float = 0.0
    reward_honest_least: float = 0.0  # the least-paid honest client's tokens, mean over seeds
    knowledge: str = ""  # what the attackers knew in this cell, under --knowledge worst


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _cell(results: list[EvalResult]) -> Cell:
    return Cell(
        accuracy=_mean([r.accuracy for r in results]),
        backdoor_success=_mean([r.backdoor_success for r in results]),
        flagged_attackers=sum(r.flagged_attackers for r in results),
        flagged_honest=sum(r.flagged_honest for r in results),
        model_hashes=tuple(r.model_hash for r in results),
        worst_class_accuracy=_mean([r.worst_class_accuracy for r in results]),
        worst_client_accuracy=_mean([r.worst_client_accuracy for r in results]),
        slashed_honest=sum(r.slashed_honest for r in results),
        slashed_attackers=sum(r.slashed_attackers for r in results),
        slash_precision=_mean([r.slash_precision for r in results]),
        slash_recall=_mean([r.slash_recall for r in results]),
        refused_attackers=sum(r.refused_attackers for r in results),
        withheld_attackers=sum(r.withheld_attackers for r in results),
        worst_seed_accuracy=min(r.accuracy for r in results),
        reward_honest=_mean([r.reward_honest for r in results]),
        reward_attackers=_mean([r.reward_attackers for r in results]),
        reward_honest_least=_mean([r.reward_honest_least for r in results]),
    )


# `--knowledge worst`: coordinated attacks run with this round's and with the last round's
# updates, and the table keeps the worse for the model.  An attacker who sees the round can play
# either, and on breast_cancer the last round served ours better (docs/robustness.md, "Withheld
# reveals"), so the worst case is the lower figure.
WORST = "worst"
KNOWLEDGE_CHOICES = (*simulation.KNOWLEDGE, WORST)


def _knowledge_of(config: EvalConfig, attack: str) -> tuple[str, ...]:
    if config.knowledge != WORST:
        return (config.knowledge,)
    return ("current", "past") if attacks.is_coordinated(attack) else ("current",)


def _run_cell(job: tuple[EvalConfig, str, str]) -> EvalResult:
    config, rule, attack = job
    return simulation.run(config, rule, attack, load(config.dataset, config.seed))


@dataclass(frozen=True, slots=True)
class Row:
    rule: str
    cells: dict[str, Cell]
    mean_under_attack: float | None
    worst_under_attack: float | None


def run_table(
    config: EvalConfig,
    rules: list[str],
    attack_names: list[str],
    seeds: list[int],
    jobs: int = 1,
) -> list[Row]:
    work = [
        (replace(config, seed=seed, knowledge=knowledge), rule, attack)
        for rule in rules
        for attack in attack_names
        for knowledge in _knowledge_of(config, attack)
        for seed in seeds
    ]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            done = list(pool.map(_run_cell, work))
    else:
        datasets = {seed: load(config.dataset, seed) for seed in seeds}
        done = [simulation.run(c, rule, a, datasets[c.seed]) for c, rule, a in work]
    by_cell: dict[tuple[str, str, str], list[EvalResult]] = {}
    for (cell_config, rule, attack), result in zip(work, done, strict=True):
        by_cell.setdefault((rule, attack, cell_config.knowledge), []).append(result)
    rows: list[Row] = []
    for rule in rules:
        cells: dict[str, Cell] = {}
        for attack in attack_names:
            variants = [
                replace(_cell(by_cell[(rule, attack, k)]), knowledge=k)
                for k in _knowledge_of(config, attack)
            ]
            cells[attack] = min(variants, key=lambda c: c.accuracy)  # the first on a tie
            print(f"  {rule:14s} {attack:18s} {cells[attack].accuracy:.4f}", file=sys.stderr)
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


def format_reports(rows: list[Row], attack_names: list[str]) -> str:
    """Backdoor success, fairness and slashing quality, one table per rule."""
    out: list[str] = []
    for row in rows:
        backdoors = [a for a in attack_names if a in attacks.BACKDOORS]
        if backdoors:
            shown = ", ".join(f"{a} {_pct(row.cells[a].backdoor_success)}%" for a in backdoors)
            out.append(f"backdoor success under {row.rule}: {shown} of triggered test inputs")
        out.append(f"\n{row.rule}: fairness and slashing per attack")
        out.append(
            "| attack | accuracy | worst seed | worst class | worst honest client "
            "| honest slashed | attackers slashed | precision | recall | flagged (att/hon) "
            "| reward per client (att/hon) | least-paid honest client |"
        )
        out.append("|" + " --- |" * 12)
        for a in attack_names:
            c = row.cells[a]
            out.append(
                f"| {a} | {_pct(c.accuracy)} | {_pct(c.worst_seed_accuracy)} "
                f"| {_pct(c.worst_class_accuracy)} | {_pct(c.worst_client_accuracy)} "
                f"| {c.slashed_honest} | {c.slashed_attackers} | {c.slash_precision:.2f} "
                f"| {c.slash_recall:.2f} | {c.flagged_attackers} / {c.flagged_honest} "
                f"| {c.reward_attackers:.0f} / {c.reward_honest:.0f} "
                f"| {c.reward_honest_least:.0f} |"
            )
        past = [a for a in attack_names if row.cells[a].knowledge == "past"]
        if past:
            out.append(
                f"worse with the last round's updates than with this round's: {', '.join(past)}"
            )
        withheld = [f"{a} {row.cells[a].withheld_attackers}" for a in attack_names]
        if any(row.cells[a].withheld_attackers for a in attack_names):
            out.append(f"attacker updates withheld (summed over seeds): {', '.join(withheld)}")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    try:
        rules = _choices(args.rules, RULES, "rule")
        attack_names = _choices(args.attacks, attacks.eval_attacks(), "attack", GROUPS)
        seeds = [int(s) for s in args.seeds.split(",")]
        if not 0.0 <= args.fraction <= FRACTION_MAX:
            raise ClientError(f"--fraction must be in [0, {FRACTION_MAX}]")
        if args.jobs < 1:
            raise ClientError("--jobs must be at least 1")
        if args.committee < 0:
            raise ClientError("--committee must be >= 0")
        config = EvalConfig(
            dataset=args.dataset,
            trainer=_trainer(args.trainer, args.dataset),
            clients=args.clients,
            rounds=args.rounds,
            alpha=args.alpha,
            attacker_fraction=args.fraction,
            overrides=_overrides(args.set),
            knowledge=args.knowledge,
            economics=args.economics,
            objective=args.objective,
            committee=args.committee,
        )
        rows = run_table(config, rules, attack_names, seeds, args.jobs)
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
            f"attack), Dirichlet alpha {config.alpha}, {config.rounds} rounds, seeds {seeds}, "
            f"knowledge {config.knowledge}, economics {config.economics}\n"
        )
        print(format_reports(rows, attack_names))
    return 0
