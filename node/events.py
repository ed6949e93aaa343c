"""The node's event bus: committed blocks, tx results and app events, fanned out to subscribers.

Each subscriber (a WebSocket client) owns a bounded queue.  A subscriber that falls behind by
more than its queue is cut off with a reason instead of slowing the node or silently missing
events: `Subscription.overflowed` is set and its reader closes the connection.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Subscription:
    queue: asyncio.Queue[dict[str, Any]]
    kinds: frozenset[str] = frozenset()
    overflowed: bool = False
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    evicted: bool = False  # its slot went to a newer client (node/rpc/server.py)


class EventBus:
    def __init__(self, subscribers_max: int, queue_events_max: int) -> None:
        self._subscribers: list[Subscription] = []
        self._subscribers_max = subscribers_max
        self._queue_max = queue_events_max

    def subscribe(self, kinds: frozenset[str] = frozenset()) -> Subscription | None:
        if len(self._subscribers) >= self._subscribers_max:
            return None
        sub = Subscription(queue=asyncio.Queue(self._queue_max), kinds=kinds)
        self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    def publish(self, event: dict[str, Any]) -> None:
        kind = str(event.get("event", ""))
        for sub in list(self._subscribers):
            if sub.kinds and kind not in sub.kinds:
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.overflowed = True
                sub.wakeup.set()
                self.unsubscribe(sub)

    def __len__(self) -> int:
        return len(self._subscribers)
