"""The node's links to its peers, on top of the p2p Host: pushed messages and request/response.

Theory of operation
-------------------
Pushed messages (node/wire.py: txs, announcements, consensus messages, compact proposals,
status) travel on `/fedchain/<chain>/msg/1.0.0` streams, one per direction and priority class:
when a peer connects, a writer task per class opens its own outbound stream and drains that
class's queue.  Consensus traffic uses the Host's high-priority class; transaction bytes use the
bulk class, so a 10 MB update never delays a vote.  Each queue is bounded in bytes; a message
that does not fit is dropped, counted (`dropped`) and logged, never silently lost.

Memory: a message's declared length is checked before its bytes are read, against a cap
per peer class: validators and persistent peers may push up to `frame_bytes_max`, strangers
only `stranger_frame_bytes_max` (one tx of the largest size a full node may push);
requests are small (`REQUEST_BYTES_MAX`).  A message whose length is declared but whose bytes
do not all arrive within `frame_timeout_ms` is given up.  Both cost the peer (`on_invalid`),
and its yamux credit is bounded by the Host's memory budget meanwhile (node/p2p/budget.py).

Requests (`get_txs`, `get_blocks`, `get_status`) use the Host's request/response helper on
`/fedchain/<chain>/req/1.0.0` (answers in the bulk class), or on `.../req-urgent/1.0.0` when
consensus waits for the answer (answers in the high class: a proposal's missing txs).  A peer
whose bytes do not decode is reported to the node (`on_invalid`), which penalizes it; the
stream is reset and the node carries on.
"""

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from consensus.errors import CodecError
from node.chaincheck import ChainGate
from node.logging import log_event
from node.p2p.errors import LimitError, P2PError, RemoteError
from node.p2p.host import Host
from node.p2p.peer_id import PeerId
from node.p2p.session import Stream
from node.wire import HASH_BYTES, HASHES_MAX, Message, decode_message, encode_message

log = logging.getLogger(__name__)

MessageHandler = Callable[[PeerId, Message], None]
RequestHandler = Callable[[PeerId, Message], Awaitable[Message]]
InvalidHandler = Callable[[PeerId, str], None]
# The largest request is a GetTxs of HASHES_MAX hashes (~640 KB); the rest is msgpack framing.
REQUEST_BYTES_MAX = HASHES_MAX * (HASH_BYTES + 2) + 64 * 1024
STRANGER_FRAME_BYTES_MAX = 17 * 1024 * 1024
FRAME_TIMEOUT_MS = 20_000


class InvalidPeerMessage(RemoteError):
    """A peer's message on our protocols did not decode."""


@dataclass(slots=True)
class _Queue:
    items: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    bytes: int = 0


