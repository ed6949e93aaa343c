"""Replay a recorded block sequence through a fresh FLApp and print every app hash.

Run as `python -m tests.fl.replay FILE` by test_determinism.py in child processes with
different hash seeds and BLAS/OpenMP thread settings.  FILE holds
encode([[params entries...], [shapes], [[tx, ...] per block], ...]) per chain.
"""

import sys
from pathlib import Path

from consensus.codec import DecodeLimits, decode
from fl.app import FLApp
from fl.params import decode_params
from tests.fl.helpers import genesis, run_block

LIMITS = DecodeLimits(message_bytes_max=1 << 30, bin_bytes_max=1 << 30)


def replay(data: bytes) -> list[str]:
    hashes: list[str] = []
    chains = decode(data, LIMITS)
    assert isinstance(chains, list)
    for chain in chains:
        assert isinstance(chain, list)
        params_v, shapes_v, blocks = chain
        shapes = tuple(tuple(int(d) for d in s) for s in shapes_v)
        app = FLApp()
        app.init_chain(genesis(decode_params(params_v), shapes))
        for txs in blocks:
            hashes.append(run_block(app, list(txs)).app_hash.hex())
    return hashes


if __name__ == "__main__":
    print("\n".join(replay(Path(sys.argv[1]).read_bytes())))
