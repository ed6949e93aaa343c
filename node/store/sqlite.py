"""The block store: blocks, commits, block results, the tx index and app snapshots in SQLite.

Durability order for height H (the recovery contract of design section 3):
    1. `save_block(H, ...)`   block bytes, its commit, results and tx index in ONE transaction;
    2. the app's `commit()`   runs only after that transaction is durable;
    3. `save_snapshot(H, …)`  every N heights, the app's canonical state.
On restart the node restores the newest snapshot S <= H and replays blocks S+1..H through the
app, so a crash anywhere in this sequence loses nothing and repeats nothing twice visibly.

SQLite runs in WAL journal mode; with `fsync=True` every transaction is synchronous=FULL, i.e.
fsynced before `save_block` returns.  Block bodies live in `blocks.dat` beside the database
(node/store/blockfile.py: one write per body instead of SQLite's overflow pages, written twice);
the `blocks` row holds their offset and length and is committed after the body is durable.
The store only holds bytes: the consensus codec owns the formats of blocks and commits.
"""

import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from node.errors import StorageError
from node.store.blockfile import BlockFile

_BLOCK_COLUMNS = (
    "height, hash, data_offset, data_len, commit_data, results, app_hash, time_ms, tx_count"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    data_offset INTEGER NOT NULL,
    data_len INTEGER NOT NULL,
    commit_data BLOB NOT NULL,
    results BLOB NOT NULL,
    app_hash BLOB NOT NULL,
    time_ms INTEGER NOT NULL,
    tx_count INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS blocks_by_hash ON blocks(hash);
CREATE TABLE IF NOT EXISTS txs (
    hash BLOB PRIMARY KEY,
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    code INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    height INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""

SNAPSHOTS_KEPT = 2


@dataclass(frozen=True, slots=True)
class TxLocation:
    hash: bytes
    height: int
    index: int
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class StoredBlock:
    height: int
    hash: bytes
    data: bytes
    commit_data: bytes
    results: bytes
    app_hash: bytes
    time_ms: int
    tx_count: int


@dataclass(frozen=True, slots=True)
class IndexedTx:
    hash: bytes
    code: int
    reason: str


class BlockStore:
    """One SQLite connection, used only from the node's event-loop thread."""

    def __init__(self, path: Path, fsync: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
            # Reads (RPC, block sync, recovery) use their own connection: in WAL mode they see
            # the last committed state and never wait behind the writer thread's transaction.
            self._rdb = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{path}: cannot open block store: {exc}") from None
        self._path = path
        self._bodies = BlockFile(path.with_name(path.stem + ".dat"), fsync)
        row = self._rdb.execute("SELECT MAX(data_offset + data_len) FROM blocks").fetchone()
        self._bodies.truncate_to(int(row[0]) if row and row[0] is not None else 0)
        self._height = self._query_height()

    @property
    def height(self) -> int:
        """The highest stored height (0 when empty)."""
        return self._height

    def _query_height(self) -> int:
        row = self._rdb.execute("SELECT MAX(height) FROM blocks").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def base_height(self) -> int:
        row = self._rdb.execute("SELECT MIN(height) FROM blocks").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def save_block(
        self,
        height: int,
        block_hash: bytes,
        data: bytes,
        commit_data: bytes,
        results: bytes,
        app_hash: bytes,
        time_ms: int,
        txs: Sequence[IndexedTx],
        meta: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Store block `height` with its commit, results, tx index and node-state records
        (`meta`, e.g. the consensus state for the next height) in one durable transaction."""
        if self._height and height != self._height + 1:
            raise StorageError(f"save_block({height}) after height {self._height}: heights skip")
        offset = self._bodies.append(data)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    height,
                    block_hash,
                    offset,
                    len(data),
                    commit_data,
                    results,
                    app_hash,
                    time_ms,
                    len(txs),
                ),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO txs VALUES (?, ?, ?, ?, ?)",
                [(t.hash, height, i, t.code, t.reason) for i, t in enumerate(txs)],
            )
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta))
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._rollback()
            self._bodies.truncate_to(offset)
            raise StorageError(f"{self._path}: cannot store block {height}: {exc}") from None
        self._height = height

    def replace_commit(self, height: int, commit_data: bytes) -> None:
        """Keep the commit that block H+1 carries (the canonical one) in place of the seen one."""
        self._db.execute(
            "UPDATE blocks SET commit_data = ? WHERE height = ?", (commit_data, height)
        )

    def block(self, height: int) -> StoredBlock | None:
        row = self._rdb.execute(
            f"SELECT {_BLOCK_COLUMNS} FROM blocks WHERE height = ?",
            (height,),
        ).fetchone()
        return self._stored(row)

    def block_by_hash(self, block_hash: bytes) -> StoredBlock | None:
        row = self._rdb.execute(
            f"SELECT {_BLOCK_COLUMNS} FROM blocks WHERE hash = ?",
            (block_hash,),
        ).fetchone()
        return self._stored(row)

    def blocks(self, start: int, count_max: int, bytes_max: int) -> list[StoredBlock]:
        """Consecutive blocks from `start`, at most `count_max` and about `bytes_max` in total."""
        out: list[StoredBlock] = []
        total = 0
        cursor = self._rdb.execute(
            f"SELECT {_BLOCK_COLUMNS} FROM blocks WHERE height >= ? ORDER BY height LIMIT ?",
            (start, count_max),
        )
        for row in cursor:
            block = self._stored(row)
            if block is None:
                break
            total += len(block.data) + len(block.commit_data)
            if out and total > bytes_max:
                break
            out.append(block)
        return out

    def tx(self, tx_hash: bytes) -> TxLocation | None:
        row = self._rdb.execute(
            "SELECT hash, height, idx, code, reason FROM txs WHERE hash = ?", (tx_hash,)
        ).fetchone()
        if row is None:
            return None
        return TxLocation(bytes(row[0]), int(row[1]), int(row[2]), int(row[3]), str(row[4]))

    def has_tx(self, tx_hash: bytes) -> bool:
        return (
            self._rdb.execute("SELECT 1 FROM txs WHERE hash = ?", (tx_hash,)).fetchone() is not None
        )

    def save_snapshot(self, height: int, data: bytes) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?)", (height, data))
            self._db.execute(
                "DELETE FROM snapshots WHERE height NOT IN "
                "(SELECT height FROM snapshots ORDER BY height DESC LIMIT ?)",
                (SNAPSHOTS_KEPT,),
            )
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._rollback()
            raise StorageError(f"{self._path}: cannot store snapshot {height}: {exc}") from None

    def latest_snapshot(self) -> tuple[int, bytes] | None:
        row = self._rdb.execute(
            "SELECT height, data FROM snapshots ORDER BY height DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def get_meta(self, key: str) -> bytes | None:
        row = self._rdb.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def close(self) -> None:
        self._rdb.close()
        self._db.close()
        self._bodies.close()

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.DatabaseError):
            self._db.execute("ROLLBACK")

    def _stored(self, row: tuple[object, ...] | None) -> StoredBlock | None:
        if row is None:
            return None
        height, block_hash, offset, length, commit_data, results, app_hash, time_ms, txs = row
        return StoredBlock(
            height=int(height),  # type: ignore[call-overload]
            hash=bytes(block_hash),  # type: ignore[call-overload]
            data=self._bodies.read(int(offset), int(length)),  # type: ignore[call-overload]
            commit_data=bytes(commit_data),  # type: ignore[call-overload]
            results=bytes(results),  # type: ignore[call-overload]
            app_hash=bytes(app_hash),  # type: ignore[call-overload]
            time_ms=int(time_ms),  # type: ignore[call-overload]
            tx_count=int(txs),  # type: ignore[call-overload]
        )
