"""Memo of transaction authentication (decode + ed25519 verify), bounded by entries and bytes.

A validator sees each transaction up to four times: check_tx (mempool admission),
prepare_proposal, process_proposal and finalize_block.  Decoding and verifying the signature is
a pure function of the wire bytes and the chain id (fixed for an app), so its result can be
remembered: a hit returns exactly what a fresh computation would, and a miss recomputes it.  The
cache therefore can never change a result or the app hash; it only saves work.

Keys are the wire bytes themselves (dict lookup = exact equality, so no reliance on a hash
being collision free).  Both outcomes are kept: the decoded `SignedTx`, or the rejection
reason, so a flood of one bad transaction costs one verification.  Eviction is first in, first
out once either bound is passed; each entry is charged twice its wire size (the key plus the
decoded body, which holds a copy of the payload).
"""

from collections import OrderedDict

from fl.errors import RejectedError
from fl.txs import SignedTx, decode_tx, verify_tx

ENTRIES_MAX = 50_000
BYTES_MAX = 128 * 1024 * 1024


class AuthCache:
    def __init__(self, chain_id: str, entries_max: int = ENTRIES_MAX, bytes_max: int = BYTES_MAX):
        self._chain_id = chain_id
        self._entries_max = entries_max
        self._bytes_max = bytes_max
        self._entries: OrderedDict[bytes, SignedTx | str] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def chain_id(self) -> str:
        return self._chain_id

    def authenticate(self, tx: bytes) -> SignedTx:
        """decode_tx + verify_tx, memoized; raises RejectedError with the same reason."""
        found = self._entries.get(tx)
        if found is None:
            try:
                found = decode_tx(tx)
                verify_tx(found, self._chain_id)
            except RejectedError as exc:
                found = str(exc)
            self._remember(tx, found)
        if isinstance(found, str):
            raise RejectedError(found)
        return found

    def _remember(self, tx: bytes, result: SignedTx | str) -> None:
        size = 2 * len(tx)
        if size > self._bytes_max:
            return
        self._entries[tx] = result
        self._bytes += size
        while len(self._entries) > self._entries_max or self._bytes > self._bytes_max:
            old, _ = self._entries.popitem(last=False)
            self._bytes -= 2 * len(old)
