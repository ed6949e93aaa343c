"""`fedchain start --home DIR`: run a node until SIGTERM/SIGINT (logs to stdout)."""

import argparse
import faulthandler
import os
import signal
import sys
from pathlib import Path

from node.allocator import keep_large_buffers_in_heap
from node.config import load_config
from node.errors import ConfigError
from node.genesis import read_genesis_file
from node.home import Home
from node.logging import configure

HELP = "run a node (p2p, consensus, FL app, RPC, metrics) until SIGTERM/SIGINT"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, required=True, help="node home directory")
    parser.add_argument(
        "--log-format", choices=("auto", "json", "text"), help="override log.format"
    )


def run(args: argparse.Namespace) -> int:
    home = Home(args.home)
    try:
        cfg = load_config(home.config_file)
        genesis = read_genesis_file(home.genesis_file)
    except ConfigError as exc:
        print(f"fedchain start: {exc}", file=sys.stderr)
        return 1
    configure(cfg.log.level, args.log_format or cfg.log.format)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: the way to see where a node
    # that does not stop on SIGTERM is stuck (LocalNet.stop sends it before SIGKILL).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    keep_large_buffers_in_heap()
    from node.service import run_node

    profile_path = os.environ.get("FEDCHAIN_PROFILE")
    if profile_path:  # for benchmarks: cProfile the whole node, stats written at exit
        import cProfile

        profiler = cProfile.Profile()
        try:
            return profiler.runcall(run_node, home, cfg, genesis)
        finally:
            profiler.dump_stats(profile_path.replace("{pid}", str(os.getpid())))
    return run_node(home, cfg, genesis)
