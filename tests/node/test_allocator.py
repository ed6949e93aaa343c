"""The allocator tuning applies on glibc and is a harmless no-op elsewhere."""

import asyncio
import platform

import pytest

from node.allocator import (
    heap_stats,
    keep_large_buffers_in_heap,
    rss_bytes,
    trim_heap_periodically,
)

MIB = 1 << 20


def test_tuning_takes_effect_where_glibc_runs() -> None:
    applied = keep_large_buffers_in_heap()
    assert applied == (platform.libc_ver()[0] == "glibc")
    assert keep_large_buffers_in_heap() == applied  # idempotent: nodes may call it twice


GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallinfo2 and malloc_trim are glibc's")
def test_heap_stats_tell_memory_in_use_from_memory_held_free() -> None:
    keep_large_buffers_in_heap()
    before = heap_stats()
    assert before is not None
    blocks = [bytearray(1 << 20) for _ in range(48)]
    held = heap_stats()
    assert held is not None
    assert held.in_use_bytes >= before.in_use_bytes + 40 * MIB
    del blocks[::2]
    freed = heap_stats()
    assert freed is not None
    assert freed.in_use_bytes <= held.in_use_bytes - 20 * MIB
    assert freed.python_blocks > 0


@pytest.mark.skipif(not GLIBC, reason="mallinfo2 and malloc_trim are glibc's")
async def test_the_periodic_trim_returns_free_heap_pages() -> None:
    """1 MiB buffers live in the heap (keep_large_buffers_in_heap); freeing every other one
    leaves holes below live memory that only a trim hands back."""
    keep_large_buffers_in_heap()
    blocks = [bytearray(b"x" * (1 << 20)) for _ in range(96)]
    del blocks[::2]
    stats = heap_stats()
    assert stats is not None
    assert stats.free_bytes >= 40 * MIB
    before = rss_bytes()
    trim = asyncio.create_task(trim_heap_periodically(0.01))
    await asyncio.sleep(0.5)
    trim.cancel()
    assert rss_bytes() <= before - 30 * MIB
    assert len(blocks) == 48
