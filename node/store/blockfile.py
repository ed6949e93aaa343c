"""Block bodies in one append-only file; the SQLite store keeps where each one is.

Why not a BLOB column: SQLite writes a 16 MiB block body as 4 KiB overflow pages, first into its
WAL and again at checkpoint, which cost 35-50 ms of CPU per block on every validator (and
~180 ms at 64 MiB) -- at 1,000 FL updates per round, a second of a validator's time went to the
copies.  Here a body is one positioned write (and one fsync when the store fsyncs).

Crash safety: `append` makes the bytes durable before the caller commits the SQLite row that
points at them, so a committed row never points past the end of durable data.  A crash between
the two leaves bytes that no row names; `open` cuts the file back to the end of the last
committed body (`truncate_to`), so the next append reuses the space.

Damage (a file cut short by a broken disk or an operator, a flipped byte) is the store's to
detect: each row carries its body's sha256, and `read` returns what the file holds, short or
not, for the store to check.
"""

import os
from pathlib import Path

from node.errors import StorageError


class BlockFile:
    """Appends from one writer thread; reads (os.pread) from any thread."""

    def __init__(self, path: Path, fsync: bool) -> None:
        self._path = path
        self._fsync = fsync
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            self._end = os.fstat(self._fd).st_size
        except OSError as exc:
            raise StorageError(f"{path}: cannot open block file: {exc}") from None

    @property
    def end(self) -> int:
        return self._end

    def truncate_to(self, end: int) -> None:
        """Drop bytes past `end` (written but never committed, or the bodies of blocks rolled
        back).  A file already shorter than `end` is left as it is: its lost tail is damage the
        store reports (BlockStore.verify_tail), and the next append goes at the real end."""
        if end < self._end:
            try:
                os.ftruncate(self._fd, end)
            except OSError as exc:
                raise StorageError(f"{self._path}: cannot truncate: {exc}") from None
            self._end = end

    def append(self, data: bytes) -> int:
        """Write `data` at the end (durable if fsync is on) and return its offset."""
        offset = self._end
        try:
            view = memoryview(data)
            written = 0
            while written < len(data):
                written += os.pwrite(self._fd, view[written:], offset + written)
            if self._fsync:
                os.fsync(self._fd)
        except OSError as exc:
            raise StorageError(f"{self._path}: cannot append a block body: {exc}") from None
        self._end = offset + len(data)
        return offset

    def read(self, offset: int, length: int) -> bytes:
        """The bytes at [offset, offset + length), fewer if the file ends before."""
        try:
            return os.pread(self._fd, length, offset)
        except OSError as exc:
            raise StorageError(f"{self._path}: cannot read a block body: {exc}") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
