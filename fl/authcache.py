"""Memo of transaction authentication (decode + ed25519 verify), bounded by entries and bytes.

A validator sees each transaction up to four times: check_tx (mempool admission),
prepare_proposal, process_proposal and finalize_block.  Decoding and verifying the signature is
a pure function of the wire bytes and the chain id (fixed for an app), so its result can be
remembered: a hit returns exactly what a fresh computation would, and a miss recomputes it.  The
cache therefore can never change a result or the app hash; it only saves work.

For an FL update its stateless measurement (`fl.updates.measure`: decode, coordinate bound,
exact norm) is memoized in the same entry, computed on first request; without it every mempool
recheck (after each block, of every pending update) decoded 100k coordinates again.  The tx's
id is the node's `consensus.txid.tx_id`, already known for every tx the mempool admitted.

Keys are the wire bytes themselves (dict lookup = exact equality, so no reliance on a hash
being collision free).  Eviction is first in, first out once either bound is passed; each entry
is charged twice its wire size (the key plus the decoded body, which holds a copy of the
payload).  The byte bound must exceed what the mempool holds (512 MiB by default), or a full
mempool's recheck evicts entries it is about to need and every recheck verifies every signature
again.  What the mempool lets go, committed or dropped or refused, is dropped here too
(`forget`, from the app's `release_tx`), so the memo holds about the mempool.

A rejection (bad encoding or signature) is kept apart, and only for small transactions, so a
flood of one small bad transaction costs one verification.  It was kept with the accepted
entries once, under their bound: 60 distinct 4 MiB bad-signature submissions over RPC then
pinned 240 MiB of keys on a validator, and a stranger could pin the whole 1.25 GiB.  For a
large transaction a memo saves little anyway: looking it up costs about what hashing it for
the signature check does.
"""

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from fl.errors import RejectedError
from fl.txs import SignedTx, decode_tx, verify_tx
from fl.updates import Measured, measure

ENTRIES_MAX = 50_000
BYTES_MAX = 1280 * 1024 * 1024  # 2 x (512 MiB mempool + headroom)
REJECTED_ENTRIES_MAX = 1024
REJECTED_TX_BYTES_MAX = 4096  # so rejections hold at most 4 MiB of keys


@dataclass(slots=True)
class _Entry:
    result: SignedTx  # the authenticated transaction
    measured: Measured | str | None = None  # an update's measurement or rejection, on request


class AuthCache:
    def __init__(self, chain_id: str, entries_max: int = ENTRIES_MAX, bytes_max: int = BYTES_MAX):
        self._chain_id = chain_id
        self._entries_max = entries_max
        self._bytes_max = bytes_max
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._bytes = 0
        self._rejected: OrderedDict[bytes, str] = OrderedDict()  # small tx -> reason

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def chain_id(self) -> str:
        return self._chain_id

    @property
    def rejections(self) -> int:
        return len(self._rejected)

    def authenticate(self, tx: bytes) -> SignedTx:
        """decode_tx + verify_tx, memoized; raises RejectedError with the same reason."""
        return self._entry(tx).result

    def measure_update(self, tx: bytes, signed: SignedTx) -> Measured:
        """fl.updates.measure(signed) for the authenticated `tx`, memoized; raises
        RejectedError with the same reason."""
        entry = self._entry(tx)
        if entry.measured is None:
            try:
                entry.measured = measure(signed)
            except RejectedError as exc:
                entry.measured = str(exc)
        if isinstance(entry.measured, str):
            raise RejectedError(entry.measured)
        return entry.measured

    def forget(self, txs: Iterable[bytes]) -> None:
        """Drop these transactions (committed, or no longer held by the mempool)."""
        for tx in txs:
            if self._entries.pop(tx, None) is not None:
                self._bytes -= 2 * len(tx)

    def _entry(self, tx: bytes) -> _Entry:
        """The memo entry of an authentic `tx`; raises RejectedError for any other."""
        entry = self._entries.get(tx)
        if entry is not None:
            return entry
        reason = self._rejected.get(tx)
        if reason is not None:
            raise RejectedError(reason)
        try:
            signed = decode_tx(tx)
            verify_tx(signed, self._chain_id)
        except RejectedError as exc:
            self._remember_rejection(tx, str(exc))
            raise
        entry = _Entry(signed)
        self._remember(tx, entry)
        return entry

    def _remember_rejection(self, tx: bytes, reason: str) -> None:
        if len(tx) > REJECTED_TX_BYTES_MAX:
            return
        self._rejected[tx] = reason
        while len(self._rejected) > REJECTED_ENTRIES_MAX:
            self._rejected.popitem(last=False)

    def _remember(self, tx: bytes, entry: _Entry) -> None:
        size = 2 * len(tx)
        if size > self._bytes_max:
            return
        self._entries[tx] = entry
        self._bytes += size
        while len(self._entries) > self._entries_max or self._bytes > self._bytes_max:
            old, _ = self._entries.popitem(last=False)
            self._bytes -= 2 * len(old)
