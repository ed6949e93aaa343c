"""A transaction's id, sha256 of its bytes, remembered for the same bytes object.

A validator hashes one transaction object many times: at mempool admission, when it proposes
or reassembles a block, when the engine checks the block's data hash, and when the committed
block is indexed.  For a 200 KB FL update each pass is ~100 us, and a 1,000-update round paid
it four or five times on every validator.  `tx_id` computes the digest the first time it sees
an object and returns the stored one afterwards.

Soundness: entries are keyed by `id(tx)` and hold the object itself, so while an entry lives
no other object can have that id; a lookup also checks `entry[0] is tx`.  Bytes are immutable,
so the stored digest is the digest of the bytes.  The memo therefore never changes an answer,
only saves work, and nothing consensus-critical depends on whether it hit.

Only transactions of at least `MEMO_BYTES_MIN` bytes are remembered (hashing a small one costs
less than the bookkeeping).  The memo keeps its objects alive, so it is bounded in bytes and
evicts oldest first; the node also drops committed transactions (`forget`), after which the
memo holds about what the mempool holds anyway.
"""

from collections import OrderedDict
from collections.abc import Iterable

from consensus.crypto import sha256

MEMO_BYTES_MIN = 4096
MEMO_BYTES_MAX = 768 * 1024 * 1024

_memo: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()
_memo_bytes = 0


def tx_id(tx: bytes) -> bytes:
    """sha256(tx), computed once per large bytes object."""
    global _memo_bytes
    if len(tx) < MEMO_BYTES_MIN:
        return sha256(tx)
    entry = _memo.get(id(tx))
    if entry is not None and entry[0] is tx:
        return entry[1]
    digest = sha256(tx)
    _memo[id(tx)] = (tx, digest)
    _memo_bytes += len(tx)
    while _memo_bytes > MEMO_BYTES_MAX:
        _, (old, _) = _memo.popitem(last=False)
        _memo_bytes -= len(old)
    return digest


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
