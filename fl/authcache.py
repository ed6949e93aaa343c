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
being collision free).  Both outcomes are kept: the decoded `SignedTx`, or the rejection
reason, so a flood of one bad transaction costs one verification.  Eviction is first in, first
out once either bound is passed; each entry is charged twice its wire size (the key plus the
decoded body, which holds a copy of the payload).  The byte bound must exceed what the mempool
holds (512 MiB by default), or a full mempool's recheck evicts entries it is about to need and
every recheck verifies every signature again; committed transactions are dropped (`forget`), so
in steady state the memo holds about the mempool.
"""

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from fl.errors import RejectedError
from fl.txs import SignedTx, decode_tx, verify_tx
from fl.updates import Measured, measure

ENTRIES_MAX = 50_000
BYTES_MAX = 1280 * 1024 * 1024  # 2 x (512 MiB mempool + headroom)


@dataclass(slots=True)
class _Entry:
    result: SignedTx | str  # the authenticated transaction, or the rejection reason
    measured: Measured | str | None = None  # an update's measurement or rejection, on request


class AuthCache:
    def __init__(self, chain_id: str, entries_max: int = ENTRIES_MAX, bytes_max: int = BYTES_MAX):
        self._chain_id = chain_id
        self._entries_max = entries_max
        self._bytes_max = bytes_max
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def chain_id(self) -> str:
        return self._chain_id

    def authenticate(self, tx: bytes) -> SignedTx:
        """decode_tx + verify_tx, memoized; raises RejectedError with the same reason."""
        result = self._entry(tx).result
        if isinstance(result, str):
            raise RejectedError(result)
        return result

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
        """Drop these transactions (committed: no one will ask about them again)."""
        for tx in txs:
            if self._entries.pop(tx, None) is not None:
                self._bytes -= 2 * len(tx)

    def _entry(self, tx: bytes) -> _Entry:
        entry = self._entries.get(tx)
        if entry is None:
            result: SignedTx | str
            try:
                result = decode_tx(tx)
                verify_tx(result, self._chain_id)
            except RejectedError as exc:
                result = str(exc)
            entry = _Entry(result)
            self._remember(tx, entry)
        return entry

    def _remember(self, tx: bytes, entry: _Entry) -> None:
        size = 2 * len(tx)
        if size > self._bytes_max:
            return
        self._entries[tx] = entry
        self._bytes += size
        while len(self._entries) > self._entries_max or self._bytes > self._bytes_max:
            old, _ = self._entries.popitem(last=False)
            self._bytes -= 2 * len(old)
