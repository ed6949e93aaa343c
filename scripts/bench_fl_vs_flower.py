"""fedchain against Flower 1.42 on one machine: the same FL workload run both ways.

    .venv/bin/python scripts/bench_fl_vs_flower.py                  # 30 and 100 clients, 20 rounds
    .venv/bin/python scripts/bench_fl_vs_flower.py --clients 30 --rounds 5

Workload (scripts/bench/workload.py): sklearn digits, Dirichlet(0.5) partition, fl.client's
softmax-regression trainer (its local epochs, batch size and learning rate), FedAvg weighted by
sample count, identical initial weights and per-(client, round) random streams on both sides.

- Flower: its simulation engine (Ray), the trainer wrapped in a ClientApp, FedAvg ServerApp;
  runs in .venv-bench (created on first use, `pip install -e .[bench]`) as a subprocess.
- fedchain: 4 validators (`fedchain start` processes) on loopback, every client over RPC with
  signed int16 updates; the chain aggregates with the integer FedAvg rule.

Round time = from one global model being available to the next one being available (on
Flower's server; on every fedchain validator).  Round 1 includes Flower's Ray actor start-up,
so median and p95 are over rounds 2..R on both sides; round 1 is reported apart.  Accuracy is
the final global model's on the held-out split.  Results go to --out as JSON and a table is
printed; docs/benchmarks.md carries the rows.
"""

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

from bench import machine, venv  # noqa: E402 - scripts/ is not a package
from bench import rows as doc_rows  # noqa: E402
from bench.compare import TARGET_RATIO, compare, digest  # noqa: E402
from bench.fedchain_side import FedchainRun  # noqa: E402
from bench.workload import Workload, fingerprint, prepare  # noqa: E402


def run_flower(python: Path, workload: Workload, client_cpus: float, work: Path) -> dict[str, Any]:
    out = work / f"flower-{workload.clients}.json"
    log = work / f"flower-{workload.clients}.log"
    cmd = [
        str(python),
        str(SCRIPTS / "bench" / "flower_side.py"),
        "--workload",
        json.dumps(workload.as_dict()),
        "--out",
        str(out),
        "--client-cpus",
        str(client_cpus),
    ]
    with log.open("wb") as sink:
        code = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO).returncode
    if code != 0:
        raise SystemExit(f"Flower side failed (exit {code}); its log: {log}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def run_fedchain(
    workload: Workload, work: Path, poll_interval_s: float, commit_timeout_ms: int
) -> dict[str, Any]:
    prepared = prepare(workload)
    root = work / f"fedchain-{workload.clients}"
    return asyncio.run(FedchainRun(prepared, root, poll_interval_s, commit_timeout_ms).run())


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'clients':>7} {'side':>9} {'round1 s':>9} {'median s':>9} {'p95 s':>8} {'accuracy':>9}"
    )
    print(head)
    for row in rows:
        n, cmp = row["clients"], row["comparison"]
        for side in ("flower", "fedchain"):
            d = cmp[side]
            print(
                f"{n:>7} {side:>9} {d['round1_s']:>9.3f} {d['warm']['median_s']:>9.3f} "
                f"{d['warm']['p95_s']:>8.3f} {100 * d['accuracy']:>8.2f}%"
            )
        print(
            f"{n:>7} {'ratio':>9} {'':>9} {cmp['median_ratio']:>8.2f}x {cmp['p95_ratio']:>7.2f}x "
            f"{cmp['accuracy_points']:>+8.2f}pt   (target <= {TARGET_RATIO}x, +-1pt)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[30, 100])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trainer", default="softmax")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "fl_vs_flower.json")
    parser.add_argument("--bench-venv", type=Path, default=REPO / ".venv-bench")
    parser.add_argument("--client-cpus", type=float, default=1.0, help="Ray CPUs per ClientApp")
    parser.add_argument(
        "--poll-interval-s",
        type=float,
        default=0.0,
        help="0: learn round closes from WebSocket events; > 0: poll /query/round this often",
    )
    parser.add_argument(
        "--commit-timeout-ms",
        type=int,
        default=10,
        help="validators' pause after a commit (node default 10; `fedchain testnet` writes 200)",
    )
    parser.add_argument("--only", choices=("flower", "fedchain"), help="run one side only")
    parser.add_argument("--work-dir", type=Path, help="keep node homes and logs here")
    args = parser.parse_args()

    python = venv.ensure(args.bench_venv) if args.only != "fedchain" else Path()
    before = machine.describe()
    before["background_busy_before"] = machine.background_busy()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fedchain-bench-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for clients in args.clients:
            workload = Workload(
                trainer=args.trainer,
                clients=clients,
                rounds=args.rounds,
                alpha=args.alpha,
                seed=args.seed,
            )
            expected = fingerprint(prepare(workload))
            row: dict[str, Any] = {"clients": clients, "workload": workload.as_dict()}
            if args.only != "fedchain":
                print(f"== Flower, {clients} clients, {args.rounds} rounds", flush=True)
                row["flower"] = run_flower(python, workload, args.client_cpus, work)
            if args.only != "flower":
                print(f"== fedchain, {clients} clients, {args.rounds} rounds", flush=True)
                row["fedchain"] = run_fedchain(
                    workload, work, args.poll_interval_s, args.commit_timeout_ms
                )
            for side in ("flower", "fedchain"):
                if side in row and row[side]["fingerprint"] != expected:
                    raise SystemExit(f"{side} ran a different workload: fingerprint mismatch")
            if "flower" in row and "fedchain" in row:
                row["comparison"] = compare(row["flower"], row["fedchain"])
            else:
                side = "flower" if "flower" in row else "fedchain"
                row["digest"] = digest(row[side])
                print(json.dumps(row["digest"], indent=1))
            rows.append(row)
    after = machine.describe()
    report = {"machine": before, "load_average_after": after["load_average_1_5_15"], "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    full = [r for r in rows if "comparison" in r]
    if full:
        print_table(full)
        print("rows for docs/benchmarks.md:")
        command = ".venv/bin/python scripts/bench_fl_vs_flower.py " + " ".join(sys.argv[1:])
        print("\n".join(doc_rows.fl_vs_flower(report, command.strip())))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
