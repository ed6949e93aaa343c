"""The mempool: transactions that passed check_tx and wait for a block.

Theory of operation
-------------------
`add(tx)` admits a transaction only if it is new (not pending, not recently committed), within
the size bound, fits the pool's count and byte budgets, and the application's `check_tx`
accepts it; otherwise it raises MempoolError with a reason a person can read.  Admitted txs
keep their arrival sequence number.

`reap(txs_max, bytes_max)` returns txs for a proposal in arrival order, except that one
sender's txs always come out in nonce order: a tx's sort key is the larger of its own arrival
and the key of the same sender's previous nonce, so a low nonce that arrived late pulls its
successors after it rather than letting them jump ahead.

After a block commits, `update(committed_hashes)` removes its txs, remembers their hashes in a
bounded cache (so a replayed tx is refused without touching the app), and rechecks the rest
against the new state, dropping those that became invalid (e.g. an FL update for a round that
just closed).  Everything here runs on the event-loop thread; no locks.
"""

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consensus import txid
from consensus.app import CheckTxResult
from consensus.txid import tx_id
from node.errors import MempoolError


@dataclass(frozen=True, slots=True)
class MempoolEntry:
    tx: bytes
    hash: bytes
    sender: bytes
    nonce: int
    seq: int


def tx_hash(tx: bytes) -> bytes:
    return tx_id(tx)


class Mempool:
    def __init__(
        self,
        check_tx: Callable[[bytes], CheckTxResult],
        txs_max: int,
        bytes_max: int,
        tx_bytes_max: int,
        cache_hashes_max: int = 100_000,
        recheck: bool = True,
    ) -> None:
        self._check_tx = check_tx
        self._txs_max = txs_max
        self._bytes_max = bytes_max
        self._tx_bytes_max = tx_bytes_max
        self._cache_max = cache_hashes_max
        self._recheck = recheck
        self._entries: dict[bytes, MempoolEntry] = {}
        self._bytes = 0
        self._seq = 0
        self._committed: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, h: object) -> bool:
        return h in self._entries

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, h: bytes) -> bytes | None:
        entry = self._entries.get(h)
        return None if entry is None else entry.tx

    def seen(self, h: bytes) -> bool:
        """True if `h` is pending or was committed recently (no need to fetch or relay it)."""
        return h in self._entries or h in self._committed

    def add(self, tx: bytes, known_hash: bytes | None = None) -> MempoolEntry:
        """Admit `tx` or raise MempoolError.  `known_hash` saves hashing it again when the
        caller just computed tx_hash(tx) itself (never a hash that came from a peer)."""
        if not tx:
            raise MempoolError("empty transaction", "malformed")
        if len(tx) > self._tx_bytes_max:
            raise MempoolError(
                f"transaction of {len(tx)} bytes exceeds the limit of {self._tx_bytes_max}",
                "too_large",
            )
        h = tx_hash(tx) if known_hash is None else known_hash
        if h in self._entries:
            raise MempoolError("transaction already in the mempool", "duplicate")
        if h in self._committed:
            raise MempoolError("transaction already committed", "duplicate")
        if len(self._entries) >= self._txs_max:
            raise MempoolError(f"mempool full ({self._txs_max} transactions)", "full")
        if self._bytes + len(tx) > self._bytes_max:
            raise MempoolError(f"mempool full ({self._bytes_max} bytes)", "full")
        result = self._check_tx(tx)
        if not result.ok:
            raise MempoolError(result.reason or f"check_tx code {result.code}", "check_tx")
        self._seq += 1
        entry = MempoolEntry(tx=tx, hash=h, sender=result.sender, nonce=result.nonce, seq=self._seq)
        self._entries[h] = entry
        txid.remember(tx, h)  # this object will be proposed, checked and indexed: hash it once
        self._bytes += len(tx)
        return entry

    def reap(self, txs_max: int, bytes_max: int) -> list[bytes]:
        out: list[bytes] = []
        total = 0
        for entry in self._ordered():
            if len(out) >= txs_max:
                break
            if total + len(entry.tx) > bytes_max:
                continue
            out.append(entry.tx)
            total += len(entry.tx)
        return out

    def _ordered(self) -> list[MempoolEntry]:
        by_sender: dict[bytes, list[MempoolEntry]] = {}
        anonymous: list[tuple[int, bytes, int, MempoolEntry]] = []
        for entry in self._entries.values():
            if entry.sender:
                by_sender.setdefault(entry.sender, []).append(entry)
            else:
                anonymous.append((entry.seq, b"", 0, entry))
        keyed = anonymous
        for sender in sorted(by_sender):
            key = 0
            for entry in sorted(by_sender[sender], key=lambda e: (e.nonce, e.seq)):
                key = max(key, entry.seq)
                keyed.append((key, sender, entry.nonce, entry))
        keyed.sort(key=lambda k: (k[0], k[1], k[2]))
        return [k[3] for k in keyed]

    def update(self, committed: Sequence[bytes]) -> list[bytes]:
        """Drop committed txs, remember them, recheck the rest; return hashes dropped by recheck.

        Only a block with transactions can change what check_tx answers for a pending tx
        (nonces, balances, an FL round closing on quorum), so empty blocks skip the recheck;
        a round that closes on its deadline height leaves stale updates that the block will
        reject with a reason instead.
        """
        for h in committed:
            entry = self._entries.pop(h, None)
            if entry is not None:
                self._bytes -= len(entry.tx)
                txid.forget((entry.tx,))
            self._committed[h] = None
            self._committed.move_to_end(h)
        while len(self._committed) > self._cache_max:
            self._committed.popitem(last=False)
        dropped: list[bytes] = []
        if self._recheck and committed:
            for h, entry in list(self._entries.items()):
                if not self._check_tx(entry.tx).ok:
                    del self._entries[h]
                    self._bytes -= len(entry.tx)
                    txid.forget((entry.tx,))
                    dropped.append(h)
        return dropped
