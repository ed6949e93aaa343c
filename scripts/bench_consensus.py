"""Benchmark: heights per second of an in-process 4-validator cluster with real ed25519, run
by the one consensus driver the daemon runs (consensus/driver) on in-memory ports.

Four drivers, engines and KV apps in one process; the WAL is bytes in the daemon's format
(consensus/driver/memory.py), every message is delivered at once (FIFO) and each delivery moves
the virtual clock 1 ms; timers fire in virtual time when nothing is in flight.  Every vote and
proposal is signed, written to the WAL and verified for real by every receiver (no verification
cache); each block carries `--txs` small transactions (overwriting the same keys, so the app's
state stays small and the figure is the consensus path).  Reports wall-clock heights/s, heights
per CPU second (what one otherwise idle core sustains: the figure to compare on a loaded
machine) and the CPU time per height per validator, with and without signature verification.
The `engine_alone` row drives the bare engine with a loop of its own, as this benchmark did
before the driver existed: it isolates what the driver (WAL encoding, relay bookkeeping, queues)
adds, and is not what a node runs.

    .venv/bin/python scripts/bench_consensus.py [--heights 1000] [--txs 10] [--json]
"""

import argparse
import heapq
import json
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.app import BlockInfo, FinalizeResult, Genesis, GenesisValidator
from consensus.commit_verify import MemoVerifier
from consensus.crypto import PrivateKey, verify
from consensus.driver.driver import Driver, DriverConfig
from consensus.driver.memory import MemoryStore, MemoryWal
from consensus.driver.ports import Decided, Message, Peer, Ports
from consensus.engine import (
    BlockExecuted,
    BlockValidated,
    Broadcast,
    ChainState,
    Decide,
    Engine,
    EngineConfig,
    EngineState,
    Input,
    KeySigner,
    ProposalContent,
    ProposalReceived,
    RequestProposal,
    Start,
    ValidateBlock,
    VoteReceived,
)
from consensus.kvapp import KVApp
from consensus.types import Block, DuplicateVoteEvidence, Proposal, Vote

Verifier = Callable[[bytes, bytes, bytes], bool]
VALIDATORS = 4


def _accept_all(public_key: bytes, message: bytes, signature: bytes) -> bool:
    return True


def _genesis() -> tuple[list[PrivateKey], Genesis]:
    keys = [PrivateKey.from_label(f"bench-{i}") for i in range(VALIDATORS)]
    return keys, Genesis("bench", tuple(GenesisValidator(k.public_key, 1) for k in keys))


def _block_txs(height: int, txs_per_block: int) -> tuple[bytes, ...]:
    # Same keys every height: the app's state (and hashing) stays bounded.
    return tuple(f"k{n}=v{height}".encode() for n in range(txs_per_block))


class _Cluster:
    """The ports of every node: one FIFO for messages, one heap for timers, a virtual clock."""

    def __init__(self, txs_per_block: int) -> None:
        self.txs_per_block = txs_per_block
        self.now_ms = 0
        self.drivers: list[Driver] = []
        self.stores: list[MemoryStore] = []
        self.deliveries: deque[tuple[int, Message, int]] = deque()
        self.timers: list[tuple[int, int, int, Input]] = []
        self.seq = 0
        self.decided = 0


class _Node:
    """All eight ports of one node, over the shared cluster (a benchmark's, no I/O)."""

    def __init__(self, cluster: _Cluster, index: int) -> None:
        self.cluster = cluster
        self.index = index
        self.app = KVApp()

    # App
    def prepare(self, info: BlockInfo) -> tuple[bytes, ...]:
        return _block_txs(info.height, self.cluster.txs_per_block)

    def validate(self, block: Block, info: BlockInfo) -> bool:
        return self.app.process_proposal(block.txs, info)

    def finalize(self, block: Block, info: BlockInfo) -> FinalizeResult:
        return self.app.finalize_block(block.txs, info)

    def commit(self, block: Block) -> None:
        self.app.commit()

    def pending_updates(self) -> int:
        return 0

    def snapshot(self) -> bytes:
        return self.app.snapshot()

    # Net
    def broadcast(self, message: Message) -> None:
        self.cluster.deliveries.extend(
            (j, message, self.index) for j in range(VALIDATORS) if j != self.index
        )

    def send(self, peer: Peer, message: Message) -> None:
        if isinstance(peer, int):
            self.cluster.deliveries.append((peer, message, self.index))

    def behind(self, height: int) -> None:
        return None

    # Timers, Clock
    def schedule(self, delay_ms: int, inp: Input) -> None:
        c = self.cluster
        c.seq += 1
        heapq.heappush(c.timers, (c.now_ms + delay_ms, c.seq, self.index, inp))

    def now_ms(self) -> int:
        return self.cluster.now_ms

    # Telemetry, Penalizer
    def signed(self, message: Proposal | Vote, replayed: bool) -> None:
        return None

    def sign_refused(self, height: int, round_: int, step: int) -> None:
        return None

    def round_started(self, height: int, round_: int, proposer: bytes) -> None:
        return None

    def evidence_found(self, evidence: DuplicateVoteEvidence) -> None:
        return None

    def proposal_rejected(self, height: int) -> None:
        return None

    def committed(self, decided: Decided) -> None:
        self.cluster.decided += 1

    def replayed(self, height: int, records: int) -> None:
        return None

    def penalize(self, peer: Peer | None, reason: str) -> None:
        raise AssertionError(f"an honest peer was penalized: {reason}")


