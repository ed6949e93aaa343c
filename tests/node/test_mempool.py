"""The mempool: admission reasons, bounds, dedupe, per-sender nonce order, recheck."""

import pytest

from consensus import txid
from consensus.app import CheckTxResult
from node.errors import MempoolError
from node.mempool import Mempool, MempoolPolicy, tx_hash


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


# -- priority, budgets and expiry (issue 13: the mempool must not be lockable) --------------------


class Accounts:
    """Rules like the FL app's: tx = b"<sender>:<nonce>:<body>", nonces from 0, a window of 16
    past the sender's next nonce, and check_tx reports the gap."""

    def __init__(self) -> None:
        self.next_nonce: dict[bytes, int] = {}

    def check_tx(self, tx: bytes) -> CheckTxResult:
        sender, raw, _ = tx.split(b":", 2)
        nonce, expected = int(raw), self.next_nonce.get(sender, 0)
        if not expected <= nonce < expected + 16:
            return CheckTxResult(code=2, reason=f"nonce {nonce} outside the window")
        return CheckTxResult(sender=sender, nonce=nonce, nonce_gap=nonce - expected)

    def commit(self, *txs: bytes) -> list[bytes]:
        for tx in txs:
            sender = tx.split(b":")[0]
            self.next_nonce[sender] = self.next_nonce.get(sender, 0) + 1
        return [tx_hash(tx) for tx in txs]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _policy_pool(
    rules: Accounts, clock: Clock, txs_max: int = 100, bytes_max: int = 100_000, **policy: int
) -> Mempool:
    return Mempool(
        rules.check_tx,
        txs_max=txs_max,
        bytes_max=bytes_max,
        tx_bytes_max=1_000,
        policy=MempoolPolicy(**policy),
        clock=clock,
    )


def test_gapped_txs_are_held_but_never_reaped() -> None:
    pool = _policy_pool(Accounts(), Clock())
    pool.add(b"a:2:x")  # a's nonces 0 and 1 are missing
    pool.add(b"b:0:x")
    assert pool.gapped == 1
    assert pool.reap(10, 10_000) == [b"b:0:x"]
    pool.add(b"a:0:x")  # nonce 1 still missing
    assert pool.reap(10, 10_000) == [b"b:0:x", b"a:0:x"]
    pool.add(b"a:1:x")  # the chain 0, 1, 2 is complete: all of a's txs are ready
    assert pool.gapped == 0
    assert pool.reap(10, 10_000) == [b"b:0:x", b"a:0:x", b"a:1:x", b"a:2:x"]


def test_the_nonce_gap_window_and_per_sender_budgets() -> None:
    rules = Accounts()
    pool = _policy_pool(rules, Clock(), nonce_gap_max=2, sender_txs_max=3, sender_bytes_max=20)
    # The window counts from the sender's next nonce in the committed state, pending or not.
    for tx in (b"a:0:x", b"a:1:x", b"a:2:x"):
        pool.add(tx)
    with pytest.raises(MempoolError, match="3 past the sender's next nonce 0") as info:
        pool.add(b"a:3:x")
    assert info.value.code == "nonce_gap"
    rules.commit(b"a:0:elsewhere")  # now a:3 is 2 ahead, but a holds 3 txs already
    with pytest.raises(MempoolError, match="3 pending transactions") as info:
        pool.add(b"a:3:x")
    assert info.value.code == "sender_limit"
    pool.add(b"b:0:" + b"y" * 12)  # 16 bytes
    with pytest.raises(MempoolError, match="exceed 20 bytes") as info:
        pool.add(b"b:1:yyy")
    assert info.value.code == "sender_limit"
    with pytest.raises(MempoolError, match="pending transaction with nonce 1") as info:
        pool.add(b"a:1:other bytes")
    assert info.value.code == "duplicate"


def test_a_flood_of_gapped_txs_cannot_lock_out_an_executable_one() -> None:
    """Issue 13, attack 4, in miniature: fresh keys fill the pool with gapped txs; an honest
    next-nonce tx evicts the oldest of them, while another gapped tx is refused."""
    pool = _policy_pool(Accounts(), Clock(), txs_max=20)
    for key in range(5):
        for nonce in range(1, 5):
            pool.add(f"attacker{key}:{nonce}:x".encode())
    assert len(pool) == 20
    assert pool.gapped == 20
    with pytest.raises(MempoolError, match="full") as info:
        pool.add(b"attacker9:1:x")
    assert info.value.code == "full"
    pool.add(b"honest:0:x")
    pool.add(b"honest:1:x")  # ready too: its predecessor is pending
    assert len(pool) == 20
    assert pool.evicted == 2
    assert not pool.seen(tx_hash(b"attacker0:1:x"))  # the oldest gapped went first
    assert not pool.seen(tx_hash(b"attacker0:2:x"))
    assert pool.reap(100, 100_000) == [b"honest:0:x", b"honest:1:x"]


