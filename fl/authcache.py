"""Memo of transaction authentication (decode + ed25519 verify), bounded by entries and bytes.

A validator sees each transaction up to four times: check_tx (mempool admission),
prepare_proposal, process_proposal and finalize_block.  Decoding and verifying the signature is
a pure function of the wire bytes and the chain id (fixed for an app), so its result can be
remembered: a hit returns exactly what a fresh computation would, and a miss recomputes it.  The
cache therefore can never change a result or the app hash; it only saves work.

The transaction's sha256 (its id, which check_tx and finalize_block both need) is memoized
in the same entry, computed on first request.

Keys are the wire bytes themselves (dict lookup = exact equality, so no reliance on a hash
being collision free).  Both outcomes are kept: the decoded `SignedTx`, or the rejection
reason, so a flood of one bad transaction costs one verification.  Eviction is first in, first
out once either bound is passed; each entry is charged twice its wire size (the key plus the
decoded body, which holds a copy of the payload).
"""

from collections import OrderedDict
from dataclasses import dataclass

from consensus.crypto import sha256
from fl.errors import RejectedError
from fl.txs import SignedTx, decode_tx, verify_tx

ENTRIES_MAX = 50_000
BYTES_MAX = 128 * 1024 * 1024


@dataclass(slots=True)
class _Entry:
    result: SignedTx | str  # the authenticated transaction, or the rejection reason
    digest: bytes = b""  # sha256 of the wire bytes, filled on first request


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

    def digest(self, tx: bytes) -> bytes:
        """sha256(tx), memoized with the transaction's entry."""
        entry = self._entry(tx)
        if not entry.digest:
            entry.digest = sha256(tx)
        return entry.digest

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
