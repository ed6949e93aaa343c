"""In-memory Wal and Store ports: the simulator's (and the tests') disk, in the real WAL format.

Both call `boundary(name)` before each durability step, so a crash-point test can stop a node
exactly there (the hook raises); `crash(keep_unsynced)` then says what survives: the synced WAL
prefix plus `keep_unsynced` bytes of what was appended after it (a torn tail when that cuts a
record), and every store write that had completed.
"""

from collections.abc import Callable, Sequence

from consensus.driver.ports import Decided
from consensus.driver.walformat import MAGIC, end_height_payload, frame, scan

Boundary = Callable[[str], None]


def _no_crash(_name: str) -> None:
    return None


class MemoryWal:
    def __init__(self, rotate_bytes: int = 64 * 1024, boundary: Boundary = _no_crash) -> None:
        self.data = bytearray(MAGIC)
        self.synced = len(MAGIC)
        self.rotate_bytes = rotate_bytes
        self.boundary = boundary
        self.syncs = 0

    def append(self, payload: bytes) -> None:
        self.boundary("wal_append")
        self.data += frame(payload)

    def sync(self) -> None:
        self.boundary("wal_sync")
        self.synced = len(self.data)
        self.syncs += 1

    def end_height(self, height: int, carry: Sequence[bytes], may_rotate: bool) -> None:
        self.append(end_height_payload(height))
        if may_rotate and self.rotation_due():
            self.boundary("wal_rotate")
            # A rename of a fully written, fsynced file: atomic.
            self.data = bytearray(
                MAGIC + b"".join(frame(p) for p in [*carry, end_height_payload(height)])
            )
            self.synced = len(self.data)

    def rotation_due(self) -> bool:
        return len(self.data) > self.rotate_bytes

    def crash(self, keep_unsynced: int) -> None:
        keep = self.synced + max(0, min(keep_unsynced, len(self.data) - self.synced))
        del self.data[keep:]

    def open(self) -> list[bytes]:
        """Restart: the records, the torn tail cut off (as the daemon's Wal.open does)."""
        records, valid_end = scan(bytes(self.data), "memory wal")
        del self.data[max(valid_end, len(MAGIC)) :]
        self.synced = len(self.data)
        return records

    def wipe(self) -> None:
        self.data = bytearray(MAGIC)
        self.synced = len(MAGIC)


class MemoryStore:
    """Saves complete "in the background": durable once `wait_stored` or `settle` says so."""

    def __init__(self, boundary: Boundary = _no_crash) -> None:
        self.durable: list[Decided] = []
        self.pending: list[Decided] = []
        self.boundary = boundary

    @property
    def blocks(self) -> list[Decided]:
        """Everything written, durable or not (what the node serves and has executed)."""
        return [*self.durable, *self.pending]

    def save_block(self, decided: Decided) -> None:
        self.boundary("store_write")
        self.pending.append(decided)

    def settle(self) -> None:
        """The background writer finished everything handed to it."""
        if self.pending:
            self.boundary("store_background")
            self.durable.extend(self.pending)
            self.pending = []

    def wait_stored(self) -> None:
        self.settle()

    def durable_height(self) -> int:
        return self.durable[-1].height if self.durable else 0

    def crash(self, completed: bool) -> None:
        if completed:
            self.durable.extend(self.pending)
        self.pending = []
