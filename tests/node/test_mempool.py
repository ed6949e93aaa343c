"""The mempool: admission reasons, bounds, dedupe, per-sender nonce order, recheck."""

import pytest

from consensus import txid
from consensus.app import CheckTxResult
from node.errors import MempoolError
from node.mempool import Mempool, tx_hash


class NonceRules:
    """A tiny deterministic application rule set: tx = b"<sender>:<nonce>:<body>"."""

    def __init__(self) -> None:
        self.committed_nonce: dict[bytes, int] = {}

    def check_tx(self, tx: bytes) -> CheckTxResult:
        parts = tx.split(b":", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return CheckTxResult(code=1, reason="malformed tx")
        sender, nonce = parts[0], int(parts[1])
        if nonce <= self.committed_nonce.get(sender, 0):
            return CheckTxResult(code=2, reason=f"nonce {nonce} already used")
        return CheckTxResult(sender=sender, nonce=nonce)


def _pool(rules: NonceRules, txs_max: int = 100, bytes_max: int = 10_000) -> Mempool:
    return Mempool(rules.check_tx, txs_max=txs_max, bytes_max=bytes_max, tx_bytes_max=100)


@pytest.mark.parametrize(
    ("tx", "code", "reason"),
    [
        (b"", "malformed", "empty"),
        (b"a:1:" + b"x" * 200, "too_large", "exceeds"),
        (b"garbage", "check_tx", "malformed tx"),
    ],
)
def test_refusals_carry_a_reason(tx: bytes, code: str, reason: str) -> None:
    pool = _pool(NonceRules())
    with pytest.raises(MempoolError, match=reason) as info:
        pool.add(tx)
    assert info.value.code == code
    assert len(pool) == 0


def test_duplicates_and_bounds() -> None:
    pool = _pool(NonceRules(), txs_max=2, bytes_max=20)
    pool.add(b"a:1:x")
    with pytest.raises(MempoolError, match="already in the mempool"):
        pool.add(b"a:1:x")
    pool.add(b"b:1:x")
    with pytest.raises(MempoolError, match="2 transactions"):
        pool.add(b"c:1:x")
    pool.update([tx_hash(b"b:1:x")])
    with pytest.raises(MempoolError, match="20 bytes"):
        pool.add(b"c:1:" + b"y" * 20)
    with pytest.raises(MempoolError, match="already committed"):
        pool.add(b"b:1:x")
    assert pool.size_bytes == 5


def test_reap_keeps_each_senders_nonces_in_order() -> None:
    pool = _pool(NonceRules())
    for tx in (b"a:2:x", b"b:1:x", b"a:1:x", b"c:1:x", b"a:3:x"):
        pool.add(tx)
    assert pool.reap(10, 10_000) == [b"b:1:x", b"a:1:x", b"a:2:x", b"c:1:x", b"a:3:x"]
    assert pool.reap(2, 10_000) == [b"b:1:x", b"a:1:x"]
    assert pool.reap(10, 12) == [b"b:1:x", b"a:1:x"]


def test_recheck_after_commit_drops_what_became_invalid() -> None:
    rules = NonceRules()
    pool = _pool(rules)
    for tx in (b"a:1:x", b"a:2:y", b"a:3:z", b"b:1:x"):
        pool.add(tx)
    rules.committed_nonce[b"a"] = 2  # a block used a's nonces 1 and 2 (a:2 with other bytes)
    dropped = pool.update([tx_hash(b"a:1:x")])
    assert dropped == [tx_hash(b"a:2:y")]
    assert pool.reap(10, 10_000) == [b"a:3:z", b"b:1:x"]
    assert pool.get(tx_hash(b"a:3:z")) == b"a:3:z"
    assert pool.seen(tx_hash(b"a:1:x"))


def test_the_tx_id_memo_holds_exactly_the_admitted_large_txs() -> None:
    """Admission remembers a large tx's id for that object; commit and recheck drops forget it
    (so the memo never keeps a tx alive that the mempool let go)."""
    verdict = {"ok": True}
    pool = Mempool(
        lambda _tx: CheckTxResult() if verdict["ok"] else CheckTxResult(code=1, reason="stale"),
        txs_max=10,
        bytes_max=1 << 20,
        tx_bytes_max=1 << 16,
    )
    big = [bytes([i]) * txid.MEMO_BYTES_MIN for i in range(3)]
    before = txid.memo_size()[0]
    for tx in big:
        pool.add(tx)
    assert txid.memo_size()[0] == before + 3
    pool.update([tx_hash(big[0])])  # committed
    assert txid.memo_size()[0] == before + 2
    verdict["ok"] = False
    pool.update([tx_hash(big[1])])  # committed; the recheck drops big[2]
    assert len(pool) == 0
    assert txid.memo_size()[0] == before
