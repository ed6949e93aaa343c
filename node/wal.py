"""The consensus write-ahead log file: the daemon's Wal port (consensus/driver/ports.py).

The record format (CRC32 frames, torn-tail and mid-file rules) is consensus/driver/walformat.py,
shared with the simulator; this module is the file around it: open (repairing a torn tail by
truncating it, refusing to start on corruption in the middle), append, fsync, and rotation.

What is replayed, and why the order of durability makes that safe, is consensus/driver/replay.py.
The log is rewritten (temp file, fsync, rename) to the records the driver says must outlive it
(the last LastSigned) plus the newest EndHeight marker once it grows past `rotate_bytes`; the
driver only allows that at the start of a height whose predecessor is durably stored, so the
size stays bounded by about one height of traffic.
"""

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from consensus.driver.walformat import (
    MAGIC,
    RECORD_BYTES_MAX,
    WalFormatError,
    end_height_payload,
    frame,
    parse_end_height,
    scan,
)
from node.errors import WalCorruptError
from node.keys import fsync_dir

__all__ = [
    "MAGIC",
    "RECORD_BYTES_MAX",
    "Wal",
    "WalRecovery",
    "end_height_payload",
    "parse_end_height",
]


@dataclass(frozen=True, slots=True)
class WalRecovery:
    """What opening the log found: the last EndHeight, the records after it, and any repair."""

    last_end_height: int
    pending: tuple[bytes, ...]
    repaired_bytes: int
    # Every record in the file, oldest first (replay selects from all of them by height).
    records: tuple[bytes, ...] = ()
    # The file did not exist or held no record at all (not even its header).
    fresh: bool = False


def _scan(data: bytes, path: Path) -> tuple[list[bytes], int]:
    try:
        return scan(data, str(path))
    except WalFormatError as exc:
        raise WalCorruptError(str(exc)) from None


class Wal:
    """An append-only consensus log owned by the single consensus task (no locking)."""

    # 8 MiB, not more: open() reads the whole file and keeps every record, and the process
    # never returns that memory (soak, docs/benchmarks.md: a restart with a 39 MiB log came up at
    # 180 MiB RSS against 75 MiB with a rotated one).  At ~80 MiB/h of consensus traffic on a
    # 4-validator testnet this rotates every ~6 minutes, each rotation one small rewrite.
    def __init__(self, path: Path, rotate_bytes: int = 8 * 1024 * 1024) -> None:
        self._path = path
        self._rotate_bytes = rotate_bytes
        self._fd = -1
        self._size = 0

    @property
    def path(self) -> Path:
        return self._path

    def open(self, stored_height: int = 0) -> WalRecovery:
        """Open (creating if needed), repair a torn tail, and return what must be replayed.

        `stored_height` is the block store's height: a store with blocks and no log means the
        double-sign guard is gone, and the node must not start."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        data = self._path.read_bytes() if self._path.exists() else b""
        records, valid_end = _scan(data, self._path)
        if stored_height > 0 and not records:
            raise WalCorruptError(
                f"{self._path} is missing or holds no record, but the block store has "
                f"{stored_height} blocks: this validator's double-sign guard (its LastSigned "
                "and signed votes) is gone, and starting could sign twice at a height it "
                "already voted on.  Restore the file from a backup; or, only if this node's "
                "validator key never signed above height "
                f"{stored_height} (e.g. it is a full node), move the data directory away and "
                "let the node block-sync from its peers.  Refusing to start."
            )
        repaired = 0
        if not data:
            # A new log starts with a marker, so "no record at all" means it was lost.
            self._write_fresh([end_height_payload(0)])
        elif valid_end < len(data):
            repaired = len(data) - valid_end
            with self._path.open("r+b") as f:
                f.truncate(max(valid_end, len(MAGIC)))
                if valid_end < len(MAGIC):
                    f.seek(0)
                    f.write(MAGIC)
                f.flush()
                os.fsync(f.fileno())
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size
        last_end = 0
        pending_start = 0
        for i, payload in enumerate(records):
            height = parse_end_height(payload)
            if height is not None:
                last_end = height
                pending_start = i + 1
        return WalRecovery(
            last_end_height=last_end,
            pending=tuple(records[pending_start:]),
            repaired_bytes=repaired,
            records=tuple(records),
            fresh=len(data) < len(MAGIC),
        )

    def append(self, payload: bytes, sync: bool = False) -> None:
        if self._fd < 0:
            raise WalCorruptError("WAL used before open()")
        if len(payload) > RECORD_BYTES_MAX:
            raise WalCorruptError(f"WAL record of {len(payload)} bytes exceeds {RECORD_BYTES_MAX}")
        record = frame(payload)
        _write_all(self._fd, record)
        self._size += len(record)
        if sync:
            os.fsync(self._fd)

    def sync(self) -> None:
        os.fsync(self._fd)

    def end_height(self, height: int, carry: Sequence[bytes] = (), may_rotate: bool = True) -> None:
        """Mark `height` durably stored; rotate the file if it has grown past its budget and the
        caller says nothing of a later height is in it yet (`may_rotate`).

        The marker is not fsynced on its own: losing it only loses a rotation point.  On
        rotation the fresh file starts with `carry` (records that must outlive the height, e.g.
        the last LastSigned) and the marker.
        """
        self.append(end_height_payload(height))
        if may_rotate and self._size > self._rotate_bytes:
            self._rotate(height, carry)

    def rotation_due(self) -> bool:
        return self._size > self._rotate_bytes

    def records(self) -> Iterator[bytes]:
        """Every record currently in the file (for tools and tests)."""
        records, _ = _scan(self._path.read_bytes(), self._path)
        yield from records

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def _rotate(self, height: int, carry: Sequence[bytes]) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._write_fresh([*carry, end_height_payload(height)])
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size

    def _write_fresh(self, payloads: list[bytes]) -> None:
        tmp = self._path.with_name(self._path.name + ".tmp")
        body = MAGIC + b"".join(frame(p) for p in payloads)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._path)
        fsync_dir(self._path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
