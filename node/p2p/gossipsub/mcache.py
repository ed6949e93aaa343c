"""The message cache (mcache) and the seen cache.

mcache keeps the encoded messages of the last `history` heartbeats in windows; IHAVE gossip
advertises ids from the newest `gossip` windows and IWANT is answered from any window (each
peer may ask for one message at most `retransmission_max` times).  The seen cache remembers
ids for a TTL so duplicates are recognised; both are purged by time/heartbeat inputs only.
"""

from collections import deque

from node.p2p.gossipsub.rpc import Fragment, PubMessage, encode_message_field


class CachedMessage:
    """A message and, encoded on first use, the RPC field that carries it to any peer."""

    __slots__ = ("_fragment", "message")

    def __init__(self, message: PubMessage) -> None:
        self.message = message
        self._fragment: Fragment | None = None

    @property
    def fragment(self) -> Fragment:
        if self._fragment is None:
            self._fragment = encode_message_field(self.message)
        return self._fragment


class MessageCache:
    def __init__(self, history: int, gossip: int) -> None:
        self._history = history
        self._gossip = gossip
        self._windows: deque[list[tuple[bytes, str]]] = deque([[]])
        self._messages: dict[bytes, CachedMessage] = {}
        self._requests: dict[bytes, dict[bytes, int]] = {}

    def __len__(self) -> int:
        return len(self._messages)

    def put(self, msg_id: bytes, cached: CachedMessage) -> None:
        if msg_id in self._messages:
            return
        self._messages[msg_id] = cached
        self._windows[0].append((msg_id, cached.message.topic))

    def get(self, msg_id: bytes) -> CachedMessage | None:
        return self._messages.get(msg_id)

    def get_for_peer(
        self, msg_id: bytes, peer: bytes, retransmission_max: int
    ) -> CachedMessage | None:
        """The message for an IWANT, unless this peer asked for it too often already."""
        cached = self._messages.get(msg_id)
        if cached is None:
            return None
        counts = self._requests.setdefault(msg_id, {})
        count = counts.get(peer, 0) + 1
        counts[peer] = count
        return cached if count <= retransmission_max else None

    def gossip_ids(self, topic: str) -> list[bytes]:
        ids: list[bytes] = []
        for window in list(self._windows)[: self._gossip]:
            ids.extend(msg_id for msg_id, t in window if t == topic)
        return ids

    def shift(self) -> None:
        self._windows.appendleft([])
        while len(self._windows) > self._history:
            for msg_id, _topic in self._windows.pop():
                self._messages.pop(msg_id, None)
                self._requests.pop(msg_id, None)


class SeenCache:
    """Message ids with an expiry; insertion order is expiry order because the TTL is fixed."""

    def __init__(self, ttl_ms: int, entries_max: int) -> None:
        self._ttl_ms = ttl_ms
        self._entries_max = entries_max
        self._expiry: dict[bytes, int] = {}
        self.evicted = 0

    def __contains__(self, msg_id: bytes) -> bool:
        return msg_id in self._expiry

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, msg_id: bytes, now_ms: int) -> bool:
        """Record `msg_id`; False if it was already there."""
        if msg_id in self._expiry:
            return False
        if len(self._expiry) >= self._entries_max:
            del self._expiry[next(iter(self._expiry))]
            self.evicted += 1
        self._expiry[msg_id] = now_ms + self._ttl_ms
        return True

    def purge(self, now_ms: int) -> None:
        expiry = self._expiry
        while expiry:
            first = next(iter(expiry))
            if expiry[first] > now_ms:
                break
            del expiry[first]
