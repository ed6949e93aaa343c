"""The asyncio shell around the gossipsub Router: streams, queues, validators, the heartbeat.

Theory of operation.  For every connected peer we open one outbound stream, negotiating
/meshsub/1.2.0 then /meshsub/1.1.0, and read RPCs from every inbound stream the peer opens;
each RPC is decoded under `rpc_bytes_max` and `RpcLimits` and handed to the router with the
current time.  After every router call `_drain()` applies the effects: RPC fragments are packed
into length-prefixed frames on the peer's `PeerSender` (a byte-bounded queue; overflow is
dropped and counted), messages awaiting validation go to the topic's validator (sync validators
run inline, async ones as host tasks with a concurrency bound), accepted messages are delivered
to the local subscription, and graylisted peers are banned by the host.

Large messages (>= bulk_message_bytes_min) to peers that run this stack travel on a second
stream (/fedchain/meshsub-bulk/1.0.0) of the bulk priority class, so small messages such as
votes are never queued behind them, neither in our queue nor in the connection's send queue.
"""

import asyncio
import inspect
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from node.logging import log_event
from node.p2p.errors import P2PError, PeerUnavailable, RemoteError, StreamClosed
from node.p2p.gossipsub.config import GossipsubConfig
from node.p2p.gossipsub.largerpc import HEAD_BYTES, assemble, locate_payload
from node.p2p.gossipsub.outqueue import BULK, MAIN, Frame, PeerQueue, pack
from node.p2p.gossipsub.router import (
    MESHSUB_V11,
    MESHSUB_V12,
    STRICT_NO_SIGN,
    STRICT_SIGN,
    MessageIdFn,
    Received,
    Router,
    SigningProblem,
    TopicPolicy,
    Validation,
)
from node.p2p.gossipsub.rpc import Fragment, PubMessage, Rpc, RpcLimits
from node.p2p.host import Host
from node.p2p.multiaddr import Multiaddr
from node.p2p.peer_id import PeerId
from node.p2p.session import Stream

log = logging.getLogger(__name__)

BULK_PROTOCOL = "/fedchain/meshsub-bulk/1.0.0"
OUR_AGENT_PREFIX = "fedchain/"
# One writev carries at most this many queued bytes (many small RPCs share syscalls).
WRITE_BATCH_BYTES = 4 * 1024 * 1024
# Tries to open our stream to a new peer whose connection closed under it (a duplicate).
OPEN_ATTEMPTS = 3
Validator = Callable[[PeerId, PubMessage], Validation | Awaitable[Validation]]


@dataclass(frozen=True, slots=True)
class Message:
    """A validated message delivered to a local subscriber."""

    topic: str
    data: bytes
    msg_id: bytes
    source: PeerId  # the peer that forwarded it to us
    author: bytes  # `from` of StrictSign messages, b"" for StrictNoSign


class Subscription:
    """Validated messages of one topic, in arrival order, in a queue bounded by count and bytes
    (the oldest message is dropped and counted).  A subscriber that acts in its validator and
    never reads should pass `on_message` instead, so nothing is queued at all."""

    def __init__(
        self, topic: str, queue_max: int, queue_bytes_max: int, on_drop: Callable[[], None]
    ) -> None:
        self.topic = topic
        self._queue: deque[Message] = deque()
        self._queue_max = queue_max
        self._queue_bytes_max = queue_bytes_max
        self._queued_bytes = 0
        self._on_drop = on_drop
        self._waiter: asyncio.Future[None] | None = None

    def _put(self, message: Message) -> None:
        self._queue.append(message)
        self._queued_bytes += len(message.data)
        while self._queue and (
            len(self._queue) > self._queue_max or self._queued_bytes > self._queue_bytes_max
        ):
            dropped = self._queue.popleft()
            self._queued_bytes -= len(dropped.data)
            self._on_drop()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __len__(self) -> int:
        return len(self._queue)

    def get_nowait(self) -> Message | None:
        if not self._queue:
            return None
        message = self._queue.popleft()
        self._queued_bytes -= len(message.data)
        return message

    async def get(self) -> Message:
        while not self._queue:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._queue.popleft()
        self._queued_bytes -= len(message.data)
        return message


