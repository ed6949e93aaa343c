#!/usr/bin/env python3
"""Benchmark: what the block body scrub costs (node/store/sqlite.py `scrub_next`).

Stores a few bodies of the given size (random bytes, no fsync) and times `scrub_next` over
them: one SELECT, one pread and one sha256 per call, the work the node does every
`storage.scrub_interval_ms`.  Bodies come from the page cache after the first pass, so this
is the CPU side; a cold disk adds its read time.

    .venv/bin/python scripts/bench_scrub.py [--body-mib 16] [--calls 40]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from node.store.sqlite import BlockStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--body-mib", type=int, default=16)
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = BlockStore(Path(tmp) / "blocks.sqlite", fsync=False)
        body = os.urandom(args.body_mib * 1024 * 1024)
        for h in range(1, 5):
            store.save_block(h, bytes([h]) * 32, body, b"c", b"r", b"a" * 32, h, [])
        height = store.scrub_next(0)  # warm the page cache and the connection
        started = time.perf_counter()
        for _ in range(args.calls):
            height = store.scrub_next(height)
        per_call_ms = (time.perf_counter() - started) * 1000 / args.calls
        store.close()
    print(f"scrub_next, {args.body_mib} MiB body, page cache: {per_call_ms:.1f} ms per call")
    print(f"at scrub_interval_ms = 2000: {per_call_ms / 2000 * 100:.1f}% of one core")


if __name__ == "__main__":
    main()
