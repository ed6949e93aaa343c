"""Counters for every drop, rejection and notable event of the stack (exported as metrics).

A plain mapping from a stable event name to a count; the node's metrics module reads
`snapshot()`.  Incrementing also logs at debug level so that no drop is silent.
"""

import logging
from collections import Counter

from node.logging import log_event

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
        log_event(log, "p2p_drop", logging.DEBUG, name=name, peer=str(peer), reason=reason)

    def get(self, name: str) -> int:
        return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self._counts.items()))