class _Lane:
    """One outbound stream of a peer and the writer task that drains its part of the queue."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.stream: Stream | None = None
        self.wakeup = asyncio.Event()
        self.ready = asyncio.Event()  # a stream is set (or the sender closed)
        self.failed = False  # bulk lane only: the peer has none, the main stream carries it
        self.reopening = False
        self.writing_since_tick: int | None = None


class PeerSender:
    """Everything we send one peer: a byte-bounded `PeerQueue` (drops the oldest messages when
    full, never blocks) and a writer per lane.  A writer whose stream fails releases its
    lane's queue, takes the peer out of every mesh (`Router.stream_failed`) and reopens the
    stream, at most `stream_reopens_max` times per `prune_backoff_ms`; otherwise, or when the
    reopen fails, the connection is closed."""

    def __init__(self, service: "GossipSub", peer: PeerId) -> None:
        self.service = service
        self.peer = peer
        self.queue = PeerQueue(service.config.peer_queue_bytes_max)
        self.main = _Lane(MAIN)
        self.bulk: _Lane | None = None
        self.closed = False
        self.dropped_in_window = 0
        self.backlogged = False
        self._reported_bytes = 0
        self._reopens_ms: deque[int] = deque()

    @property
    def queued_bytes(self) -> int:
        return self.queue.total_bytes

    def enqueue(self, fragments: list[Fragment], bulk: list[Fragment]) -> None:
        if self.closed:
            return
        config = self.service.config
        if bulk:
            lane = self._bulk_lane()
            if lane is None:
                fragments = fragments + bulk
            else:
                # Our own stack on the other end: its inbound limit is rpc_bytes_max.
                self._push(lane, bulk, config.rpc_bytes_max)
        if fragments:
            self._push(self.main, fragments, config.rpc_send_bytes_max)

    def _bulk_lane(self) -> "_Lane | None":
        if self.bulk is not None:
            return None if self.bulk.failed else self.bulk
        conn = self.service.host.connection(self.peer)
        if conn is None or not conn.agent_version.startswith(OUR_AGENT_PREFIX):
            return None
        self.bulk = _Lane(BULK)
        self.service.host.spawn(self._open_bulk(self.bulk), "gossip-bulk-open")
        self.service.host.spawn(self._write_loop(self.bulk), "gossip-bulk-writer")
        return self.bulk

    async def _open_bulk(self, lane: _Lane) -> None:
        try:
            lane.stream = await self.service.host.new_stream(self.peer, [BULK_PROTOCOL], False)
        except P2PError:
            self._bulk_unavailable(lane)
        else:
            self.watch(lane, lane.stream)
        lane.ready.set()

    def _bulk_unavailable(self, lane: _Lane) -> None:
        """Peer without a bulk lane: move what was queued to the main stream (our own stack,
        so its frames may stay as large as rpc_bytes_max)."""
        lane.failed = True
        lane.reopening = False
        frames = list(self.queue.lanes[BULK])
        self.queue.release(BULK)
        for frame in frames:
            self._push_frame(self.main, frame)

    def _push(self, lane: _Lane, fragments: list[Fragment], bytes_max: int) -> None:
        packed = pack(fragments, bytes_max)
        if packed.oversize:
            self.service.counters.drop(
                "gossip_rpc_over_send_limit",
                "single message over rpc_send_bytes_max",
                packed.oversize,
                self.peer.short(),
            )
        for frame in packed.frames:
            self._push_frame(lane, frame)

    def _push_frame(self, lane: _Lane, frame: Frame) -> None:
        if lane.reopening:
            # The peer left our meshes when the stream failed; the new stream starts afresh.
            self.service.counters.drop(
                "gossip_send_reopening", "stream being reopened", peer=self.peer.short()
            )
            return
        dropped = self.queue.push(lane.index, frame)
        if dropped:
            self.dropped_in_window += dropped
            self.service.counters.drop(
                "gossip_send_queue_full", "peer_queue_bytes_max", dropped, self.peer.short()
            )
        self._account()
        lane.wakeup.set()

    def _account(self) -> None:
        """Report this queue's bytes and backlog state to the service (publish backpressure)."""
        if self.closed:
            return
        total = self.queue.total_bytes
        service = self.service
        service._queued_total += total - self._reported_bytes
        self._reported_bytes = total
        backlogged = total * 2 >= self.queue.bytes_max
        if backlogged != self.backlogged:
            self.backlogged = backlogged
            service._backlogged += 1 if backlogged else -1
        service._update_room()

    async def _write_loop(self, lane: _Lane) -> None:
        ticks = self.service.router
        while True:
            await lane.ready.wait()
            if self.closed or lane.failed:
                return
            stream = lane.stream
            if stream is None:
                continue
            if stream.reset_flag:
                # Reset while we were idle (see _watch): nothing was in flight.
                self._stream_failed(lane, 0)
                continue
            if not self.queue.lanes[lane.index]:
                lane.wakeup.clear()
                await lane.wakeup.wait()
                continue
            # Write everything queued in one call: many small RPCs share frames and syscalls.
            frames = self.queue.take(lane.index, WRITE_BATCH_BYTES)
            size = sum(f.size for f in frames)
            lane.writing_since_tick = ticks.ticks
            try:
                await stream.writev([part for frame in frames for part in frame.parts])
            except StreamClosed:
                self.queue.written(size)
                lane.writing_since_tick = None
                self._account()
                if not self.closed:
                    self._stream_failed(lane, len(frames))
                continue
            lane.writing_since_tick = None
            self.queue.written(size)
            self._account()

    def watch(self, lane: _Lane, stream: Stream) -> None:
        self.service.host.spawn(self._watch(lane, stream), "gossip-stream-watch")

    async def _watch(self, lane: _Lane, stream: Stream) -> None:
        """Notice a reset of our outbound stream while nothing is being written (peers send
        nothing back on it), so the stream is reopened before the next message is lost."""
        try:
            while await stream.read_some():
                pass
        except StreamClosed:
            pass
        if lane.stream is stream:
            lane.wakeup.set()

    def stalled(self, tick: int, heartbeats: int) -> bool:
        return any(
            lane is not None
            and lane.writing_since_tick is not None
            and tick - lane.writing_since_tick >= heartbeats
            for lane in (self.main, self.bulk)
        )

    def _stream_failed(self, lane: _Lane, frames_lost: int) -> None:
        service = self.service
        lost = frames_lost + self.queue.release(lane.index)
        service.counters.drop("gossip_send_stream_closed", "stream closed", lost, self.peer.short())
        lane.stream = None
        lane.ready.clear()
        lane.reopening = True
        self._account()
        service.router.stream_failed(self.peer)
        service._drain()
        if not service.host.is_connected(self.peer):
            return  # the disconnect callback closes this sender
        now_ms = service._now_ms()
        window_ms = service.config.prune_backoff_ms
        while self._reopens_ms and self._reopens_ms[0] <= now_ms - window_ms:
            self._reopens_ms.popleft()
        if len(self._reopens_ms) >= service.config.stream_reopens_max:
            service.counters.drop(
                "gossip_stream_reopens_exhausted", "stream_reopens_max", peer=self.peer.short()
            )
            service.host.disconnect(self.peer)
            return
        self._reopens_ms.append(now_ms)
        service.host.spawn(self._reopen(lane), "gossip-reopen")

    async def _reopen(self, lane: _Lane) -> None:
        service = self.service
        bulk = lane.index == BULK
        protocols = [BULK_PROTOCOL] if bulk else service.protocols
        try:
            stream = await service.host.new_stream(self.peer, protocols, not bulk)
        except P2PError as exc:
            if self.closed:
                return
            if bulk:
                self._bulk_unavailable(lane)
                lane.ready.set()
                return
            service.counters.drop("gossip_stream_reopen_failed", str(exc), peer=self.peer.short())
            service.host.disconnect(self.peer)
            return
        if self.closed:
            stream.reset()
            return
        lane.stream = stream
        lane.reopening = False
        lane.ready.set()
        self.watch(lane, stream)
        service.counters.inc("gossip_stream_reopened")
        if not bulk:
            service.router.stream_reopened(self.peer)
            service._drain()

    def close(self) -> None:
        self.closed = True
        service = self.service
        service._queued_total -= self._reported_bytes
        self._reported_bytes = 0
        if self.backlogged:
            self.backlogged = False
            service._backlogged -= 1
        for lane in (self.main, self.bulk):
            if lane is not None:
                lane.wakeup.set()
                lane.ready.set()
                if lane.stream is not None:
                    lane.stream.close_write()
        self.queue.release(MAIN)
        self.queue.release(BULK)


