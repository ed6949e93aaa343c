"""The tx id memo answers sha256 for every object, remembers only admitted large ones, and stays
bounded."""

import os

import pytest

from consensus import txid
from consensus.crypto import sha256


@pytest.fixture(autouse=True)
def _empty_memo() -> None:
    txid._memo.clear()
    txid._memo_bytes = 0


def _remembered(tx: bytes) -> bytes:
    digest = sha256(tx)
    txid.remember(tx, digest)
    return digest


def test_every_answer_is_the_sha256_of_the_bytes() -> None:
    small, large, passing = b"kv=1", os.urandom(txid.MEMO_BYTES_MIN), os.urandom(5000)
    _remembered(small)
    _remembered(large)
    for tx in (small, large, passing, large, small):
        assert txid.tx_id(tx) == sha256(tx)
    # Only the admitted large one is kept; hashing a transient object stores nothing.
    assert txid.memo_size() == (1, len(large))


def test_a_remembered_digest_is_returned_without_hashing() -> None:
    tx = os.urandom(txid.MEMO_BYTES_MIN)
    txid.remember(tx, b"\x07" * 32)  # only the memo can answer this
    assert txid.tx_id(tx) == b"\x07" * 32


def test_an_equal_but_distinct_object_is_hashed_not_confused() -> None:
    a = os.urandom(txid.MEMO_BYTES_MIN)
    b = bytes(bytearray(a))  # same bytes, another object
    assert a is not b
    txid.remember(a, b"\x07" * 32)
    assert txid.tx_id(b) == sha256(a)


def test_forget_drops_entries_and_the_bound_evicts_oldest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    txs = [os.urandom(txid.MEMO_BYTES_MIN) for _ in range(5)]
    for tx in txs:
        _remembered(tx)
    txid.forget(txs[:2])
    assert txid.memo_size() == (3, 3 * txid.MEMO_BYTES_MIN)
    monkeypatch.setattr(txid, "MEMO_BYTES_MAX", 2 * txid.MEMO_BYTES_MIN)
    _remembered(txs[0])  # a fourth entry: the two oldest go
    assert txid.memo_size() == (2, 2 * txid.MEMO_BYTES_MIN)
    assert set(txid._memo) == {id(txs[4]), id(txs[0])}
