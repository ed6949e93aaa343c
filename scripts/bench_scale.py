"""FL at scale: 1,000 clients per round with a 100k-parameter model.

    .venv/bin/python scripts/bench_scale.py                     # both modes below
    .venv/bin/python scripts/bench_scale.py --mode testnet --clients 1000
    .venv/bin/python scripts/bench_scale.py --mode in-process --rule centered_clip

- testnet: 4 validators (`fedchain start` processes) on loopback; 1,000 signed int16 updates of
  a 784-126-10 MLP (100,180 parameters, ~200 KB each) POSTed over RPC; time from the last
  update's acceptance to the new model being served by every validator, and each validator's
  peak RSS.  Target: under 5 s.
- in-process: the node's FL application object alone, driven block by block as a validator
  drives it (no network, no consensus): the application's share of the figure above.

Results go to --out as JSON.  `--work-dir` keeps the node homes (~1.6 GB of WAL and block
files per 1,000-update run): delete them between runs, or dozens of runs fill the page cache
and slow the next ones (4.3-4.9 s became 4.8-5.9 s after ~30 runs, docs/benchmarks.md).
"""

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

from bench import machine  # noqa: E402 - scripts/ is not a package
from bench import rows as doc_rows  # noqa: E402
from bench.chain import BenchError  # noqa: E402
from bench.scale_inprocess import ScaleSpec, run_inprocess  # noqa: E402
from bench.scale_testnet import ScaleTestnetRun  # noqa: E402

TARGET_S = 5.0
MIB = 2**20


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("both", "testnet", "in-process"), default="both")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rule", default="fedavg")
    parser.add_argument("--bits", type=int, default=16, choices=(8, 16, 32))
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "scale.json")
    parser.add_argument("--commit-timeout-ms", type=int, default=10)
    parser.add_argument("--work-dir", type=Path, help="keep node homes and logs here")
    args = parser.parse_args()
    spec = ScaleSpec(clients=args.clients, rule=args.rule, bits=args.bits)

    report: dict[str, Any] = {"machine": machine.describe()}
    report["machine"]["background_busy_before"] = machine.background_busy()
    if args.mode in ("both", "in-process"):
        print(f"== in-process FL app: {spec.clients} updates x {spec.parameters} parameters")
        r = run_inprocess(spec)
        report["in_process"] = r
        print(
            f"   last block (incl. round close) {r['last_block_s']:.3f} s, all "
            f"{r['blocks']} blocks {r['all_blocks_s']:.3f} s, {spec.rule} alone "
            f"{r['aggregate_only_s']:.3f} s, check_tx median {1e3 * r['check_tx']['median_s']:.2f}"
            f" ms, peak RSS {r['peak_rss_bytes'] / MIB:.0f} MiB"
        )
    if args.mode in ("both", "testnet"):
        print(f"== testnet: 4 validators, {spec.clients} updates x {spec.parameters} parameters")
        with tempfile.TemporaryDirectory(prefix="fedchain-scale-") as tmp:
            root = args.work_dir or Path(tmp)
            run = ScaleTestnetRun(spec, root, commit_timeout_ms=args.commit_timeout_ms)
            try:
                t = asyncio.run(run.run())
            except BenchError as exc:
                # A stalled chain is a result too: record it (with the logs' verdict) and go on.
                t = {"clients": spec.clients, "parameters": spec.parameters, "error": str(exc)}
        report["testnet"] = t
    if "error" in report.get("testnet", {}):
        print(f"   testnet run failed: {report['testnet']['error']}")
    elif "testnet" in report:
        t = report["testnet"]
        verdict = "meets" if t["last_submit_to_model_everywhere_s"] < TARGET_S else "misses"
        print(
            f"   submit {t['submit_s']:.2f} s; last submission -> model on every validator "
            f"{t['last_submit_to_model_everywhere_s']:.2f} s ({verdict} the {TARGET_S} s target);"
            f" peak RSS per validator "
            f"{', '.join(f'{b / MIB:.0f}' for b in t['validator_peak_rss_bytes'])} MiB"
        )
    report["load_average_after"] = machine.load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print("rows for docs/benchmarks.md:")
    command = ".venv/bin/python scripts/bench_scale.py " + " ".join(sys.argv[1:])
    print("\n".join(doc_rows.scale(report, command.strip())))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
