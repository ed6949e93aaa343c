"""Counters for every drop, rejection and notable event of the stack (exported as metrics).

A plain mapping from a stable event name to a count; the node's metrics module reads
`snapshot()`.  Incrementing also logs at debug level so that no drop is silent.
"""

import logging
from collections import Counter

log = logging.getLogger(__name__)


class Counters:
    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def inc(self, name: str, amount: int = 1) -> None:
        self._counts[name] += amount

    def drop(self, name: str, reason: str, amount: int = 1, peer: str = "") -> None:
        """Count a dropped message/frame/connection and log why."""
        self._counts[name] += amount
        log.debug("p2p_drop name=%s peer=%s reason=%.200s", name, peer, reason)

    def get(self, name: str) -> int:
        return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self._counts.items()))
