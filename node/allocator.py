"""Keep large buffers in the process heap instead of fresh mmap'd pages (glibc only).

A validator allocates and frees buffers of 0.1-20 MB all the time: every FL update (~200 KB),
every msgpack encode of one, every block (16 MiB), every decrypted frame batch.  glibc serves
such sizes with a fresh `mmap` and returns them with `munmap` on free (or trims the heap top back
to the OS), so the next buffer of the same size page-faults in again, one fault per 4 KiB.  On
a virtual machine a fault costs about 2 us: `msgpack.packb` of a 200 KB payload took 116 us
of which 4 us was the copy.  With the thresholds below the freed memory stays in the heap and
is reused: the same call takes 4 us, and the node's system time falls with it
(docs/benchmarks.md, "allocator").

The price is resident memory that is not handed back right away.  glibc returns heap memory
to the OS only from the top of the heap, and only when more than `TRIM_BYTES` is free there;
free chunks below a live allocation stay resident.  Measured after a peer made a node buffer
~1 GB and left (tests/adversarial/test_memory_attacks.py): no Python object survived
(tracemalloc: 30 MiB traced, no streams, sessions or buffers left), yet RSS stayed at 1,088 MB,
and the next such peer added most of it again (67 -> 569 -> 1,009 -> 1,450 MiB over three
rounds in issue 13): the freed chunks were fragmented between small long-lived objects the
node allocated meanwhile.  `malloc_trim(0)` hands such free pages back (madvise) wherever they
are: 1,088 -> 78 MB in 37-80 ms.  `FreeMemoryReleaser` does that, in a worker thread (ctypes
drops the GIL) and at most once per interval, after a connection that held a lot of memory
closes (node/p2p/session.py).  On a C library without `mallopt` (musl, macOS) all of this is
a no-op.

Freed memory that no single large free announces stays too: a mempool flood's thousands of
small txs, a burst of peer messages.  Each such episode left a validator a few MiB larger for
good in the 30-minute soak (scripts/bench_soak.py), while the heap's bytes in use
(`heap_stats`, exported as metrics) came back down.  So the node also trims every
`memory.trim_interval_ms` (`trim_heap_periodically`): 6-14 ms of a worker thread for a 200 MiB
heap.  It trims whatever the heap's free figure says: that figure counts free chunks whose
pages are already returned or never touched (a validator at 80 MiB RSS reports ~90 MiB free),
so it cannot tell when a trim would pay.
"""

import asyncio
import ctypes
import ctypes.util
import logging
import os
import sys
from dataclasses import dataclass

from node.logging import log_event

log = logging.getLogger(__name__)

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")

# mallopt parameter numbers from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's own ceiling for the dynamic threshold
TRIM_BYTES = 256 * 1024 * 1024
TOP_PAD_BYTES = 16 * 1024 * 1024


def keep_large_buffers_in_heap() -> bool:
    """Tune glibc malloc for a process that churns large buffers; False if not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and mallopt(_M_TRIM_THRESHOLD, TRIM_BYTES)
        and mallopt(_M_TOP_PAD, TOP_PAD_BYTES)
    )


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (2.33+): every field a size_t, summed over all arenas."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes the heaps took from the OS with brk/mmap (not counting hblkhd)
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in chunks served by their own mmap (freed back at once)
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in chunks in use
            "fordblks",  # bytes in free chunks the heaps still hold: what a trim can return
            "keepcost",
        )
    ]


@dataclass(frozen=True, slots=True)
class HeapStats:
    """What the C heap holds, and what Python's own allocator has handed out.

    RSS alone cannot tell a leak from memory that was freed but not returned: a leak grows
    `in_use_bytes` or `python_blocks`; retained free memory grows only `free_bytes`."""

    in_use_bytes: int
    free_bytes: int
    python_blocks: int


def heap_stats() -> HeapStats | None:
    """The process's heap figures (glibc `mallinfo2`), or None on another C library."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.argtypes = ()
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return HeapStats(
        in_use_bytes=info.uordblks + info.hblkhd,
        free_bytes=info.fordblks,
        python_blocks=sys.getallocatedblocks(),
    )


def release_free_memory() -> bool:
    """Return free heap pages to the OS (glibc `malloc_trim(0)`); False if not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    trim(0)
    return True


class FreeMemoryReleaser:
    """Runs `release_free_memory` in a worker thread after large frees, rate-limited.

    The trim runs `delay_s` after the call: the buffers of a closed connection are dropped
    only once the tasks reading them have seen the error, a few loop turns later."""

    __slots__ = ("_last_s", "delay_s", "interval_s", "pending", "releases", "threshold_bytes")

    def __init__(
        self,
        threshold_bytes: int = 32 * 1024 * 1024,
        interval_s: float = 5.0,
        delay_s: float = 0.5,
    ) -> None:
        self.threshold_bytes = threshold_bytes
        self.interval_s = interval_s
        self.delay_s = delay_s
        self._last_s = float("-inf")
        self.pending: asyncio.TimerHandle | asyncio.Future[bool] | None = None
        self.releases = 0

    def freed(self, n_bytes: int) -> None:
        """`n_bytes` of buffers were just let go (call from the event loop)."""
        if n_bytes < self.threshold_bytes:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - self._last_s < self.interval_s:
            return
        self._last_s = now
        self.releases += 1
        log_event(log, "memory_release", logging.DEBUG, freed_bytes=n_bytes)
        self.pending = loop.call_later(self.delay_s, self._start, loop)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pending = loop.run_in_executor(None, release_free_memory)


async def trim_heap_periodically(interval_s: float) -> None:
    """Every `interval_s`, hand the heap's free pages back to the OS."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval_s)
        before = rss_bytes()
        if not await loop.run_in_executor(None, release_free_memory):
            return  # not glibc: nothing to trim
        log_event(
            log,
            "memory_trimmed",
            logging.DEBUG,
            rss_before_bytes=before,
            rss_after_bytes=rss_bytes(),
        )


def rss_bytes() -> int:
    """This process's resident set size (/proc/self/statm); 0 where that is unavailable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return 0