@dataclass(slots=True)
class _Link:
    peer: PeerId
    high: _Queue = field(default_factory=_Queue)
    bulk: _Queue = field(default_factory=_Queue)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Network:
    def __init__(
        self,
        host: Host,
        chain_id: str,
        on_message: MessageHandler,
        on_request: RequestHandler,
        on_invalid: InvalidHandler,
        frame_bytes_max: int,
        queue_bytes_max: int,
        stranger_frame_bytes_max: int = STRANGER_FRAME_BYTES_MAX,
        frame_timeout_ms: int = FRAME_TIMEOUT_MS,
    ) -> None:
        self.host = host
        self.msg_protocol = f"/fedchain/{chain_id}/msg/1.0.0"
        self.req_protocol = f"/fedchain/{chain_id}/req/1.0.0"
        # The same requests, answered on the high-priority class: for data consensus is waiting
        # on (a proposal's missing txs), which must not queue behind the peer's bulk pushes.
        self.urgent_req_protocol = f"/fedchain/{chain_id}/req-urgent/1.0.0"
        self._on_message = on_message
        self._on_request = on_request
        self._on_invalid = on_invalid
        self._frame_bytes_max = frame_bytes_max
        self._stranger_frame_bytes_max = min(stranger_frame_bytes_max, frame_bytes_max)
        self._frame_timeout_s = frame_timeout_ms / 1000
        self._request_bytes_max = min(REQUEST_BYTES_MAX, frame_bytes_max)
        self._queue_bytes_max = queue_bytes_max
        self._links: dict[PeerId, _Link] = {}
        self.dropped: Counter[str] = Counter()
        self._peer_callbacks: list[Callable[[PeerId, bool], None]] = []
        # The chain handshake (node/chaincheck.py): when set, links open and chain protocols
        # answer only for peers whose chain id, genesis and version match ours.
        self.gate: ChainGate | None = None

    def start(self) -> None:
        self.host.set_stream_handler(self.msg_protocol, self._serve_messages)
        self.host.set_request_handler(
            self.req_protocol, self._serve_request, self._request_bytes_max, bulk_response=True
        )
        self.host.set_request_handler(
            self.urgent_req_protocol, self._serve_request, self._request_bytes_max
        )
        self.host.on_peer_connected(self._connected)
        self.host.on_peer_disconnected(self._disconnected)
        if self.gate is not None:
            self.gate.on_admitted(self._connected)
        for peer in self.host.connected_peers():
            self._connected(peer)

    def on_peer_change(self, callback: Callable[[PeerId, bool], None]) -> None:
        self._peer_callbacks.append(callback)

    def peers(self) -> list[PeerId]:
        return sorted(self._links)

    # -- peers ----------------------------------------------------------------------------------
    def _connected(self, peer: PeerId) -> None:
        if peer in self._links or (self.gate is not None and not self.gate.admits(peer)):
            return
        link = _Link(peer)
        self._links[peer] = link
        link.tasks.append(self.host.spawn(self._writer(link, True), f"node-send-high-{peer}"))
        link.tasks.append(self.host.spawn(self._writer(link, False), f"node-send-bulk-{peer}"))
        for callback in self._peer_callbacks:
            callback(peer, True)

    def _disconnected(self, peer: PeerId) -> None:
        link = self._links.pop(peer, None)
        if link is None:
            return
        for task in link.tasks:
            task.cancel()
        for callback in self._peer_callbacks:
            callback(peer, False)

    # -- sending --------------------------------------------------------------------------------
    def send(self, peer: PeerId, msg: Message, bulk: bool = False) -> bool:
        return self.send_raw(peer, encode_message(msg), bulk)

    def send_raw(self, peer: PeerId, data: bytes, bulk: bool = False) -> bool:
        link = self._links.get(peer)
        if link is None:
            return False
        queue = link.bulk if bulk else link.high
        if queue.bytes + len(data) > self._queue_bytes_max:
            kind = "bulk" if bulk else "high"
            self.dropped[kind] += 1
            log_event(
                log,
                "peer_send_dropped",
                logging.WARNING,
                peer=str(peer),
                queue=kind,
                queued_bytes=queue.bytes,
                message_bytes=len(data),
            )
            return False
        queue.bytes += len(data)
        queue.items.put_nowait(data)
        return True

    def broadcast(self, msg: Message, bulk: bool = False, exclude: PeerId | None = None) -> int:
        data = encode_message(msg)
        sent = 0
        for peer in list(self._links):
            if peer != exclude and self.send_raw(peer, data, bulk):
                sent += 1
        return sent

    async def _writer(self, link: _Link, high: bool) -> None:
        """Drain one class's queue into a stream; reopen the stream while the peer is connected.

        The Host may swap the connection under us (duplicate-connection resolution keeps the
        other one without a disconnect event), so a failed stream is reopened on whatever
        connection the peer has now; only a real disconnect ends the writer.
        """
        queue = link.high if high else link.bulk
        backoff_s = 0.01
        while self._links.get(link.peer) is link:
            stream: Stream | None = None
            try:
                stream = await self.host.new_stream(link.peer, [self.msg_protocol], high=high)
                backoff_s = 0.01
                while True:
                    data = await queue.items.get()
                    queue.bytes -= len(data)
                    await stream.write_frame(data)
            except (P2PError, OSError) as exc:
                log_event(
                    log, "peer_stream_reopen", logging.DEBUG, peer=str(link.peer), error=str(exc)
                )
            finally:
                if stream is not None:
                    stream.reset()
            if not self.host.is_connected(link.peer):
                return
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, 1.0)

    # -- receiving ------------------------------------------------------------------------------
    def frame_bytes_max(self, peer: PeerId) -> int:
        """The largest message `peer` may push to us."""
        if self.host.peer_class(peer).protected:
            return self._frame_bytes_max
        return self._stranger_frame_bytes_max

    def _offence(self, peer: PeerId, reason: str) -> None:
        """Report a peer's offence, unless it is gone already: many of its streams can fail
        in the same loop turn (their timeouts fire together), and the first offences have
        banned it; the rest would only repeat the penalty."""
        if self.host.is_connected(peer):
            self._on_invalid(peer, reason)
        else:
            self.dropped["offence_after_disconnect"] += 1
            log_event(
                log, "peer_offence_after_disconnect", logging.DEBUG, peer=str(peer), reason=reason
            )

    async def _serve_messages(self, stream: Stream) -> None:
        peer = stream.remote_peer
        if self.gate is not None and not await self.gate.wait_admitted(peer):
            return
        limit = self.frame_bytes_max(peer)
        inbox = stream.inbox
        while True:
            try:
                length = await inbox.read_length_prefix(limit)
            except LimitError as exc:
                self._offence(peer, f"oversized message: {exc}")
                raise InvalidPeerMessage(str(exc)) from None
            if length is None:
                return
            try:
                async with asyncio.timeout(self._frame_timeout_s):
                    frame = await inbox.read_exact(length)
            except TimeoutError:
                reason = f"message of {length} bytes incomplete after {self._frame_timeout_s} s"
                self._offence(peer, reason)
                raise InvalidPeerMessage(reason) from None
            try:
                msg = decode_message(frame, self._frame_bytes_max)
            except CodecError as exc:
                self._on_invalid(peer, f"undecodable message: {exc}")
                raise InvalidPeerMessage(str(exc)) from None
            try:
                self._on_message(peer, msg)
            except Exception:
                # Our bug, not the peer's: keep the link, leave the full traceback in the log.
                log_event(
                    log,
                    "peer_message_handler_failed",
                    logging.ERROR,
                    exc_info=True,
                    peer=str(peer),
                    kind=type(msg).__name__,
                )

    async def _serve_request(self, peer: PeerId, request: bytes) -> bytes:
        if self.gate is not None and not await self.gate.wait_admitted(peer):
            raise P2PError(f"{peer.short()} has not passed the chain handshake")
        try:
            msg = decode_message(request, self._frame_bytes_max)
        except CodecError as exc:
            self._on_invalid(peer, f"undecodable request: {exc}")
            raise InvalidPeerMessage(str(exc)) from None
        return encode_message(await self._on_request(peer, msg))

    async def request(
        self, peer: PeerId, msg: Message, timeout_ms: int, urgent: bool = False
    ) -> Message:
        """Raises P2PError on transport trouble and InvalidPeerMessage on a bad answer;
        `urgent` has the answer sent ahead of the peer's bulk traffic."""
        raw = await self.host.request(
            peer,
            self.urgent_req_protocol if urgent else self.req_protocol,
            encode_message(msg),
            timeout_ms=timeout_ms,
            response_bytes_max=self._frame_bytes_max,
        )
        try:
            return decode_message(raw, self._frame_bytes_max)
        except CodecError as exc:
            self._on_invalid(peer, f"undecodable response: {exc}")
            raise InvalidPeerMessage(str(exc)) from None
