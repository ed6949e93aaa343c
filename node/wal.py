"""The consensus write-ahead log: every input the engine consumes, in order, before it is applied.

Theory of operation
-------------------
The file is a header (`FCWAL1\\n` plus zero padding to 8 bytes) followed by records:

    u32 big-endian payload length | u32 big-endian CRC32(payload) | payload

A payload is opaque to this module except for the EndHeight marker (`ENDHEIGHT_PREFIX` + u64
height), written after block H is durably stored.  On restart the node replays the records
after the last EndHeight marker into a fresh engine for height H+1, which rebuilds its locks
and votes exactly; the engine's own signatures are fsynced (`append(..., sync=True)`) before
the message leaves the process, peers' messages are appended without waiting for the disk.
The LastSigned guard is a record here too, so one fsync makes both durable before a send.

Damage is classified by where it is:
- a torn tail (a header cut short, a length past end of file, or a bad checksum on the very
  last record) is what a crash mid-append leaves: the file is truncated to the last good record
  and the node continues — nothing after that point was ever acted upon durably;
- a bad checksum or impossible length with more data after it is corruption in the middle:
  `WalCorruptError` names the offset and the node refuses to start, because replaying around a
  hole could make it sign something it already contradicted.

The log is rewritten (temp file, fsync, rename) to just the latest EndHeight marker once it
grows past `rotate_bytes`, so its size stays bounded by about one height of traffic.
"""

import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from node.errors import WalCorruptError
from node.keys import fsync_dir

MAGIC = b"FCWAL1\n\x00"
_HEADER = struct.Struct(">II")
ENDHEIGHT_PREFIX = b"\x00FC-ENDHEIGHT\x00"
_HEIGHT = struct.Struct(">Q")
RECORD_BYTES_MAX = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class WalRecovery:
    """What opening the log found: the last EndHeight, the records after it, and any repair."""

    last_end_height: int
    pending: tuple[bytes, ...]
    repaired_bytes: int
    # Every record in the file, oldest first (the shell finds its last LastSigned here).
    records: tuple[bytes, ...] = ()


def end_height_payload(height: int) -> bytes:
    return ENDHEIGHT_PREFIX + _HEIGHT.pack(height)


def parse_end_height(payload: bytes) -> int | None:
    if len(payload) == len(ENDHEIGHT_PREFIX) + _HEIGHT.size and payload.startswith(
        ENDHEIGHT_PREFIX
    ):
        (height,) = _HEIGHT.unpack_from(payload, len(ENDHEIGHT_PREFIX))
        return int(height)
    return None


def _scan(data: bytes, path: Path) -> tuple[list[bytes], int]:
    """Records of `data` and the offset where valid data ends (== len(data) if undamaged)."""
    if len(data) < len(MAGIC):
        return [], 0
    if data[: len(MAGIC)] != MAGIC:
        raise WalCorruptError(f"{path}: not a fedchain WAL (bad magic)")
    records: list[bytes] = []
    offset = len(MAGIC)
    end = len(data)
    while offset < end:
        if end - offset < _HEADER.size:
            return records, offset  # torn header
        length, crc = _HEADER.unpack_from(data, offset)
        body_start = offset + _HEADER.size
        if length > RECORD_BYTES_MAX:
            if body_start >= end:
                return records, offset
            raise WalCorruptError(
                f"{path}: record at offset {offset} declares {length} bytes "
                f"(max {RECORD_BYTES_MAX}); the log is corrupt, refusing to start"
            )
        body_end = body_start + length
        if body_end > end:
            return records, offset  # torn body
        payload = data[body_start:body_end]
        if zlib.crc32(payload) != crc:
            if body_end == end:
                return records, offset  # torn last record
            raise WalCorruptError(
                f"{path}: checksum mismatch in the record at offset {offset} with "
                f"{end - body_end} bytes after it; the log is corrupt in the middle, refusing "
                "to start (move the file away only if you know this validator never signed "
                "at the current height)"
            )
        records.append(payload)
        offset = body_end
    return records, offset


class Wal:
    """An append-only consensus log owned by the single consensus task (no locking)."""

    def __init__(self, path: Path, rotate_bytes: int = 64 * 1024 * 1024) -> None:
        self._path = path
        self._rotate_bytes = rotate_bytes
        self._fd = -1
        self._size = 0

    @property
    def path(self) -> Path:
        return self._path

    def open(self) -> WalRecovery:
        """Open (creating if needed), repair a torn tail, and return what must be replayed."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        data = self._path.read_bytes() if self._path.exists() else b""
        records, valid_end = _scan(data, self._path)
        repaired = 0
        if not data:
            self._write_fresh([])
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
        )

    def append(self, payload: bytes, sync: bool = False) -> None:
        if self._fd < 0:
            raise WalCorruptError("WAL used before open()")
        if len(payload) > RECORD_BYTES_MAX:
            raise WalCorruptError(f"WAL record of {len(payload)} bytes exceeds {RECORD_BYTES_MAX}")
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        _write_all(self._fd, record)
        self._size += len(record)
        if sync:
            os.fsync(self._fd)

    def sync(self) -> None:
        os.fsync(self._fd)

    def end_height(self, height: int, carry: Sequence[bytes] = ()) -> None:
        """Mark `height` stored; rotate the file if it has grown past its budget.

        The marker is not fsynced on its own: losing it only makes recovery skip records of a
        height the block store already has.  On rotation the fresh file starts with `carry`
        (records that must outlive the height, e.g. the last LastSigned) and the marker.
        """
        self.append(end_height_payload(height))
        if self._size > self._rotate_bytes:
            self._rotate(height, carry)

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
        body = MAGIC + b"".join(_HEADER.pack(len(p), zlib.crc32(p)) + p for p in payloads)
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
