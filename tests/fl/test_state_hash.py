"""The memoized state hash equals the plain definition and survives a snapshot round trip."""

import numpy as np
import pytest

from consensus.codec import Value, encode
from consensus.crypto import sha256
from fl.app import FLApp
from fl.state import APP_DOMAIN, Account, FLState, _array_header
from tests.fl.helpers import key, new_app, random_delta, run_block, update_tx


def _plain_hash(state: FLState) -> bytes:
    """The app hash straight from its definition (module docstring of fl/state.py)."""
    sections: list[Value] = [
        [name, sha256(encode(value))] for name, value in state.section_values()
    ]
    return sha256(encode([APP_DOMAIN, state.chain_id, state.height, sections]))


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 65_535, 65_536, 70_000])
def test_array_header_is_what_encode_emits(length: int) -> None:
    header = _array_header(length)
    assert encode([0] * length)[: len(header)] == header
    assert len(encode([0] * length)) == len(header) + length


def test_memoized_accounts_match_the_definition_under_random_mutation() -> None:
    app = new_app()
    state = app.state
    rng = np.random.default_rng(11)
    keys = [bytes(rng.integers(0, 256, 32, dtype=np.uint8)) for _ in range(40)]
    for step in range(60):
        for _ in range(int(rng.integers(0, 6))):
            k = keys[int(rng.integers(0, len(keys)))]
            match int(rng.integers(0, 3)):
                case 0:  # nonce bump in place, the way the app does it
                    state.accounts.setdefault(k, Account()).nonce += 1
                case 1:  # replaced object
                    state.accounts[k] = Account(int(rng.integers(0, 1 << 40)))
                case _:  # removal (not done by the app today, but the hash must not care)
                    state.accounts.pop(k, None)
        assert state.section_bytes() == [(n, encode(v)) for n, v in state.section_values()]
        assert state.app_hash() == _plain_hash(state), step


def test_restored_app_hashes_like_the_incrementally_maintained_one() -> None:
    app = new_app()
    rng = np.random.default_rng(12)
    for i in range(4):  # rounds close every 3 updates; nonces move on 12 accounts
        txs = [update_tx(app, key(3 * i + c), random_delta(rng)) for c in range(3)]
        result = run_block(app, txs)
        assert all(r.code == 0 for r in result.tx_results)
        restored = FLApp()
        restored.restore(app.snapshot())
        assert restored.info().last_app_hash == result.app_hash == _plain_hash(app.state)
        assert restored.state.app_hash() == app.state.app_hash()