class GossipSub:
    """Publish/subscribe over a Host.  Call `start()` once the host is running."""

    def __init__(
        self,
        host: Host,
        config: GossipsubConfig | None = None,
        rng: random.Random | None = None,
        v12: bool = True,
        validation_concurrency_max: int = 1024,
        subscription_queue_max: int = 100_000,
        subscription_queue_bytes_max: int = 64 * 1024 * 1024,
        app_score: Callable[[PeerId], float] | None = None,
    ) -> None:
        self.host = host
        self.config = config or GossipsubConfig()
        self.counters = host.counters
        self.protocols = [MESHSUB_V12, MESHSUB_V11] if v12 else [MESHSUB_V11]
        self.router = Router(
            host.peer_id,
            host.identity.sign,
            self.config,
            rng or random.Random(),
            host.counters,
            seqno_start=time.time_ns(),
            # P5: the application's opinion of a peer (e.g. a validator's stake), if any.
            app_score=(lambda raw: app_score(PeerId(raw))) if app_score is not None else None,
        )
        self._senders: dict[PeerId, PeerSender] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._validators: dict[str, Validator] = {}
        self._handlers: dict[str, Callable[[Message], None]] = {}
        self._validating = 0
        self._validation_concurrency_max = validation_concurrency_max
        self._subscription_queue_max = subscription_queue_max
        self._subscription_queue_bytes_max = subscription_queue_bytes_max
        self._loop = asyncio.get_running_loop()
        self._started = False
        # Publish backpressure on the aggregate of the peer queues (see _update_room).
        self._queued_total = 0
        self._backlogged = 0
        self._room = asyncio.Event()
        self._room.set()

    def _now_ms(self) -> int:
        return int(self._loop.time() * 1000)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        for protocol in self.protocols:
            self.host.set_stream_handler(protocol, self._read_loop)
        self.host.set_stream_handler(BULK_PROTOCOL, self._read_loop, high=False)
        self.host.on_peer_connected(self._peer_connected)
        self.host.on_peer_disconnected(self._peer_disconnected)
        for peer in self.host.connected_peers():
            self._peer_connected(peer)
        self.host.spawn(self._heartbeat_loop(), "gossip-heartbeat")

    async def _heartbeat_loop(self) -> None:
        interval_s = self.config.heartbeat_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.router.heartbeat(self._now_ms())
                self._check_slow_peers()
                self._drain()
            except Exception:
                # A bug, not a peer's doing: make it loud, but keep the mesh maintained.
                log_event(log, "gossip_heartbeat_failed", logging.ERROR, exc_info=True)

    def _check_slow_peers(self) -> None:
        """A peer whose frames were dropped since the last heartbeat, or whose writer has been
        stuck on one write for slow_peer_stall_heartbeats, is not reading: Router.peer_slow."""
        now_ms = self._now_ms()
        tick = self.router.ticks
        stall = self.config.slow_peer_stall_heartbeats
        for peer, sender in list(self._senders.items()):
            if sender.dropped_in_window or sender.stalled(tick, stall):
                self.router.peer_slow(peer, now_ms)
            sender.dropped_in_window = 0

    def _must_wait(self) -> bool:
        """Local publishing waits when our uplink as a whole is the bottleneck: most peers are
        backlogged, or all queues together are over publish_backlog_bytes_max.  One slow
        peer alone never qualifies (its queue drops its oldest messages instead)."""
        return (
            self._backlogged * 2 > len(self._senders)
            or self._queued_total >= self.config.publish_backlog_bytes_max
        )

    def _update_room(self) -> None:
        if self._must_wait():
            self._room.clear()
        else:
            self._room.set()

    # -- public API ---------------------------------------------------------------------------
    def subscribe(
        self,
        topic: str,
        validator: Validator | None = None,
        *,
        strict_sign: bool = True,
        message_id: MessageIdFn | None = None,
        on_message: Callable[[Message], None] | None = None,
        policy: TopicPolicy | None = None,
    ) -> Subscription:
        """Join `topic`.  The validator answers ACCEPT, REJECT (penalises the sender) or IGNORE.

        StrictSign (default) is the libp2p default and what py-libp2p speaks; chain topics use
        `strict_sign=False` with a content-derived `message_id` (default sha256(data)[:20]).
        With `on_message` messages go to the callback instead of the Subscription queue.
        """
        if policy is None:
            base = STRICT_SIGN if strict_sign else STRICT_NO_SIGN
            policy = TopicPolicy(base.strict_sign, message_id or base.message_id)
        if validator is not None:
            self._validators[topic] = validator
        if on_message is not None:
            self._handlers[topic] = on_message
        subscription = self._subscriptions.get(topic)
        if subscription is None:
            subscription = Subscription(
                topic,
                self._subscription_queue_max,
                self._subscription_queue_bytes_max,
                lambda: self.counters.drop("gossip_delivery_queue_full", topic),
            )
            self._subscriptions[topic] = subscription
        self.router.subscribe(topic, policy, self._now_ms())
        self._drain()
        return subscription

    def unsubscribe(self, topic: str) -> None:
        self.router.unsubscribe(topic, self._now_ms())
        self._subscriptions.pop(topic, None)
        self._validators.pop(topic, None)
        self._handlers.pop(topic, None)
        self._drain()

    def add_direct_peer(self, addr: Multiaddr | str) -> PeerId:
        """A v1.1 direct peer: kept connected by the host, sent every message of the topics it
        subscribes to, never part of a mesh and never graylisted (operator-configured trust)."""
        peer = self.host.add_persistent_peer(addr)
        self.router.direct[peer] = None
        return peer

    def set_topic_policy(self, topic: str, policy: TopicPolicy) -> None:
        """Signature policy and message id for publishing to a topic we do not subscribe to."""
        self.router.set_publish_policy(topic, policy)

    async def publish(self, topic: str, data: bytes) -> bytes | None:
        """Publish; returns the message id, or None if that id was published or seen before.

        Large messages wait while our uplink as a whole is backlogged (see `_must_wait`), never
        for one slow peer, and their signature and content id are computed in a worker thread
        (hashlib and OpenSSL release the GIL) so the event loop keeps serving small messages.
        """
        if len(data) > self.config.rpc_bytes_max - 1024:
            raise P2PError(f"message of {len(data)} bytes over rpc_bytes_max")
        if len(data) < self.config.bulk_message_bytes_min:
            return self.publish_nowait(topic, data)
        while not self._room.is_set():
            await self._room.wait()
        router = self.router
        policy = router.policy(topic)
        message = router.make_message(topic, data)
        if policy.strict_sign:
            # signable() copies the payload: do that off the loop as well.
            unsigned = message
            signature = await asyncio.to_thread(
                lambda: self.host.identity.sign(unsigned.signable())
            )
            message = router.signed(message, signature)
        msg_id = await asyncio.to_thread(policy.message_id, message)
        result = router.publish_message(message, msg_id, self._now_ms())
        self._drain()
        return result

    def publish_nowait(self, topic: str, data: bytes) -> bytes | None:
        """Publish without backpressure (messages over a full peer queue are dropped, counted)."""
        if len(data) > self.config.rpc_bytes_max - 1024:
            raise P2PError(f"message of {len(data)} bytes over rpc_bytes_max")
        msg_id = self.router.publish(topic, data, self._now_ms())
        self._drain()
        return msg_id

    def mesh_peers(self, topic: str) -> list[PeerId]:
        return sorted(self.router.mesh.get(topic, {}))

    def topic_peers(self, topic: str) -> list[PeerId]:
        return sorted(p for p, st in self.router.peers.items() if topic in st.topics)

    def score(self, peer: PeerId) -> float:
        return self.router.peer_score(peer, self._now_ms())

    def queued_bytes(self) -> int:
        return sum(s.queued_bytes for s in self._senders.values())

    # -- peers --------------------------------------------------------------------------------
    def _peer_connected(self, peer: PeerId) -> None:
        self.host.spawn(self._open_peer(peer), "gossip-open")

    def _peer_disconnected(self, peer: PeerId) -> None:
        sender = self._senders.pop(peer, None)
        if sender is not None:
            sender.close()
            self._update_room()
        self.router.remove_peer(peer, self._now_ms())
        self._drain()

    async def _open_peer(self, peer: PeerId) -> None:
        for attempt in range(OPEN_ATTEMPTS):
            try:
                stream = await self.host.new_stream(peer, self.protocols)
                break
            except StreamClosed as exc:
                # Its connection lost to a duplicate (two peers dialling each other): the peer
                # is still connected on the other one, where the stream can open.
                if attempt == OPEN_ATTEMPTS - 1 or not self.host.is_connected(peer):
                    self.counters.drop("gossip_open_failed", str(exc), peer=peer.short())
                    return
            except P2PError as exc:
                self.counters.drop("gossip_peer_unsupported", str(exc), peer=peer.short())
                return
        if not self.host.is_connected(peer):
            stream.reset()
            return
        sender = self._ensure_peer(peer, stream.protocol)
        if sender.main.stream is not None:
            stream.reset()
            return
        sender.main.stream = stream
        sender.main.ready.set()
        sender.watch(sender.main, stream)

    def _ensure_peer(self, peer: PeerId, protocol: str) -> PeerSender:
        sender = self._senders.get(peer)
        if sender is None:
            conn = self.host.connection(peer)
            if conn is None:
                raise PeerUnavailable("peer disconnected")
            sender = PeerSender(self, peer)
            self._senders[peer] = sender
            self.host.spawn(sender._write_loop(sender.main), "gossip-writer")
            ip = conn.remote_addr.value("ip4") or conn.remote_addr.value("ip6") or ""
            self.router.add_peer(peer, protocol, conn.initiator, ip, self._now_ms())
            self._drain()
        return sender

    async def _read_loop(self, stream: Stream) -> None:
        peer = stream.remote_peer
        protocol = stream.protocol if stream.protocol != BULK_PROTOCOL else MESHSUB_V12
        returning = peer in self.router.peers
        self._ensure_peer(peer, protocol)
        if returning and stream.protocol != BULK_PROTOCOL:
            # A second gossipsub stream from a known peer: it lost its previous one and, like
            # py-libp2p, may have forgotten what we subscribe to along with it.
            self.router.stream_reopened(peer)
            self._drain()
        limits = self.config.rpc_limits
        threshold = self.config.offload_message_bytes_min
        while True:
            try:
                rpc = await self._read_rpc(stream, limits, threshold)
            except RemoteError as exc:
                # Framing is lost (oversized or malformed large frame): the stream goes.
                self.router.score.add_penalty(peer.raw)
                self.counters.drop("gossip_rpc_unreadable", str(exc), peer=peer.short())
                raise
            if rpc is None:
                return
            if isinstance(rpc, RemoteError):
                # One penalty, then the stream goes: after a frame that does not decode the
                # framing itself is suspect (py-libp2p 0.8.1 interleaves concurrent writes of
                # large RPCs on one stream), and every later "frame" of a desynchronised
                # stream would cost the peer another penalty until it is graylisted.  The
                # peer may open a new stream.
                self.router.score.add_penalty(peer.raw)
                self.counters.drop("gossip_rpc_invalid", str(rpc), peer=peer.short())
                raise rpc
            prechecked: dict[int, tuple[bytes, SigningProblem | None]] | None = None
            if any(len(m.data) >= threshold for m in rpc.messages):
                messages = list(rpc.messages)
                for index, message in enumerate(messages):
                    if len(message.data) >= threshold:
                        # Copy out (if still a view), hash and verify big messages in a worker
                        # thread (bytes.join, hashlib and OpenSSL release the GIL); RPC order
                        # is kept because this stream's next frame is read only afterwards.
                        message, known = await asyncio.to_thread(self._materialize, message)
                        messages[index] = message
                        if known is not None:
                            prechecked = prechecked or {}
                            prechecked[index] = known
                rpc = Rpc(rpc.subscriptions, tuple(messages), rpc.control)
            self.router.handle_rpc(peer, rpc, self._now_ms(), prechecked)
            self._drain()

    async def _read_rpc(
        self, stream: Stream, limits: RpcLimits, threshold: int
    ) -> Rpc | RemoteError | None:
        """The next RPC; a RemoteError value for a frame that was read but does not decode;
        None at the end of the stream."""
        inbox = stream.inbox
        length = await inbox.read_length_prefix(self.config.rpc_bytes_max)
        if length is None:
            return None
        if length < threshold:
            frame = await inbox.read_exact(length)
            try:
                return Rpc.decode(frame, limits)
            except RemoteError as exc:
                return exc
        head_bytes = min(length, HEAD_BYTES)
        await inbox.wait_buffered(head_bytes)
        layout = locate_payload(inbox.peek(head_bytes), length)
        if layout is None:
            frame = await inbox.read_exact_offloaded(length)
            try:
                return Rpc.decode(memoryview(frame), limits, threshold)
            except RemoteError as exc:
                return exc
        # The payload is read as its own buffer: one copy, assembled off the event loop.
        prefix = await inbox.read_exact(layout.data_start)
        payload = await inbox.read_exact_offloaded(layout.data_length)
        rest = await inbox.read_exact(length - layout.data_end)
        try:
            return assemble(layout, prefix, payload, rest, limits)
        except RemoteError as exc:
            return exc

    def _materialize(
        self, message: PubMessage
    ) -> tuple[PubMessage, tuple[bytes, SigningProblem | None] | None]:
        if isinstance(message.data, memoryview):
            data = b"".join((message.data,))
            message = PubMessage(
                message.topic,
                data,
                message.from_peer,
                message.seqno,
                bytes(message.signature),
                bytes(message.key),
            )
        return message, self.router.precheck(message)

    # -- effects ------------------------------------------------------------------------------
    def _drain(self) -> None:
        router = self.router
        while True:
            effects = router.take_effects()
            if not (effects.send or effects.validate or effects.deliver or effects.disconnect):
                return
            for peer, fragments, bulk in effects.send:
                sender = self._senders.get(peer)
                if sender is None:
                    self.counters.drop("gossip_send_no_peer", "peer gone", peer=peer.short())
                    continue
                sender.enqueue(fragments, bulk)
            for received in effects.deliver:
                self._deliver(received)
            for peer in effects.disconnect:
                log_event(log, "gossip_peer_graylisted", peer=str(peer))
                self.host.ban(peer, self.config.graylist_ban_ms)
            for received in effects.validate:
                self._validate(received)

    def _deliver(self, received: Received) -> None:
        m = received.message
        message = Message(m.topic, m.data, received.msg_id, received.source, m.from_peer)
        handler = self._handlers.get(m.topic)
        if handler is not None:
            handler(message)
            return
        subscription = self._subscriptions.get(m.topic)
        if subscription is not None:
            subscription._put(message)

    def _validate(self, received: Received) -> None:
        validator = self._validators.get(received.message.topic)
        if validator is None:
            self.router.validation_result(received, Validation.ACCEPT, self._now_ms())
            return
        try:
            result = validator(received.source, received.message)
        except Exception:
            _log_validator_crash(received)
            self.router.validation_result(received, Validation.IGNORE, self._now_ms())
            return
        if isinstance(result, Validation):
            self.router.validation_result(received, result, self._now_ms())
            return
        if not inspect.isawaitable(result):
            self.router.validation_result(received, Validation.IGNORE, self._now_ms())
            return
        if self._validating >= self._validation_concurrency_max:
            self.counters.drop("gossip_validation_overload", "validation_concurrency_max")
            if inspect.iscoroutine(result):
                result.close()
            self.router.validation_result(received, Validation.IGNORE, self._now_ms())
            return
        self._validating += 1
        self.host.spawn(self._await_validation(received, result), "gossip-validate")

    async def _await_validation(self, received: Received, pending: Awaitable[Validation]) -> None:
        try:
            result = await pending
        except Exception:
            _log_validator_crash(received)
            result = Validation.IGNORE
        finally:
            self._validating -= 1
        self.router.validation_result(received, result, self._now_ms())
        self._drain()


def _log_validator_crash(received: Received) -> None:
    """A topic validator raised: our bug, not the peer's (the message is ignored, not penalized)."""
    log_event(
        log,
        "gossip_validator_crashed",
        logging.ERROR,
        exc_info=True,
        topic=received.message.topic,
    )