def test_eviction_also_makes_room_in_bytes_and_never_evicts_in_vain() -> None:
    pool = _policy_pool(Accounts(), Clock(), bytes_max=40)
    pool.add(b"evil:1:" + b"x" * 13)  # 20 bytes, gapped
    pool.add(b"good:0:" + b"x" * 13)  # 20 bytes, ready
    with pytest.raises(MempoolError, match="40 bytes"):
        pool.add(b"more:0:" + b"x" * 23)  # 30 bytes: evicting the gapped 20 is not enough
    assert len(pool) == 2
    pool.add(b"more:0:" + b"x" * 13)
    assert pool.evicted == 1
    assert not pool.seen(tx_hash(b"evil:1:" + b"x" * 13))


def test_gapped_txs_expire_quickly_and_every_tx_expires_by_age_and_height() -> None:
    clock = Clock()
    rules = Accounts()
    pool = _policy_pool(
        rules, clock, gapped_ttl_ms=5_000, ttl_ms=60_000, ttl_heights=10, recheck_interval_ms=10**9
    )
    pool.add(b"a:1:x")
    pool.add(b"b:0:x")
    clock.now += 4.9
    assert pool.update([]) == []
    clock.now += 0.1
    assert pool.update([]) == [tx_hash(b"a:1:x")]  # gapped for 5 s
    pool.add(b"c:0:x")  # 2 heights after b
    for _ in range(7):
        assert pool.update([]) == []
    # b was admitted 10 blocks ago now; c only 8.
    assert pool.update([]) == [tx_hash(b"b:0:x")]
    clock.now += 60
    assert pool.update([]) == [tx_hash(b"c:0:x")]
    assert len(pool) == 0
    assert pool.expired == 3


def test_recheck_runs_on_an_idle_chain_and_refreshes_the_gaps() -> None:
    """A sender's txs can commit through another node: on empty blocks the pool learns it from
    the periodic recheck, which drops the spent nonce and makes the successor ready."""
    clock = Clock()
    rules = Accounts()
    pool = _policy_pool(rules, clock, recheck_interval_ms=2_000)
    pool.add(b"a:1:x")
    assert pool.gapped == 1
    rules.commit(b"a:0:elsewhere")
    pool.update([])  # an empty block, interval not yet over: nothing rechecked
    assert pool.gapped == 1
    clock.now += 2
    pool.update([])
    assert pool.gapped == 0
    assert pool.reap(10, 1_000) == [b"a:1:x"]
    rules.commit(b"a:1:x")
    clock.now += 2
    assert pool.update([]) == [tx_hash(b"a:1:x")]  # its nonce is used: dropped by recheck


def test_committing_a_predecessor_keeps_the_successors_ready() -> None:
    rules = Accounts()
    pool = _policy_pool(rules, Clock())
    for tx in (b"a:0:x", b"a:1:x", b"a:2:x"):
        pool.add(tx)
    pool.update(rules.commit(b"a:0:x"))
    assert pool.gapped == 0
    assert pool.reap(10, 1_000) == [b"a:1:x", b"a:2:x"]


def test_every_tx_checked_and_let_go_is_released_to_the_app() -> None:
    """What check_tx saw and the pool does not keep goes back through `release` (the app's
    memo would otherwise pin its bytes): refused by check_tx, refused by the sender policy,
    dropped by a recheck, committed.  What the pool holds is not released."""
    rules = NonceRules()
    released: list[bytes] = []
    pool = Mempool(
        rules.check_tx,
        txs_max=100,
        bytes_max=10_000,
        tx_bytes_max=100,
        policy=MempoolPolicy(sender_txs_max=2),
        release=released.append,
    )
    for tx in (b"garbage", b"a:1:x", b"a:2:x", b"a:3:x", b"b:1:x"):
        if tx in (b"garbage", b"a:3:x"):
            with pytest.raises(MempoolError):
                pool.add(tx)
        else:
            pool.add(tx)
    assert released == [b"garbage", b"a:3:x"]  # check_tx's refusal, the sender limit
    rules.committed_nonce[b"a"] = 2  # a:2 used by another block: the recheck drops it
    pool.update([tx_hash(b"a:1:x")])
    assert released[2:] == [b"a:1:x", b"a:2:x"]
    assert pool.reap(10, 10_000) == [b"b:1:x"]  # held, never released
    assert b"b:1:x" not in released
