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

Integrity.  Each row keeps the sha256 of its body, checked on every read: a body that is cut
short or fails the check raises CorruptBlockError and is never served (`blocks` returns the
intact prefix, so block sync just answers with fewer blocks).  sha256 rather than crc32: it is
only ~1.5x the cost here (15 vs 10 ms per 16 MiB body; zlib's crc32 is the only stdlib CRC,
crc32c would be a new dependency), and it makes a body content-addressed, so `repair_body` can
take a replacement from any untrusted peer and check it without decoding a block.

While the node runs, a body that fails its check on a read is listed in `damaged()` (logged
once); block sync fetches it from a peer, checks it against the committed block and hands it to
`repair_body`, which appends it and points the row at the copy (node/sync.py).

`scrub_next` reads the bodies back one at a time in a worker thread (node/service.py paces it
with `storage.scrub_interval_ms`), so damage in a block nobody reads is found as well.

On start, `recover_tail()` checks the bodies of the newest heights and every row that points
past the end of blocks.dat (a truncated tail); if any is damaged it logs `block_body_damaged`,
rolls the store back to just below the lowest damaged height (rows, tx index, snapshots above
it, and the node-state records `meta` as they were saved with that height: each block's are
kept for the last META_HEIGHTS_KEPT heights) and returns the damaged heights, which block sync
then fetches back from peers with their commits, as it does for any lagging node.
"""

import contextlib
import hashlib
import logging
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from node.errors import CorruptBlockError, StorageError
from node.logging import log_event
from node.store.blockfile import BlockFile

log = logging.getLogger(__name__)

_BLOCK_COLUMNS = (
    "height, hash, data_offset, data_len, commit_data, results, app_hash, time_ms, tx_count, "
    "data_sha256"
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
    tx_count INTEGER NOT NULL,
    data_sha256 BLOB
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
CREATE TABLE IF NOT EXISTS block_meta (
    height INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (height, key)
);
"""

