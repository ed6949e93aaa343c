"""What we owe one peer: RPC framing under a size limit and a byte-bounded queue that drops.

`pack()` turns the router's encoded RPC fields into length-prefixed RPC frames, each at most
`bytes_max` bytes, because go-libp2p and py-libp2p reset a stream that brings an RPC over their
inbound limit (1 MiB by default); a single field larger than the limit travels alone.

`PeerQueue` holds a peer's frames in two lanes (the main gossipsub stream and the bulk lane to
peers running this stack) under one byte budget.  When a frame does not fit, the oldest
*message-only* frames are dropped first, whichever lane they are in: a dropped message can
still reach the peer through IHAVE/IWANT (our mcache keeps it for `mcache_gossip` heartbeats)
or from its other mesh peers, whereas a lost GRAFT, PRUNE or subscription silently corrupts
the peer's view of us, so frames carrying control are never evicted.  Whether a message was
published by us or forwarded does not matter: a peer too slow for the traffic is pruned and
penalised either way (the shell's `peer_slow`), and the newest data is what it needs first.
Pure: no I/O.
"""

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from node.p2p.errors import InvariantError
from node.p2p.gossipsub.rpc import Fragment, fragment_size
from node.p2p.varint import encode_uvarint

_PUBLISH_KEY = 2 << 3 | 2  # RPC field 2 (publish), length-delimited
MAIN = 0
BULK = 1


@dataclass(frozen=True, slots=True)
class Frame:
    parts: tuple[bytes, ...]  # the length prefix, then the RPC body in parts (never joined)
    size: int
    droppable: bool  # carries messages only


@dataclass(frozen=True, slots=True)
class Packed:
    frames: list[Frame]
    oversize: int  # frames over bytes_max (a single field that large)


def is_message(fragment: Fragment) -> bool:
    head = fragment if isinstance(fragment, bytes) else fragment[0]
    return bool(head) and head[0] == _PUBLISH_KEY


def pack(fragments: Sequence[Fragment], bytes_max: int) -> Packed:
    """Frames of consecutive fields, each RPC body at most `bytes_max` bytes if it can be."""
    frames: list[Frame] = []
    oversize = 0
    body: list[bytes] = []
    size = 0
    droppable = True

    def close() -> None:
        nonlocal body, size, droppable, oversize
        prefix = encode_uvarint(size)
        frames.append(Frame((prefix, *body), len(prefix) + size, droppable))
        if size > bytes_max:
            oversize += 1
        body, size, droppable = [], 0, True

    for fragment in fragments:
        fragment_bytes = fragment_size(fragment)
        if body and size + fragment_bytes > bytes_max:
            close()
        if isinstance(fragment, bytes):
            body.append(fragment)
        else:
            body.extend(fragment)
        size += fragment_bytes
        droppable = droppable and is_message(fragment)
    if body:
        close()
    return Packed(frames, oversize)


class PeerQueue:
    """Frames waiting for a peer's writers, two lanes, one byte budget (in-flight included)."""

    def __init__(self, bytes_max: int) -> None:
        self.bytes_max = bytes_max
        self.lanes: tuple[deque[Frame], deque[Frame]] = (deque(), deque())
        self._seq: tuple[deque[int], deque[int]] = (deque(), deque())
        self._next_seq = 0
        self.queued_bytes = 0  # waiting in the lanes
        self.in_flight_bytes = 0  # taken by a writer, not yet written

    @property
    def total_bytes(self) -> int:
        return self.queued_bytes + self.in_flight_bytes

    def push(self, lane: int, frame: Frame) -> int:
        """Queue `frame`; returns how many frames were dropped to respect the budget (the
        oldest message-only ones, or `frame` itself if even that does not make room)."""
        dropped = 0
        while self.total_bytes + frame.size > self.bytes_max:
            if not self._evict_oldest_droppable():
                return dropped + 1
            dropped += 1
        self.lanes[lane].append(frame)
        self._seq[lane].append(self._next_seq)
        self._next_seq += 1
        self.queued_bytes += frame.size
        return dropped

    def _evict_oldest_droppable(self) -> bool:
        best: tuple[int, int, int] | None = None  # (seq, lane, index)
        for lane in (MAIN, BULK):
            for index, frame in enumerate(self.lanes[lane]):
                if frame.droppable:
                    seq = self._seq[lane][index]
                    if best is None or seq < best[0]:
                        best = (seq, lane, index)
                    break
        if best is None:
            return False
        _, lane, index = best
        frame = self.lanes[lane][index]
        del self.lanes[lane][index]
        del self._seq[lane][index]
        self.queued_bytes -= frame.size
        return True

    def take(self, lane: int, bytes_max: int) -> list[Frame]:
        """Frames for one write (at least one if any is queued), now counted in flight."""
        frames = self.lanes[lane]
        taken: list[Frame] = []
        size = 0
        while frames and (not taken or size + frames[0].size <= bytes_max):
            frame = frames.popleft()
            self._seq[lane].popleft()
            taken.append(frame)
            size += frame.size
        self.queued_bytes -= size
        self.in_flight_bytes += size
        return taken

    def written(self, size: int) -> None:
        if size > self.in_flight_bytes:
            raise InvariantError("PeerQueue: more bytes written than were taken")
        self.in_flight_bytes -= size

    def release(self, lane: int) -> int:
        """Drop every frame waiting in `lane` (its stream failed); returns how many."""
        count = len(self.lanes[lane])
        self.queued_bytes -= sum(f.size for f in self.lanes[lane])
        self.lanes[lane].clear()
        self._seq[lane].clear()
        return count

    def __len__(self) -> int:
        return len(self.lanes[MAIN]) + len(self.lanes[BULK])
