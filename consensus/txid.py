"""A transaction's id, sha256 of its bytes, remembered for the same bytes object.

A validator hashes one transaction object many times: at mempool admission, when it proposes
or reassembles a block, when the engine checks the block's data hash, and when the committed
block is indexed.  For a 200 KB FL update each pass is ~100 us, and a 1,000-update round paid
it four or five times on every validator.  The mempool `remember`s the digest of each tx it
admits; `tx_id` returns it for that same object and computes (without storing) for any other.

Only admitted objects are remembered: a first version stored every object it hashed, and the
transient duplicates of gossip (a pushed copy of a tx already pulled, an answer's copy of one
already held) stayed alive in the memo until evicted, up to its whole byte bound per node.

Soundness: entries are keyed by `id(tx)` and hold the object itself, so while an entry lives
no other object can have that id; a lookup also checks `entry[0] is tx`.  Bytes are immutable,
so the stored digest is the digest of the bytes.  The memo therefore never changes an answer,
only saves work, and nothing consensus-critical depends on whether it hit.

Only transactions of at least `MEMO_BYTES_MIN` bytes are remembered (hashing a small one costs
less than the bookkeeping).  The memo keeps its objects alive, so it is bounded in bytes and
evicts oldest first; the node drops committed and evicted transactions (`forget`), so the memo
holds what the mempool holds.  Event-loop thread only.
"""

from collections import OrderedDict
from collections.abc import Iterable

from consensus.crypto import sha256

MEMO_BYTES_MIN = 4096
MEMO_BYTES_MAX = 768 * 1024 * 1024

_memo: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()
_memo_bytes = 0


def tx_id(tx: bytes) -> bytes:
    """sha256(tx): remembered if this very object was `remember`ed, else computed."""
    entry = _memo.get(id(tx)) if len(tx) >= MEMO_BYTES_MIN else None
    if entry is not None and entry[0] is tx:
        return entry[1]
    return sha256(tx)


def remember(tx: bytes, digest: bytes) -> None:
    """Keep `digest` (= sha256(tx), computed by the caller) for this object until forgotten."""
    global _memo_bytes
    if len(tx) < MEMO_BYTES_MIN or id(tx) in _memo:
        return
    _memo[id(tx)] = (tx, digest)
    _memo_bytes += len(tx)
    while _memo_bytes > MEMO_BYTES_MAX:
        _, (old, _) = _memo.popitem(last=False)
        _memo_bytes -= len(old)


def forget(txs: Iterable[bytes]) -> None:
    """Drop these objects from the memo (e.g. committed: they are not hashed again)."""
    global _memo_bytes
    for tx in txs:
        entry = _memo.get(id(tx))
        if entry is not None and entry[0] is tx:
            del _memo[id(tx)]
            _memo_bytes -= len(tx)


def memo_size() -> tuple[int, int]:
    """(entries, bytes) currently remembered."""
    return len(_memo), _memo_bytes
