"""Benchmark: heights per second of an in-process 4-validator cluster with real ed25519.

Four engines and four KV apps in one process; every message is delivered at once (FIFO), every
vote and proposal is signed and verified for real by every receiver (no verification cache),
each block carries `--txs` small transactions (overwriting the same keys, so the app's
state stays small and the figure is the consensus path).  Reports wall-clock heights/s and
the CPU time per height per validator, with and without signature verification.

    .venv/bin/python scripts/bench_consensus.py [--heights 1000] [--txs 10] [--json]
"""

import argparse
import json
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.app import Genesis, GenesisValidator
from consensus.commit_verify import MemoVerifier
from consensus.crypto import PrivateKey, verify
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
from consensus.types import Proposal, Vote

Verifier = Callable[[bytes, bytes, bytes], bool]


def _accept_all(public_key: bytes, message: bytes, signature: bytes) -> bool:
    return True


def run_cluster(
    heights: int, txs_per_block: int, make_verifier: Callable[[], Verifier]
) -> dict[str, float]:
    keys = [PrivateKey.from_label(f"bench-{i}") for i in range(4)]
    genesis = Genesis("bench", tuple(GenesisValidator(k.public_key, 1) for k in keys))
    engines, states, apps = [], [], []
    for key in keys:
        app = KVApp()
        app_hash, _ = app.init_chain(genesis)
        engines.append(Engine(EngineConfig(), KeySigner(key), make_verifier()))
        states.append(EngineState.for_height(ChainState.from_genesis(genesis, app_hash)))
        apps.append(app)
    queue: deque[tuple[int, Input]] = deque((i, Start()) for i in range(4))
    decided = 0
    start_wall = time.perf_counter()
    start_cpu = time.process_time()
    while queue and decided < heights * 4:
        i, inp = queue.popleft()
        states[i], effects = engines[i].apply(states[i], inp)
        app = apps[i]
        for e in effects:
            match e:
                case Broadcast(message) if isinstance(message, Proposal):
                    queue.extend((j, ProposalReceived(message)) for j in range(4) if j != i)
                case Broadcast(message) if isinstance(message, Vote):
                    queue.extend((j, VoteReceived(message)) for j in range(4) if j != i)
                case RequestProposal(h, r, _):
                    # Same keys every height: the app's state (and hashing) stays bounded.
                    txs = tuple(f"k{n}=v{h}".encode() for n in range(txs_per_block))
                    queue.appendleft((i, ProposalContent(h, r, h * 1_000, txs)))
                case ValidateBlock(h, block, info):
                    ok = app.process_proposal(block.txs, info)
                    queue.appendleft((i, BlockValidated(h, block.id(), ok)))
                case Decide(h, block, _, info):
                    result = app.finalize_block(block.txs, info)
                    app.commit()
                    decided += 1
                    queue.append(
                        (i, BlockExecuted(h, block.id(), result.app_hash, result.validator_updates))
                    )
                case _:
                    pass
    wall_s = time.perf_counter() - start_wall
    cpu_s = time.process_time() - start_cpu
    done = decided // 4
    return {
        "heights": done,
        "wall_s": round(wall_s, 3),
        "heights_per_s": round(done / wall_s, 1),
        "process_cpu_ms_per_height": round(cpu_s * 1000 / done, 3),
        # What one otherwise idle core sustains: the figure on a shared, loaded machine.
        "heights_per_cpu_s": round(done / cpu_s, 1),
        # The whole process's CPU split over the 4 validators: engine, signatures and the (tiny)
        # KV app.  (Timing each apply separately costs more than the apply on this machine.)
        "cpu_ms_per_height_per_validator": round(cpu_s * 1000 / done / 4, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--heights", type=int, default=1_000)
    parser.add_argument("--txs", type=int, default=10, help="transactions per block")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = {
        "with_signature_checks": run_cluster(args.heights, args.txs, lambda: verify),
        # Each validator its own memo (a node's, not shared): the precommits inside a block's
        # last commit were already verified as votes.
        "with_signature_checks_memo": run_cluster(args.heights, args.txs, MemoVerifier),
        "without_signature_checks": run_cluster(args.heights, args.txs, lambda: _accept_all),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for name, r in report.items():
            print(
                f"{name}: {r['heights']} heights in {r['wall_s']} s = "
                f"{r['heights_per_s']} heights/s wall, {r['heights_per_cpu_s']} per CPU second; "
                f"CPU {r['cpu_ms_per_height_per_validator']} ms/height/validator; "
                f"whole process {r['process_cpu_ms_per_height']} ms CPU/height"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