def run_drivers(
    heights: int, txs_per_block: int, make_verifier: Callable[[], Verifier]
) -> dict[str, float]:
    keys, genesis = _genesis()
    cluster = _Cluster(txs_per_block)
    for i, key in enumerate(keys):
        node = _Node(cluster, i)
        app_hash, overrides = node.app.init_chain(genesis)
        store = MemoryStore()
        ports = Ports(
            wal=MemoryWal(),
            store=store,
            app=node,
            net=node,
            timers=node,
            clock=node,
            telemetry=node,
            penalizer=node,
        )
        engine = Engine(EngineConfig(), KeySigner(key), make_verifier())
        chain = ChainState.from_genesis(genesis, app_hash, overrides)
        cluster.drivers.append(Driver(engine, ports, DriverConfig(), chain))
        cluster.stores.append(store)
    start_wall = time.perf_counter()
    start_cpu = time.process_time()
    for driver in cluster.drivers:
        driver.recover([])
    while cluster.decided < heights * VALIDATORS:
        if cluster.deliveries:
            dst, message, src = cluster.deliveries.popleft()
            cluster.now_ms += 1
            cluster.drivers[dst].receive(message, src)
        elif cluster.timers:
            due, _, dst, inp = heapq.heappop(cluster.timers)
            cluster.now_ms = max(cluster.now_ms, due)
            cluster.drivers[dst].feed(inp)
        else:
            raise RuntimeError("the cluster stopped: nothing in flight and no timer")
        for store in cluster.stores:
            store.settle()  # the background writer keeps up
    return _figures(cluster.decided // VALIDATORS, start_wall, start_cpu)


def run_engines(
    heights: int, txs_per_block: int, make_verifier: Callable[[], Verifier]
) -> dict[str, float]:
    """The bare engines, effects performed by this loop (no WAL, no driver)."""
    keys, genesis = _genesis()
    engines, states, apps = [], [], []
    for key in keys:
        app = KVApp()
        app_hash, _ = app.init_chain(genesis)
        engines.append(Engine(EngineConfig(), KeySigner(key), make_verifier()))
        states.append(EngineState.for_height(ChainState.from_genesis(genesis, app_hash)))
        apps.append(app)
    queue: deque[tuple[int, Input]] = deque((i, Start()) for i in range(VALIDATORS))
    decided = 0
    start_wall = time.perf_counter()
    start_cpu = time.process_time()
    while queue and decided < heights * VALIDATORS:
        i, inp = queue.popleft()
        states[i], effects = engines[i].apply(states[i], inp)
        app = apps[i]
        others = [j for j in range(VALIDATORS) if j != i]
        for e in effects:
            match e:
                case Broadcast(message) if isinstance(message, Proposal):
                    queue.extend((j, ProposalReceived(message)) for j in others)
                case Broadcast(message) if isinstance(message, Vote):
                    queue.extend((j, VoteReceived(message)) for j in others)
                case RequestProposal(h, r, _):
                    content = ProposalContent(h, r, h * 1_000, _block_txs(h, txs_per_block))
                    queue.appendleft((i, content))
                case ValidateBlock(h, block, info):
                    ok = app.process_proposal(block.txs, info)
                    queue.appendleft((i, BlockValidated(h, block.id(), ok)))
                case Decide(h, block, _, info):
                    result = app.finalize_block(block.txs, info)
                    app.commit()
                    decided += 1
                    executed = BlockExecuted(
                        h, block.id(), result.app_hash, result.validator_updates
                    )
                    queue.append((i, executed))
                case _:
                    pass
    return _figures(decided // VALIDATORS, start_wall, start_cpu)


def _figures(done: int, start_wall: float, start_cpu: float) -> dict[str, float]:
    wall_s = time.perf_counter() - start_wall
    cpu_s = time.process_time() - start_cpu
    return {
        "heights": done,
        "wall_s": round(wall_s, 3),
        "heights_per_s": round(done / wall_s, 1),
        "process_cpu_ms_per_height": round(cpu_s * 1000 / done, 3),
        # What one otherwise idle core sustains: the figure on a shared, loaded machine.
        "heights_per_cpu_s": round(done / cpu_s, 1),
        # The whole process's CPU split over the validators: driver, engine, WAL encoding,
        # signatures and the (tiny) KV app.
        "cpu_ms_per_height_per_validator": round(cpu_s * 1000 / done / VALIDATORS, 3),
    }


def report(heights: int, txs: int, variants: Sequence[str]) -> dict[str, dict[str, float]]:
    runs: dict[str, Callable[[], dict[str, float]]] = {
        "with_signature_checks": lambda: run_drivers(heights, txs, lambda: verify),
        # Each validator its own memo (a node's, not shared): the precommits inside a block's
        # last commit were already verified as votes.
        "with_signature_checks_memo": lambda: run_drivers(heights, txs, MemoVerifier),
        "without_signature_checks": lambda: run_drivers(heights, txs, lambda: _accept_all),
        "engine_alone": lambda: run_engines(heights, txs, lambda: verify),
    }
    return {name: runs[name]() for name in variants}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--heights", type=int, default=1_000)
    parser.add_argument("--txs", type=int, default=10, help="transactions per block")
    parser.add_argument(
        "--only",
        default="with_signature_checks,with_signature_checks_memo,without_signature_checks,"
        "engine_alone",
        help="comma-separated variants (default: all)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = report(args.heights, args.txs, args.only.split(","))
    if args.json:
        print(json.dumps(results))
    else:
        for name, r in results.items():
            print(
                f"{name}: {r['heights']} heights in {r['wall_s']} s = "
                f"{r['heights_per_s']} heights/s wall, {r['heights_per_cpu_s']} per CPU second; "
                f"CPU {r['cpu_ms_per_height_per_validator']} ms/height/validator; "
                f"whole process {r['process_cpu_ms_per_height']} ms CPU/height"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