SNAPSHOTS_KEPT = 2
# The node-state records saved with each block (the next height's ChainState, a few KB) are
# kept this many heights back, so damage this deep can be rolled back and fetched again.  More
# than the default snapshot interval (100): recovery replays every block above the snapshot.
META_HEIGHTS_KEPT = 256
# `verify_tail` reads at least this many of the newest bodies on start, and every one above the
# newest app snapshot (recovery would fail on a damaged one of those).
TAIL_VERIFY_HEIGHTS = 16


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
class BlockSummary:
    """A stored block without its body: what /status needs, with no body read or hashed."""

    height: int
    hash: bytes
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
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(blocks)")}
            if "data_sha256" not in columns:  # a store written before body checksums
                self._db.execute("ALTER TABLE blocks ADD COLUMN data_sha256 BLOB")
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
        self._damaged: set[int] = set()
        self._write_lock = threading.Lock()
        # The scrub (`scrub_next`) reads from a worker thread with a connection of its own.
        self._scrub_lock = threading.Lock()
        self._scrub_db: sqlite3.Connection | None = None
        self._closed = False

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
        digest = hashlib.sha256(data).digest()
        with self._write_lock:
            offset = self._bodies.append(data)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    f"INSERT INTO blocks ({_BLOCK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                        digest,
                    ),
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO txs VALUES (?, ?, ?, ?, ?)",
                    [(t.hash, height, i, t.code, t.reason) for i, t in enumerate(txs)],
                )
                self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta))
                self._db.executemany(
                    "INSERT OR REPLACE INTO block_meta VALUES (?, ?, ?)",
                    [(height, key, value) for key, value in meta],
                )
                self._db.execute(
                    "DELETE FROM block_meta WHERE height <= ?", (height - META_HEIGHTS_KEPT,)
                )
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

    def summary(self, height: int) -> BlockSummary | None:
        row = self._rdb.execute(
            "SELECT height, hash, app_hash, time_ms, tx_count FROM blocks WHERE height = ?",
            (height,),
        ).fetchone()
        if row is None:
            return None
        return BlockSummary(int(row[0]), bytes(row[1]), bytes(row[2]), int(row[3]), int(row[4]))

    def commit_data(self, height: int) -> bytes | None:
        """Block `height`'s stored commit, without reading its body."""
        row = self._rdb.execute(
            "SELECT commit_data FROM blocks WHERE height = ?", (height,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def block_by_hash(self, block_hash: bytes) -> StoredBlock | None:
        row = self._rdb.execute(
            f"SELECT {_BLOCK_COLUMNS} FROM blocks WHERE hash = ?",
            (block_hash,),
        ).fetchone()
        return self._stored(row)

    def blocks(self, start: int, count_max: int, bytes_max: int) -> list[StoredBlock]:
        """Consecutive blocks from `start`, at most `count_max` and about `bytes_max` in total.

        Stops before the first damaged body (never raises for one): a peer asking for blocks
        gets the intact prefix and asks someone else for the rest."""
        out: list[StoredBlock] = []
        total = 0
        cursor = self._rdb.execute(
            f"SELECT {_BLOCK_COLUMNS} FROM blocks WHERE height >= ? ORDER BY height LIMIT ?",
            (start, count_max),
        )
        for row in cursor:
            try:
                block = self._stored(row)
            except CorruptBlockError:
                break
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
        # Under the write lock: a body repair (another thread) must not land in this transaction.
        with self._write_lock:
            self._save_snapshot(height, data)

    def _save_snapshot(self, height: int, data: bytes) -> None:
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

    def latest_snapshot_height(self) -> int:
        row = self._rdb.execute("SELECT MAX(height) FROM snapshots").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

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
        # The locks: a repair or a scrub still running in a worker thread finishes first.
        with self._write_lock, self._scrub_lock:
            self._closed = True
            if self._scrub_db is not None:
                self._scrub_db.close()
            self._rdb.close()
            self._db.close()
            self._bodies.close()

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.DatabaseError):
            self._db.execute("ROLLBACK")

    def _stored(self, row: tuple[object, ...] | None) -> StoredBlock | None:
        if row is None:
            return None
        height, block_hash, offset, length, commit_data, results, app_hash, time_ms, txs, digest = (
            row
        )
        data = self._body(
            int(height),  # type: ignore[call-overload]
            int(offset),  # type: ignore[call-overload]
            int(length),  # type: ignore[call-overload]
            None if digest is None else bytes(digest),  # type: ignore[call-overload]
        )
        return StoredBlock(
            height=int(height),  # type: ignore[call-overload]
            hash=bytes(block_hash),  # type: ignore[call-overload]
            data=data,
            commit_data=bytes(commit_data),  # type: ignore[call-overload]
            results=bytes(results),  # type: ignore[call-overload]
            app_hash=bytes(app_hash),  # type: ignore[call-overload]
            time_ms=int(time_ms),  # type: ignore[call-overload]
            tx_count=int(txs),  # type: ignore[call-overload]
        )

    # -- integrity -------------------------------------------------------------------------------
    def _body(self, height: int, offset: int, length: int, digest: bytes | None) -> bytes:
        """Block `height`'s body, checked against its length and sha256 (rows written before
        checksums, `digest` None, are checked for length only)."""
        data = self._bodies.read(offset, length)
        if len(data) != length:
            problem = f"its body is cut short in blocks.dat ({len(data)} of {length} bytes)"
        elif digest is not None and hashlib.sha256(data).digest() != digest:
            problem = "its body in blocks.dat fails its sha256 check"
        else:
            return data
        if height not in self._damaged:
            self._damaged.add(height)
            log_event(log, "block_body_damaged", logging.ERROR, height=height, detail=problem)
        raise CorruptBlockError(height, problem)

    def scrub_next(self, after: int) -> int:
        """Read back the body of the lowest stored height above `after` (past the top: the
        lowest stored one) and return that height, 0 if there is none.  A damaged body is
        logged and listed in `damaged()` like one any read finds, so damage nobody asks for is
        found too.  For a worker thread: it has its own connection and never takes the write
        lock (a 16 MiB body takes ~15 ms to hash)."""
        query = f"SELECT {_BLOCK_COLUMNS} FROM blocks WHERE height > ? ORDER BY height LIMIT 1"
        with self._scrub_lock:
            if self._closed:
                return 0
            if self._scrub_db is None:
                self._scrub_db = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False
                )
            row = self._scrub_db.execute(query, (after,)).fetchone()
            if row is None and after > 0:
                row = self._scrub_db.execute(query, (0,)).fetchone()
            if row is None:
                return 0
            with contextlib.suppress(CorruptBlockError):
                self._stored(row)
            return int(row[0])

    def damaged(self) -> list[int]:
        """Heights whose bodies were found damaged (by reads or verify_tail) and not repaired."""
        return sorted(self._damaged)

    def verify_tail(self, heights_max: int = TAIL_VERIFY_HEIGHTS) -> list[int]:
        """Check the newest `heights_max` bodies, those above the newest snapshot (at most
        META_HEIGHTS_KEPT) and every row pointing past the end of blocks.dat; return the
        damaged heights in ascending order (each logged once)."""
        snapshot = self.latest_snapshot_height()
        depth = max(heights_max, min(self._height - snapshot, META_HEIGHTS_KEPT))
        found: set[int] = set()
        rows = self._rdb.execute(
            f"SELECT {_BLOCK_COLUMNS} FROM blocks WHERE height > ? OR data_offset + data_len > ?"
            " ORDER BY height",
            (self._height - depth, self._bodies.end),
        ).fetchall()
        for row in rows:
            try:
                self._stored(row)
            except CorruptBlockError as exc:
                found.add(exc.height)
        return sorted(found)

    def rollback_to(self, height: int) -> None:
        """Forget every block above `height` (rows, tx index, snapshots and their bodies) and
        restore the node-state records saved with block `height`, as if the node had stopped
        right after storing it.  Block sync then fetches the rest again from peers."""
        if height >= self._height:
            return
        if height < 0:
            raise StorageError(f"rollback_to({height}): heights start at 0")
        restored = self._rdb.execute(
            "SELECT key, value FROM block_meta WHERE height = ?", (height,)
        ).fetchall()
        if height > 0 and not restored:
            raise StorageError(
                f"{self._path}: cannot roll back to height {height}: the node state saved with "
                f"it is not kept (only the last {META_HEIGHTS_KEPT} heights are); delete the "
                "data directory's blocks.* and resync from peers"
            )
        keys = [
            str(r[0])
            for r in self._rdb.execute(
                "SELECT DISTINCT key FROM block_meta WHERE height > ?", (height,)
            )
        ]
        with self._write_lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for table in ("blocks", "txs", "snapshots", "block_meta"):
                    self._db.execute(f"DELETE FROM {table} WHERE height > ?", (height,))
                if height == 0:
                    self._db.executemany("DELETE FROM meta WHERE key = ?", [(k,) for k in keys])
                self._db.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    [(str(k), bytes(v)) for k, v in restored],
                )
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._rollback()
                raise StorageError(f"{self._path}: cannot roll back to {height}: {exc}") from None
            row = self._rdb.execute("SELECT MAX(data_offset + data_len) FROM blocks").fetchone()
            self._bodies.truncate_to(int(row[0]) if row and row[0] is not None else 0)
        self._height = self._query_height()
        self._damaged = {h for h in self._damaged if h <= height}

    def recover_tail(self, heights_max: int = TAIL_VERIFY_HEIGHTS) -> list[int]:
        """On start: find damaged bodies at the tail (verify_tail) and roll the store back to
        just below the lowest one, so the node starts and block sync fetches them again.
        Returns the damaged heights ([] when all is well).  StorageError if the damage reaches
        deeper than the node state kept for rollback."""
        damaged = self.verify_tail(heights_max)
        if damaged:
            top = self._height
            self.rollback_to(damaged[0] - 1)
            log_event(
                log,
                "block_store_rolled_back",
                logging.WARNING,
                height=self._height,
                from_height=top,
                damaged=",".join(str(h) for h in damaged[:16]),
                action="block sync fetches the forgotten blocks again from peers",
            )
        return damaged

    def repair_body(self, height: int, data: bytes, verified: bool = False) -> bool:
        """Replace block `height`'s damaged body with `data` from a peer if its sha256 is the
        one stored with the block (so any peer may supply it); False if it is not.

        `verified`: the caller checked `data` against the committed block id and its canonical
        encoding (node/sync.py committed_body_problem), which fixes the bytes as surely as the
        sha256 does; it is taken even when the row has no sha256 (stored before checksums) or
        one that differs (then the checksum was the damaged part: logged), and the row gets the
        right sha256."""
        digest = hashlib.sha256(data).digest()
        # The writer's connection, under its lock: this runs on a worker thread, and the read
        # connection belongs to the event loop.
        with self._write_lock:
            row = self._db.execute(
                "SELECT data_sha256 FROM blocks WHERE height = ?", (height,)
            ).fetchone()
            if row is None:
                return False
            if row[0] is not None and digest != bytes(row[0]):
                if not verified:
                    return False
                log_event(log, "block_checksum_damaged", logging.ERROR, height=height)
            elif row[0] is None and not verified:
                return False
            offset = self._bodies.append(data)
            self._db.execute(
                "UPDATE blocks SET data_offset = ?, data_len = ?, data_sha256 = ? WHERE height = ?",
                (offset, len(data), digest, height),
            )
        self._damaged.discard(height)
        log_event(log, "block_body_repaired", logging.WARNING, height=height, offset=offset)
        return True
