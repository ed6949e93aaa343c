"""Run the shared workload on Flower's simulation engine and write the result as JSON.

Started by scripts/bench_fl_vs_flower.py with .venv-bench/bin/python (flwr is not in the main
venv).  Usage:  flower_side.py --workload '{"clients": 30, ...}' --out result.json
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", required=True, help="Workload as a JSON object")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument(
        "--client-cpus",
        type=float,
        default=1.0,
        help="Ray CPUs per ClientApp actor (1 on a 2-core machine = 2 clients at a time)",
    )
    args = parser.parse_args()

    # Ray workers inherit the environment: let them import `bench` and the repo's packages.
    paths = [str(SCRIPTS), str(SCRIPTS.parent), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    sys.path[:0] = [str(SCRIPTS), str(SCRIPTS.parent)]
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")

    import flwr  # only importable in the benchmark venv
    from flwr.simulation import run_simulation

    from bench.flower_app import client_app, server_app
    from bench.stats import Recorder
    from bench.workload import Workload, fingerprint, prepare

    workload = Workload.from_dict(json.loads(args.workload))
    prepared = prepare(workload)
    recorder = Recorder()
    started = time.perf_counter()
    run_simulation(
        server_app=server_app(prepared, recorder),
        client_app=client_app(),
        num_supernodes=workload.clients,
        backend_config={"client_resources": {"num_cpus": args.client_cpus, "num_gpus": 0.0}},
    )
    total_s = time.perf_counter() - started
    if len(recorder.accuracy) != workload.rounds + 1:
        print(f"flower run finished {len(recorder.accuracy) - 1} of {workload.rounds} rounds")
        return 1
    result = {
        "side": "flower",
        "flwr_version": getattr(flwr, "__version__", "unknown"),
        "python": platform.python_version(),
        "workload": workload.as_dict(),
        "fingerprint": fingerprint(prepared),
        "trainer": prepared.trainer_settings(),
        "client_cpus": args.client_cpus,
        "wall_s": total_s,
        **recorder.as_dict(),
    }
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
