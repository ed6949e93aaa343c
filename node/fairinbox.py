"""Peers' consensus messages, queued per peer and served round robin.

One shared FIFO let a single byzantine validator bury everyone else's votes: it may sign as
many votes for rounds just ahead as it likes (each valid, each recorded once), and an honest
vote arriving behind thousands of them waited until its round had timed out (a 4-validator
chain went from 16 blocks to 0 in 10 s).  Here each peer has its own bounded queue and the
consensus task takes one message per peer in turn, so an honest message waits behind at most
one message of each other peer, whatever a flooder sends; a flooder's overflow is dropped
before it is even decoded.  A banned peer's queue is purged at once (`purge`).
"""

from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

Peer = TypeVar("Peer", bound=Hashable)
Item = TypeVar("Item")


class FairInbox(Generic[Peer, Item]):
    def __init__(self, per_peer_max: int) -> None:
        self._per_peer_max = per_peer_max
        self._queues: dict[Peer, deque[Item]] = {}
        self._turns: deque[Peer] = deque()  # peers with something queued, in serving order
        self._size = 0
        self.dropped = 0

    def __len__(self) -> int:
        return self._size

    def full(self, peer: Peer) -> bool:
        queue = self._queues.get(peer)
        return queue is not None and len(queue) >= self._per_peer_max

    def put(self, peer: Peer, item: Item) -> bool:
        """Queue `item` for `peer`; False (and counted) when that peer's queue is full."""
        queue = self._queues.get(peer)
        if queue is None:
            queue = self._queues[peer] = deque()
            self._turns.append(peer)
        elif len(queue) >= self._per_peer_max:
            self.dropped += 1
            return False
        queue.append(item)
        self._size += 1
        return True

    def purge(self, peer: Peer) -> int:
        """Drop everything queued for `peer` (banned: what it sent must not be worked off after
        the ban); the number dropped."""
        queue = self._queues.pop(peer, None)
        if queue is None:
            return 0
        self._turns.remove(peer)
        self._size -= len(queue)
        self.dropped += len(queue)
        return len(queue)

    def pop(self) -> Item | None:
        """The next peer's oldest message, or None when nothing is queued."""
        if not self._turns:
            return None
        peer = self._turns.popleft()
        queue = self._queues[peer]
        item = queue.popleft()
        self._size -= 1
        if queue:
            self._turns.append(peer)
        else:
            del self._queues[peer]
        return item
