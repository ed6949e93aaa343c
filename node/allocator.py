"""Keep large buffers in the process heap instead of fresh mmap'd pages (glibc only).

A validator allocates and frees buffers of 0.1-20 MB all the time: every FL update (~200 KB),
every msgpack encode of one, every block (16 MiB), every decrypted frame batch.  glibc serves
such sizes with a fresh `mmap` and returns them with `munmap` on free (or trims the heap top back
to the OS), so the next buffer of the same size page-faults in again, one fault per 4 KiB.  On
a virtual machine a fault costs about 2 us: `msgpack.packb` of a 200 KB payload took 116 us
of which 4 us was the copy.  With the thresholds below the freed memory stays in the heap and
is reused: the same call takes 4 us, and the node's system time falls with it
(docs/benchmarks.md, "allocator").

The price is resident memory that is not handed back right away: at most `TRIM_BYTES` of free
heap is kept, far below a validator's working set at scale.  On a C library without `mallopt`
(musl, macOS) this is a no-op.
"""

import ctypes
import ctypes.util

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
