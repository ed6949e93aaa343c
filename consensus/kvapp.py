"""A tiny deterministic key-value Application for engine tests, the simulator and benchmarks.

Transactions are `key=value` (sets a key) or `val:<64 hex public key>:<power>` (a validator
update, effective at H+2).  Anything else is rejected by check_tx and makes a proposal invalid.
The app hash after height H is sha256 of the canonical (height, sorted items) array, so equal
histories give equal hashes.  Misbehavior reported in a block is recorded under `slashed/<key>`
once per (validator, height), which lets the simulator see that evidence reached the app.
"""

from collections.abc import Sequence

import msgpack

from consensus.app import (
    AppInfo,
    BlockInfo,
    CheckTxResult,
    FinalizeResult,
    Genesis,
    QueryResult,
    TxResult,
    ValidatorUpdate,
)
from consensus.codec import decode, encode, expect_bytes, expect_int, expect_list, expect_seq
from consensus.crypto import PUBLIC_KEY_BYTES, sha256
from consensus.errors import CodecError

TX_BYTES_MAX = 4096


def _parse(tx: bytes) -> tuple[bytes, bytes] | ValidatorUpdate | None:
    if len(tx) > TX_BYTES_MAX:
        return None
    if tx.startswith(b"val:"):
        parts = tx.split(b":")
        if len(parts) != 3:
            return None
        try:
            key = bytes.fromhex(parts[1].decode())
            power = int(parts[2])
        except (ValueError, UnicodeDecodeError):
            return None
        if len(key) != PUBLIC_KEY_BYTES or not 0 <= power <= 1 << 40:
            return None
        return ValidatorUpdate(key, power)
    key, sep, value = tx.partition(b"=")
    if not sep or not key:
        return None
    return key, value


class KVApp:
    def __init__(self) -> None:
        self._committed: dict[bytes, bytes] = {}
        self._pending: dict[bytes, bytes] | None = None
        self._height = 0
        self._app_hash = b""

    def _hash(self, height: int, items: dict[bytes, bytes]) -> bytes:
        # Keys and values are bytes by construction: msgpack directly, without codec's checks.
        packed: bytes = msgpack.packb([height, [[k, items[k]] for k in sorted(items)]])
        return sha256(packed)

    def init_chain(self, genesis: Genesis) -> tuple[bytes, tuple[ValidatorUpdate, ...]]:
        self._committed = {}
        self._height = genesis.initial_height - 1
        self._app_hash = self._hash(self._height, self._committed)
        return self._app_hash, ()

    def info(self) -> AppInfo:
        return AppInfo(self._height, self._app_hash)

    def check_tx(self, tx: bytes) -> CheckTxResult:
        if _parse(tx) is None:
            return CheckTxResult(code=1, reason="not key=value or val:<key>:<power>")
        return CheckTxResult()

    def release_tx(self, tx: bytes) -> None:
        """Nothing is remembered about a pending tx."""

    def prepare_proposal(
        self, txs: Sequence[bytes], block: BlockInfo, block_bytes_max: int
    ) -> list[bytes]:
        chosen: list[bytes] = []
        size = 0
        for tx in txs:
            if _parse(tx) is None or size + len(tx) > block_bytes_max:
                continue
            chosen.append(tx)
            size += len(tx)
        return chosen

    def process_proposal(self, txs: Sequence[bytes], block: BlockInfo) -> bool:
        return all(_parse(tx) is not None for tx in txs)

    def finalize_block(self, txs: Sequence[bytes], block: BlockInfo) -> FinalizeResult:
        items = dict(self._committed)
        updates: list[ValidatorUpdate] = []
        results = []
        for tx in txs:
            parsed = _parse(tx)
            if parsed is None:
                results.append(TxResult(code=1, reason="malformed"))
            elif isinstance(parsed, ValidatorUpdate):
                updates.append(parsed)
                results.append(TxResult())
            else:
                items[parsed[0]] = parsed[1]
                results.append(TxResult())
        for m in block.misbehavior:
            key = b"slashed/" + m.public_key.hex().encode() + b"/" + str(m.height).encode()
            items.setdefault(key, str(block.height).encode())
        self._pending = items
        self._height = block.height
        self._app_hash = self._hash(block.height, items)
        return FinalizeResult(tuple(results), self._app_hash, tuple(updates))

    def commit(self) -> None:
        if self._pending is not None:
            self._committed = self._pending
            self._pending = None

    def query(self, path: str, data: bytes) -> QueryResult:
        if path != "key":
            return QueryResult(code=1, reason="unknown path")
        value = self._committed.get(data)
        if value is None:
            return QueryResult(code=2, reason="not found", height=self._height)
        return QueryResult(value=value, height=self._height)

    def items(self) -> dict[bytes, bytes]:
        return dict(self._committed)

    def snapshot(self) -> bytes:
        items = self._committed
        return encode([self._height, self._app_hash, [[k, items[k]] for k in sorted(items)]])

    def restore(self, snapshot: bytes) -> None:
        f = expect_list(decode(snapshot), 3, "kv snapshot")
        items: dict[bytes, bytes] = {}
        for item in expect_seq(f[2], "kv snapshot items", 10_000_000):
            pair = expect_list(item, 2, "kv item")
            items[expect_bytes(pair[0], "kv key")] = expect_bytes(pair[1], "kv value")
        height = expect_int(f[0], "kv height", 0)
        app_hash = expect_bytes(f[1], "kv app hash", size_max=32)
        if self._hash(height, items) != app_hash:
            raise CodecError("kv snapshot: app hash does not match its items")
        self._committed, self._height, self._app_hash, self._pending = items, height, app_hash, None
