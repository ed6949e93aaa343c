"""The authentication memo: same answers as a fresh decode + verify, bounded, never in the hash."""

import numpy as np
import pytest

from consensus.crypto import sha256
from fl import authcache
from fl.app import FLApp
from fl.authcache import AuthCache
from fl.errors import RejectedError
from fl.txs import SignedTx, decode_tx, verify_tx
from fl.updates import measure
from node.config import MempoolConfig
from tests.fl.helpers import CHAIN_ID, key, new_app, random_delta, run_block, update_tx


def _fresh(tx: bytes) -> object:
    try:
        signed = decode_tx(tx)
        verify_tx(signed, CHAIN_ID)
    except RejectedError as exc:
        return str(exc)
    return signed


def test_hits_and_misses_give_the_fresh_result() -> None:
    app = new_app()
    rng = np.random.default_rng(5)
    good = update_tx(app, key(0), random_delta(rng))
    forged = bytearray(good)
    forged[-1] ^= 1
    other_chain = update_tx(app, key(1), random_delta(rng), chain_id="another-chain")
    cache = AuthCache(CHAIN_ID)
    for tx in [good, bytes(forged), other_chain, b"\x93junk", good, bytes(forged), other_chain]:
        try:
            got: object = cache.authenticate(tx)
        except RejectedError as exc:
            got = str(exc)
        assert got == _fresh(tx)
    assert len(cache) == 1
    assert cache.rejections == 3


def test_rejections_hold_little_memory() -> None:
    """Only small rejected txs are remembered, and only so many: distinct large bad txs from
    a stranger once stayed pinned here (60 x 4 MiB held 240 MiB on a validator)."""
    cache = AuthCache(CHAIN_ID)
    for i in range(3):
        with pytest.raises(RejectedError):
            cache.authenticate(b"\x95" + bytes([i]) * (authcache.REJECTED_TX_BYTES_MAX + 1))
    assert cache.rejections == 0
    assert len(cache) == 0
    for i in range(authcache.REJECTED_ENTRIES_MAX + 10):
        with pytest.raises(RejectedError):
            cache.authenticate(b"\x93junk" + i.to_bytes(4, "big"))
    assert cache.rejections == authcache.REJECTED_ENTRIES_MAX


def test_a_released_tx_leaves_the_apps_memo() -> None:
    app = new_app()
    good = update_tx(app, key(0), random_delta(np.random.default_rng(12)))
    assert app.check_tx(good).ok
    assert len(app._memo()) == 1
    app.release_tx(good)
    assert len(app._memo()) == 0


def test_bounds_evict_oldest_first() -> None:
    app = new_app()
    rng = np.random.default_rng(6)
    txs = [update_tx(app, key(i), random_delta(rng)) for i in range(5)]
    cache = AuthCache(CHAIN_ID, entries_max=3)
    for tx in txs:
        cache.authenticate(tx)
    assert len(cache) == 3
    by_bytes = AuthCache(CHAIN_ID, bytes_max=2 * len(txs[0]) * 2)
    for tx in txs:
        by_bytes.authenticate(tx)
    assert len(by_bytes) == 2
    too_big = AuthCache(CHAIN_ID, bytes_max=len(txs[0]))
    assert too_big.authenticate(txs[0]) == decode_tx(txs[0])
    assert len(too_big) == 0


@pytest.mark.parametrize("warm", [False, True])
def test_a_warm_cache_does_not_change_block_results_or_the_app_hash(warm: bool) -> None:
    rng = np.random.default_rng(7)
    apps = [new_app(), new_app()]
    txs = [update_tx(apps[0], key(i), random_delta(rng)) for i in range(3)]
    if warm:  # the second app saw every transaction in check_tx first, as a validator does
        assert all(apps[1].check_tx(tx).ok for tx in txs)
    results = [run_block(app, txs) for app in apps]
    assert results[0].tx_results == results[1].tx_results
    assert results[0].app_hash == results[1].app_hash == apps[1].info().last_app_hash


def test_commit_reports_the_hash_of_the_committed_state() -> None:
    app = new_app()
    rng = np.random.default_rng(8)
    result = run_block(app, [update_tx(app, key(0), random_delta(rng))])
    assert app.info().last_app_hash == result.app_hash == app.state.app_hash()
    restored = FLApp()
    restored.restore(app.snapshot())
    assert restored.info().last_app_hash == result.app_hash


def test_an_update_is_recorded_under_the_sha256_of_its_bytes() -> None:
    """The record's key is the node's tx id (consensus.txid), whether or not it was memoized."""
    app = new_app()
    good = update_tx(app, key(0), random_delta(np.random.default_rng(9)))
    run_block(app, [good])
    assert list(app.state.records) == [sha256(good)]


def test_update_measurement_is_memoized_with_the_same_answer_and_forgotten_on_commit() -> None:
    app = new_app()
    rng = np.random.default_rng(10)
    good = update_tx(app, key(0), random_delta(rng))
    cache = AuthCache(CHAIN_ID)
    signed = cache.authenticate(good)
    first = cache.measure_update(good, signed)
    assert first == measure(decode_tx(good))
    assert cache.measure_update(good, signed) is first  # a hit, not a recomputation
    cache.forget([good])
    assert len(cache) == 0


def test_a_memoized_bad_measurement_keeps_its_reason() -> None:
    app = new_app()
    huge = update_tx(app, key(1), np.full(app.state.model.weights.size, 1e9))
    cache = AuthCache(CHAIN_ID)
    signed = cache.authenticate(huge)
    reasons = []
    for _ in range(2):
        with pytest.raises(RejectedError) as exc:
            cache.measure_update(huge, signed)
        reasons.append(str(exc.value))
    assert reasons[0] == reasons[1]
    assert "exceeds" in reasons[0]


def test_rechecks_do_not_verify_signatures_again(monkeypatch: pytest.MonkeyPatch) -> None:
    app = new_app()
    rng = np.random.default_rng(11)
    txs = [update_tx(app, key(i), random_delta(rng)) for i in range(40)]
    verified: list[bytes] = []

    def counting_verify(tx: SignedTx, chain_id: str) -> None:
        verified.append(tx.signature)
        verify_tx(tx, chain_id)

    monkeypatch.setattr(authcache, "verify_tx", counting_verify)
    for _ in range(3):  # admission, then two mempool rechecks
        assert all(app.check_tx(tx).ok for tx in txs)
    assert len(verified) == 40


def test_the_memo_outsizes_a_full_default_mempool() -> None:
    """Smaller, and a full mempool's recheck evicts what it is about to ask for: every recheck
    verified every signature again (seen at 1,000 updates of 200 KB)."""
    assert 2 * MempoolConfig().bytes_max <= authcache.BYTES_MAX
