"""Cost of the incentives layer per block and per round close (a benchmark, not a test).

    .venv/bin/python scripts/bench_econ.py            # the figures in docs/benchmarks.md
    .venv/bin/python scripts/bench_econ.py --quick    # small sizes, a smoke run

1. Agreement scores (integer cosine with the coordinate median, chunked) for n clients x d
   parameters: the extra work the incentives layer adds to a round close.
2. Settling a round of n verdicts (rewards, strikes, slashes) and the block hooks around it.
3. One block's begin_block + end_block with V validators in the last commit and one
   proposal tallied: what every block pays.  Best of N wall-clock runs each.
"""

import argparse
import time
from collections.abc import Callable

import numpy as np

from consensus.app import BlockInfo, GenesisValidator, VoteInfo
from consensus.crypto import sha256
from fl.economics.clients import RoundVerdict, settle_round
from fl.economics.genesis import Allocation, EconGenesis, initial_state
from fl.economics.layer import Incentives
from fl.economics.params import EconParams
from fl.economics.scoring import agreement_permille
from fl.params import Params


def best_of(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


BLOCK_MS = 1_000  # chain time between the benchmark's blocks


def keys(n: int, tag: str) -> list[bytes]:
    return [sha256(f"{tag}{i}".encode()) for i in range(n)]


def bench_agreement(n: int, d: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    updates = [(k, rng.integers(-(1 << 16), 1 << 16, size=d, dtype=np.int32)) for k in keys(n, "c")]
    seconds = best_of(lambda: agreement_permille(updates), repeats)
    mb = n * d * 4 / 1e6
    print(f"agreement {n} x {d}: {seconds * 1000:.1f} ms ({mb / seconds:.0f} MB/s of int32 deltas)")


def chain(clients: list[bytes], validators: list[bytes]) -> Incentives:
    genesis = EconGenesis(
        allocations=tuple(Allocation(k, 10_000, 1_000) for k in clients),
        reserve=10**12,
        params=EconParams(gov_voting_period_ms=BLOCK_MS),
    )
    vals = [GenesisValidator(v, 10) for v in validators]
    return Incentives(econ=initial_state(genesis, vals, 0))


def bench_settle(n: int, repeats: int) -> None:
    clients = keys(n, "c")
    verdicts = [RoundVerdict(c, 500 + i % 400, 300 + i % 700, "") for i, c in enumerate(clients)]

    def once() -> None:
        inc = chain(clients, keys(4, "v"))
        settle_round(inc.econ, 0, verdicts)

    setup = best_of(lambda: chain(clients, keys(4, "v")), repeats)
    seconds = best_of(once, repeats) - setup
    print(f"settle_round {n} verdicts: {seconds * 1000:.2f} ms")


def bench_block(v: int, repeats: int) -> None:
    validators = keys(v, "v")
    inc = chain(keys(10, "c"), validators)
    params = Params()
    heights = iter(range(2, 10**9))
    commit = tuple(VoteInfo(k, 10, i % 10 != 0) for i, k in enumerate(validators))

    def once() -> None:
        h = next(heights)
        inc.execute(
            params,
            "gov_propose",
            keys(10, "c")[0],
            [["text", "t", ""], 1_000],
            h,
            h * BLOCK_MS,
            True,
        )
        for k in validators:
            inc.execute(params, "gov_vote", k, [inc.gov.next_id - 1, "yes"], h, h * BLOCK_MS, True)
        inc.begin_block(BlockInfo("bench", h, h * BLOCK_MS, validators[0], b"", commit))
        inc.end_block(params, h + 1, (h + 1) * BLOCK_MS)

    seconds = best_of(once, repeats)
    print(f"block hooks, {v} validators (+{v} votes, 1 tally): {seconds * 1000:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    sizes = (
        [(30, 650), (100, 10_000)] if args.quick else [(30, 650), (100, 100_000), (1_000, 100_000)]
    )
    for n, d in sizes:
        bench_agreement(n, d, 1 if n >= 1_000 else repeats)
    for n in [100] if args.quick else [100, 1_000]:
        bench_settle(n, repeats)
    for v in [4] if args.quick else [4, 100]:
        bench_block(v, repeats)


if __name__ == "__main__":
    main()
