"""The allocator tuning applies on glibc and is a harmless no-op elsewhere."""

import platform

from node.allocator import keep_large_buffers_in_heap


def test_tuning_takes_effect_where_glibc_runs() -> None:
    applied = keep_large_buffers_in_heap()
    assert applied == (platform.libc_ver()[0] == "glibc")
    assert keep_large_buffers_in_heap() == applied  # idempotent: nodes may call it twice
