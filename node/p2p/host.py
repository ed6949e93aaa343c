"""The Host: listening, dialling, connection bookkeeping and per-protocol stream handlers.

Theory of operation.  Every TCP connection, inbound or outbound, is upgraded (multistream,
Noise XX, yamux; see upgrade.py) under the handshake timeout and then registered under the
remote peer id.  At most one connection per peer survives: when two exist (both sides dialled
at once, or a redial raced a live connection) both ends keep the connection dialled by the
smaller peer id, or the older one if the same side dialled both, so the two ends agree without
talking.  Which connections are admitted, and which are evicted to make room, is decided by
the pure `ConnPolicy` (connmgr.py): the host feeds it every accept, dial, handshake, close and
ban, and carries out its decisions.  Validators and persistent peers have reserved slots.

Inbound streams are negotiated against the registered handlers and each runs as a task in
the host's TaskGroup; a handler's failure resets its stream and is counted, never propagated.
Persistent peers get a task each that redials with exponential backoff (and jitter) whenever
the connection is gone.  Identify runs on every new connection; ping and identify are served.

Use it as `async with Host(identity, config) as host:`; leaving the block closes everything.
"""

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from node.allocator import FreeMemoryReleaser
from node.logging import log_event
from node.p2p.budget import BudgetLimits, MemoryBudget
from node.p2p.config import HostConfig
from node.p2p.connmgr import Admit, ConnPolicy, PeerClass, Refuse
from node.p2p.counters import Counters
from node.p2p.errors import (
    DecodeError,
    DialError,
    P2PError,
    PeerUnavailable,
    RemoteError,
    RequestTimeout,
    StreamClosed,
)
from node.p2p.identify import PROTOCOL_ID as IDENTIFY_ID
from node.p2p.identify import PROTOCOL_VERSION, IdentifyMessage
from node.p2p.multiaddr import Multiaddr
from node.p2p.negotiate import select_inbound, select_outbound
from node.p2p.peer_id import Identity, PeerId, marshal_public_key
from node.p2p.ping import PING_BYTES
from node.p2p.ping import PROTOCOL_ID as PING_ID
from node.p2p.secure import SecureChannel
from node.p2p.session import Session, Stream
from node.p2p.tcp import TcpConnection
from node.p2p.upgrade import secure_inbound, secure_outbound

log = logging.getLogger(__name__)

SERVER_CLOSE_GRACE_S = 1.0
# A yamux violation (credit overrun, unread control replies): the session is already closed;
# this makes a stranger that comes back the first to be evicted.
MUXER_VIOLATION_POINTS = 10

StreamHandler = Callable[[Stream], Awaitable[None]]
RequestHandler = Callable[[PeerId, bytes], Awaitable[bytes]]
PeerCallback = Callable[[PeerId], None]


@dataclass(slots=True, eq=False)
class Connection:
    peer: PeerId
    session: Session
    initiator: bool
    remote_addr: Multiaddr
    conn_id: int = 0
    ip: str = ""
    # SecureChannel.bytes_received when last looked at: growth is what the policy calls activity.
    bytes_seen: int = 0
    protocols: frozenset[str] = frozenset()
    listen_addrs: tuple[Multiaddr, ...] = ()
    agent_version: str = ""
    identified: asyncio.Event = field(default_factory=asyncio.Event)

    def close(self) -> None:
        self.session.close()


class Host:
    def __init__(
        self,
        identity: Identity,
        config: HostConfig | None = None,
        counters: Counters | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.identity = identity
        self.peer_id = identity.peer_id
        self.config = config or HostConfig()
        self.counters = counters or Counters()
        self._rng = rng or random.Random(int.from_bytes(os.urandom(8), "big"))
        self._clock = clock
        self._noise_static = os.urandom(32)
        self._conns: dict[PeerId, Connection] = {}
        self._policy = ConnPolicy(self.config)
        self.memory_releaser = FreeMemoryReleaser()
        self.memory = MemoryBudget(
            BudgetLimits(
                node_bytes_max=self.config.memory_node_bytes_max,
                strangers_bytes_max=self.config.memory_strangers_bytes_max,
                protected_connection_bytes_max=self.config.memory_protected_connection_bytes_max,
                stranger_connection_bytes_max=self.config.memory_stranger_connection_bytes_max,
            )
        )
        self._next_conn_id = 0
        # Inbound TCP connections in their handshake, and every registered connection, by id:
        # what the policy's evictions name.
        self._pending_tcp: dict[int, TcpConnection] = {}
        self._by_id: dict[int, Connection] = {}
        self._handlers: dict[str, tuple[StreamHandler, bool]] = {}
        self._on_connected: list[PeerCallback] = []
        self._on_disconnected: list[PeerCallback] = []
        self._disconnected_events: dict[PeerId, asyncio.Event] = {}
        self._servers: list[asyncio.Server] = []
        self.listen_addrs: list[Multiaddr] = []
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._persistent: dict[PeerId, Multiaddr] = {}
        self._dialing: dict[PeerId, asyncio.Future[Connection]] = {}
        self.closing = False
        self.set_stream_handler(IDENTIFY_ID, self._serve_identify)
        self.set_stream_handler(PING_ID, self._serve_ping)

    # -- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> "Host":
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.closing = True
        for server in self._servers:
            server.close()
        for conn in list(self._conns.values()):
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tg is not None:
            # Every task is guarded, so the group has nothing to report; the body's own
            # exception (if any) propagates unwrapped.
            await self._tg.__aexit__(None, None, None)
        # wait_closed also waits for accepted sockets; one accepted while we were closing can
        # outlive every task that would close it, and a node stuck here ignored SIGTERM. Our
        # own connections are closed above, so whatever is left gets a short grace period.
        for server in self._servers:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(SERVER_CLOSE_GRACE_S):
                    await server.wait_closed()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run `coro` in the host's TaskGroup; its failure is logged, never propagated."""
        if self._tg is None or self.closing:
            coro.close()
            raise P2PError("host is not running (use `async with Host(...)`)")
        guarded = self._guard(coro, name)
        try:
            task = self._tg.create_task(guarded, name=name)
        except RuntimeError as exc:  # the group is shutting down
            guarded.close()
            coro.close()
            raise P2PError("host is shutting down") from exc
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # A task cancelled before its first step (the host closing right after a spawn) never
        # awaits `coro`; closing it keeps that from being reported as never awaited.
        task.add_done_callback(lambda _task: coro.close())
        return task

    async def _guard(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await coro
        except (P2PError, OSError, TimeoutError) as exc:
            log_event(log, "p2p_task_failed", logging.DEBUG, task=name, error=str(exc))
        except Exception:
            log_event(log, "p2p_task_crashed", logging.ERROR, exc_info=True, task=name)

    # -- registration API ---------------------------------------------------------------------
    def set_stream_handler(self, protocol: str, handler: StreamHandler, high: bool = True) -> None:
        """Serve `protocol`; `high=False` puts what the handler writes in the bulk class."""
        self._handlers[protocol] = (handler, high)

    def remove_stream_handler(self, protocol: str) -> None:
        self._handlers.pop(protocol, None)

    def set_request_handler(
        self,
        protocol: str,
        handler: RequestHandler,
        request_bytes_max: int | None = None,
        bulk_response: bool = False,
    ) -> None:
        """Serve request/response on `protocol`: one length-prefixed request, one response."""
        limit = request_bytes_max or self.config.request_bytes_max

        async def serve(stream: Stream) -> None:
            async with asyncio.timeout(self.config.request_timeout_ms / 1000):
                request = await stream.read_frame(limit)
            if request is None:
                raise StreamClosed("request stream closed before a request")
            response = await handler(stream.remote_peer, request)
            await stream.write_frame(response)
            stream.close_write()

        self.set_stream_handler(protocol, serve, high=not bulk_response)

    def on_peer_connected(self, callback: PeerCallback) -> None:
        self._on_connected.append(callback)

    def on_peer_disconnected(self, callback: PeerCallback) -> None:
        self._on_disconnected.append(callback)

    # -- queries ------------------------------------------------------------------------------
    def connected_peers(self) -> list[PeerId]:
        return sorted(self._conns)

    def is_connected(self, peer: PeerId) -> bool:
        return peer in self._conns

    def connection(self, peer: PeerId) -> Connection | None:
        return self._conns.get(peer)

    def addrs(self) -> list[Multiaddr]:
        """Our listen addresses with /p2p/<our id> appended (what others dial)."""
        return [addr.with_peer(self.peer_id) for addr in self.listen_addrs]

    def peer_class(self, peer: PeerId) -> PeerClass:
        """VALIDATOR, PERSISTENT or STRANGER: what limits and budgets apply to `peer`."""
        return self._policy.peer_class(peer)

    def set_validator_peers(self, peers: Iterable[PeerId]) -> None:
        """The validators' peer ids (replacing any earlier set): reserved slots, never evicted."""
        self._policy.set_validators(peers)

    def penalize(self, peer: PeerId, points: int = 1) -> None:
        """Lower a peer's connection score: strangers below zero are evicted first."""
        self._policy.penalize(peer, points)
        self.counters.inc("peer_penalized")

    def _now_ms(self) -> int:
        now = self._clock() if self._clock is not None else asyncio.get_running_loop().time()
        return int(now * 1000)

    def _new_conn_id(self) -> int:
        self._next_conn_id += 1
        return self._next_conn_id

    def _refused(self, decision: Refuse, inbound: bool, peer: str) -> None:
        self.counters.inc("conn_inbound_refused" if inbound else "conn_outbound_refused")
        self.counters.drop(f"conn_refused_{decision.reason}", decision.reason, peer=peer)

    def _evict(self, decision: Admit, reason: str) -> None:
        for conn_id in decision.evict:
            tcp = self._pending_tcp.pop(conn_id, None)
            if tcp is not None:
                self.counters.inc("conn_pending_evicted")
                log_event(log, "p2p_pending_evicted", addr=tcp.remote[0], reason=reason)
                tcp.abort()
                continue
            conn = self._by_id.get(conn_id)
            if conn is None:
                continue
            self.counters.inc("conn_evicted")
            log_event(
                log,
                "p2p_peer_evicted",
                peer=str(conn.peer),
                addr=conn.ip,
                reason=reason,
                score=self._policy.score(conn.peer),
            )
            conn.close()

    def _refresh_activity(self, now_ms: int) -> None:
        """Tell the policy which connections received bytes since the last look."""
        for conn in self._by_id.values():
            received = conn.session.channel.bytes_received
            if received != conn.bytes_seen:
                conn.bytes_seen = received
                self._policy.activity(conn.conn_id, now_ms)

    # -- listening ----------------------------------------------------------------------------
    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> Multiaddr:
        loop = asyncio.get_running_loop()
        buffer_max = self.config.handshake_buffer_bytes_max

        def factory() -> TcpConnection:
            return TcpConnection(buffer_max, self._accepted, self.config.socket_buffer_bytes)

        server = await loop.create_server(factory, host, port)
        self._servers.append(server)
        sock = server.sockets[0].getsockname()
        addr = Multiaddr.tcp(str(sock[0]), int(sock[1]))
        self.listen_addrs.append(addr)
        log_event(log, "p2p_listening", addr=str(addr), peer=str(self.peer_id))
        return addr.with_peer(self.peer_id)

    def _accepted(self, tcp: TcpConnection) -> None:
        if self.closing or self._tg is None:
            tcp.abort()
            return
        conn_id = self._new_conn_id()
        ip = tcp.remote[0]
        decision = self._policy.inbound_opened(conn_id, ip, self._now_ms())
        if isinstance(decision, Refuse):
            self._refused(decision, True, ip)
            tcp.abort()
            return
        self._evict(decision, "pending_inbound_max")
        self._pending_tcp[conn_id] = tcp
        try:
            self.spawn(self._upgrade_inbound(tcp, conn_id), "p2p-accept")
        except P2PError:
            self._pending_tcp.pop(conn_id, None)
            self._policy.closed(conn_id)
            tcp.abort()

    async def _upgrade_inbound(self, tcp: TcpConnection, conn_id: int) -> None:
        ip, port = tcp.remote

        def admit(peer: PeerId) -> bool:
            # The slot is taken here, before the muxer is negotiated, so that concurrent
            # handshakes cannot all squeeze into the last free slot.
            now_ms = self._now_ms()
            self._refresh_activity(now_ms)
            decision = self._policy.handshaken(conn_id, peer, ip, now_ms)
            if isinstance(decision, Refuse):
                self._refused(decision, True, peer.short())
                return False
            self._evict(decision, "inbound_peers_max")
            return True

        registered = False
        try:
            async with asyncio.timeout(self.config.handshake_timeout_ms / 1000):
                channel = await secure_inbound(
                    tcp, self.identity, self._noise_static, self.config, admit
                )
            if self._pending_tcp.pop(conn_id, None) is None:
                # Evicted after the policy admitted it, while the muxer was negotiated: its
                # socket is aborted and its slot given away, but the negotiation could still
                # complete from buffered bytes, and registering it held a 51st stranger of 50
                # until the read loop saw the abort.
                self.counters.drop("conn_evicted_in_upgrade", "evicted", peer=ip)
                tcp.abort()
                return
            self._register(channel, False, Multiaddr.tcp(ip, port), conn_id, ip)
            registered = True
        except (RemoteError, StreamClosed, TimeoutError, OSError, DialError) as exc:
            self.counters.drop("conn_handshake_failed", str(exc), peer=ip)
            tcp.abort()
        except BaseException:  # cancelled (host closing): do not leak the socket
            tcp.abort()
            raise
        finally:
            self._pending_tcp.pop(conn_id, None)
            if not registered:
                self._policy.closed(conn_id)

    # -- dialling -----------------------------------------------------------------------------
    async def dial(self, addr: Multiaddr | str, local_host: str | None = None) -> PeerId:
        """Connect to `addr` (which should end in /p2p/<id>) unless already connected;
        `local_host` binds the source address (a multi-homed host, loopback tests)."""
        if isinstance(addr, str):
            addr = Multiaddr.parse(addr)
        expected = addr.peer_id
        if expected is not None:
            if expected == self.peer_id:
                raise DialError("refusing to dial ourselves")
            if expected in self._conns:
                return expected
            if self.is_banned(expected):
                self._refused(Refuse("peer_banned"), False, expected.short())
                raise DialError(f"peer {expected.short()} is banned")
            pending = self._dialing.get(expected)
            if pending is not None:
                return (await asyncio.shield(pending)).peer
        conn_id = self._new_conn_id()
        decision = self._policy.outbound_started(conn_id, expected, self._now_ms())
        if isinstance(decision, Refuse):
            self._refused(decision, False, str(addr))
            raise DialError(f"dial {addr} refused: {decision.reason}")
        future: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        if expected is not None:
            self._dialing[expected] = future
        registered = False
        try:
            conn = await self._dial_once(addr, expected, conn_id, local_host)
            registered = True
            future.set_result(conn)
            return conn.peer
        except BaseException as exc:
            future.set_exception(DialError(str(exc)))
            future.exception()  # mark retrieved: concurrent waiters may not exist
            raise
        finally:
            if not registered:
                self._policy.closed(conn_id)
            if expected is not None:
                self._dialing.pop(expected, None)

    async def _dial_once(
        self, addr: Multiaddr, expected: PeerId | None, conn_id: int, local_host: str | None
    ) -> Connection:
        loop = asyncio.get_running_loop()
        host, port = addr.host_port()
        tcp: TcpConnection | None = None
        try:
            async with asyncio.timeout(self.config.dial_timeout_ms / 1000):
                _, tcp = await loop.create_connection(
                    lambda: TcpConnection(
                        self.config.handshake_buffer_bytes_max,
                        None,
                        self.config.socket_buffer_bytes,
                    ),
                    host,
                    port,
                    local_addr=None if local_host is None else (local_host, 0),
                )
            async with asyncio.timeout(self.config.handshake_timeout_ms / 1000):
                channel = await secure_outbound(
                    tcp, self.identity, self._noise_static, expected, self.config
                )
        except (RemoteError, StreamClosed, TimeoutError, OSError) as exc:
            self.counters.inc("dial_failed")
            if tcp is not None:
                tcp.abort()
            raise DialError(f"dial {addr}: {exc}") from exc
        except BaseException:  # cancelled: do not leak the socket
            if tcp is not None:
                tcp.abort()
            raise
        ip = tcp.remote[0]
        decision = self._policy.handshaken(conn_id, channel.remote_peer, ip, self._now_ms())
        if isinstance(decision, Refuse):
            self._refused(decision, False, channel.remote_peer.short())
            channel.close()
            tcp.abort()
            raise DialError(f"dial {addr} refused: {decision.reason}")
        self._evict(decision, "outbound")
        return self._register(channel, True, addr.without_peer(), conn_id, ip)

    def add_persistent_peer(self, addr: Multiaddr | str) -> PeerId:
        """Keep a connection to this peer, redialling with backoff whenever it drops."""
        if isinstance(addr, str):
            addr = Multiaddr.parse(addr)
        peer = addr.peer_id
        if peer is None:
            raise DecodeError("a persistent peer address needs /p2p/<peer id>")
        if peer not in self._persistent:
            self._persistent[peer] = addr
            host, _ = addr.host_port()
            self._policy.add_persistent(peer, host)
            self.spawn(self._keep_connected(peer, addr), f"p2p-persistent-{peer.short()}")
        return peer

    async def _keep_connected(self, peer: PeerId, addr: Multiaddr) -> None:
        backoff_ms = self.config.dial_backoff_min_ms
        while not self.closing:
            if peer in self._conns:
                event = self._disconnected_events.setdefault(peer, asyncio.Event())
                await event.wait()
                backoff_ms = self.config.dial_backoff_min_ms
                continue
            try:
                await self.dial(addr)
                continue
            except P2PError as exc:
                log_event(
                    log, "p2p_redial_failed", logging.DEBUG, peer=peer.short(), error=str(exc)
                )
            jitter = self._rng.uniform(0.5, 1.0)
            await asyncio.sleep(backoff_ms * jitter / 1000)
            backoff_ms = min(backoff_ms * 2, self.config.dial_backoff_max_ms)

    # -- connection table ---------------------------------------------------------------------
    def _register(
        self,
        channel: SecureChannel,
        initiator: bool,
        remote_addr: Multiaddr,
        conn_id: int,
        ip: str,
    ) -> Connection:
        peer = channel.remote_peer
        holder: list[Connection] = []

        def on_stream(stream: Stream) -> None:
            self.spawn(self._serve_stream(holder[0], stream), "p2p-stream")

        session = Session(
            channel,
            initiator,
            self.config.streams_per_connection_max,
            self.config.stream_window_bytes_max,
            self.counters,
            on_stream,
            lambda s: self._closed(holder[0]),
            ledger=self.memory.connection(self.peer_class(peer).protected, peer.short()),
            on_violation=lambda reason: self.penalize(peer, MUXER_VIOLATION_POINTS),
            control_frames_max=self.config.control_frames_max,
            releaser=self.memory_releaser,
        )
        conn = Connection(peer, session, initiator, remote_addr, conn_id, ip)
        holder.append(conn)
        self._by_id[conn_id] = conn
        session.start()
        if session.closed:
            self._by_id.pop(conn_id, None)
            raise DialError("connection closed during setup")
        existing = self._conns.get(peer)
        if existing is not None:
            keep = self._resolve_duplicate(existing, conn)
            loser = conn if keep is existing else existing
            self.counters.inc("conn_duplicate_closed")
            if keep is conn:
                self._conns[peer] = conn
                self.spawn(self._identify(conn), "p2p-identify")
            loser.close()
            return keep
        self._conns[peer] = conn
        self.counters.inc("conn_opened")
        log_event(
            log,
            "p2p_peer_connected",
            peer=str(peer),
            direction="out" if initiator else "in",
            addr=str(remote_addr),
        )
        self._disconnected_events.pop(peer, None)
        self._notify(self._on_connected, peer)
        self.spawn(self._identify(conn), "p2p-identify")
        return conn

    @staticmethod
    def _notify(callbacks: list[PeerCallback], peer: PeerId) -> None:
        for callback in callbacks:
            try:
                callback(peer)
            except Exception:
                # A subscriber's bug must not leave the connection table half-updated.
                log_event(
                    log, "p2p_peer_callback_failed", logging.ERROR, exc_info=True, peer=peer.short()
                )

    def _resolve_duplicate(self, existing: Connection, new: Connection) -> Connection:
        if existing.initiator == new.initiator:
            return existing

        def dialer(c: Connection) -> PeerId:
            return self.peer_id if c.initiator else c.peer

        return existing if dialer(existing) < dialer(new) else new

    def _closed(self, conn: Connection) -> None:
        self._by_id.pop(conn.conn_id, None)
        self._policy.closed(conn.conn_id)
        error = conn.session.channel.error
        if error is not None:
            self.counters.drop("conn_closed_on_error", str(error), peer=conn.peer.short())
        if self._conns.get(conn.peer) is not conn:
            return
        del self._conns[conn.peer]
        self.counters.inc("conn_closed")
        log_event(log, "p2p_peer_disconnected", peer=str(conn.peer))
        event = self._disconnected_events.pop(conn.peer, None)
        if event is not None:
            event.set()
        self._notify(self._on_disconnected, conn.peer)

    def disconnect(self, peer: PeerId) -> None:
        conn = self._conns.get(peer)
        if conn is not None:
            conn.close()

    def ban(self, peer: PeerId, duration_ms: int, address: bool = True) -> None:
        """Disconnect `peer` and refuse it (both directions) for `duration_ms`; a stranger's
        address is refused too, longer for each repeat offence (a new key does not help).
        `address=False` bans the peer id only: for faults an honest peer can commit (being
        slow, forwarding what others forged), where its neighbours should not pay."""
        conn = self._conns.get(peer)
        ip = conn.ip if conn is not None and address else None
        address_ms = self._policy.ban(peer, ip, duration_ms, self._now_ms())
        self.counters.inc("peer_banned")
        if address_ms:
            self.counters.inc("address_banned")
        log_event(
            log,
            "p2p_peer_banned",
            peer=str(peer),
            addr=ip or "",
            ban_ms=duration_ms,
            address_ban_ms=address_ms,
            peer_class=self.peer_class(peer).value,
        )
        self.disconnect(peer)

    def is_banned(self, peer: PeerId) -> bool:
        return self._policy.is_banned(peer, self._now_ms())

    # -- streams ------------------------------------------------------------------------------
    async def _serve_stream(self, conn: Connection, stream: Stream) -> None:
        try:
            # A peer that opens streams and never negotiates must not pin tasks forever.
            async with asyncio.timeout(self.config.handshake_timeout_ms / 1000):
                protocol = await select_inbound(
                    stream.inbox, stream.write, self._handlers, self.config.negotiation_attempts_max
                )
        except (P2PError, TimeoutError) as exc:
            self.counters.drop("stream_negotiation_failed", str(exc), peer=conn.peer.short())
            stream.reset()
            return
        entry = self._handlers.get(protocol)
        if entry is None:
            stream.reset()
            return
        handler, high = entry
        stream.protocol = protocol
        stream.high = high
        try:
            await handler(stream)
        except RemoteError as exc:
            self.counters.drop("stream_handler_remote_error", str(exc), peer=conn.peer.short())
            self._policy.penalize(conn.peer, 1)
            stream.reset()
        except (P2PError, TimeoutError) as exc:
            log_event(log, "p2p_handler_ended", logging.DEBUG, protocol=protocol, error=str(exc))
            stream.reset()
        except Exception:
            # The handler's bug, not the peer's: loud, and the peer learns at once (reset).
            log_event(log, "p2p_handler_crashed", logging.ERROR, exc_info=True, protocol=protocol)
            stream.reset()
        else:
            stream.close_write()

    async def new_stream(self, peer: PeerId, protocols: Sequence[str], high: bool = True) -> Stream:
        """Open a stream to a connected peer and negotiate the first protocol it accepts."""
        conn = self._conns.get(peer)
        if conn is None:
            raise PeerUnavailable(f"not connected to {peer.short()}")
        stream = conn.session.open_stream(high)
        try:
            stream.protocol = await select_outbound(stream.inbox, stream.write, protocols)
        except BaseException:
            stream.reset()
            raise
        return stream

    async def request(
        self,
        peer: PeerId,
        protocol: str,
        payload: bytes,
        timeout_ms: int | None = None,
        response_bytes_max: int | None = None,
    ) -> bytes:
        """One request/response round trip; raises RequestTimeout, PeerUnavailable, ..."""
        if len(payload) > self.config.request_bytes_max:
            raise P2PError(f"request of {len(payload)} bytes over request_bytes_max")
        limit = response_bytes_max or self.config.response_bytes_max
        stream: Stream | None = None
        try:
            async with asyncio.timeout((timeout_ms or self.config.request_timeout_ms) / 1000):
                stream = await self.new_stream(peer, [protocol])
                await stream.write_frame(payload)
                stream.close_write()
                response = await stream.read_frame(limit)
        except TimeoutError as exc:
            if stream is not None:
                stream.reset()
            raise RequestTimeout(f"{protocol} to {peer.short()} timed out") from exc
        except BaseException:
            if stream is not None:
                stream.reset()
            raise
        if response is None:
            stream.reset()
            raise StreamClosed(f"{protocol}: peer closed without a response")
        return response

    # -- identify and ping --------------------------------------------------------------------
    def _identify_message(self, conn: Connection) -> IdentifyMessage:
        return IdentifyMessage(
            public_key=marshal_public_key(self.identity.public_key),
            listen_addrs=tuple(self.listen_addrs),
            protocols=tuple(sorted(self._handlers)),
            observed_addr=conn.remote_addr,
            protocol_version=PROTOCOL_VERSION,
            agent_version=self.config.agent_version,
        )

    async def _serve_identify(self, stream: Stream) -> None:
        conn = self._conns.get(stream.remote_peer)
        if conn is None:
            return
        await stream.write_frame(self._identify_message(conn).encode())

    async def _identify(self, conn: Connection) -> None:
        try:
            # Bounded: a peer that never answers (an idle attacker) must not pin a task.
            async with asyncio.timeout(self.config.request_timeout_ms / 1000):
                stream = await self.new_stream(conn.peer, [IDENTIFY_ID])
                raw = await stream.read_frame(self.config.identify_bytes_max)
            stream.close_write()
            if raw is None:
                raise DecodeError("identify stream closed without a message")
            message = IdentifyMessage.decode(raw)
        except (P2PError, TimeoutError) as exc:
            self.counters.drop("identify_failed", str(exc), peer=conn.peer.short())
            return
        finally:
            conn.identified.set()
        conn.protocols = frozenset(message.protocols)
        conn.listen_addrs = message.listen_addrs
        conn.agent_version = message.agent_version
        if message.addrs_skipped:
            self.counters.drop(
                "identify_addr_skipped",
                "unsupported multiaddr",
                message.addrs_skipped,
                peer=conn.peer.short(),
            )
        log_event(
            log,
            "p2p_identified",
            logging.DEBUG,
            peer=conn.peer.short(),
            agent=message.agent_version[:64],
            protocols=len(message.protocols),
        )

    async def identify(self, peer: PeerId, timeout_ms: int = 5000) -> Connection:
        """Wait until identify has run on the connection to `peer`."""
        conn = self._conns.get(peer)
        if conn is None:
            raise PeerUnavailable(f"not connected to {peer.short()}")
        async with asyncio.timeout(timeout_ms / 1000):
            await conn.identified.wait()
        return conn

    async def _serve_ping(self, stream: Stream) -> None:
        while True:
            data = await stream.inbox.read_some(PING_BYTES)
            if not data:
                return
            while len(data) < PING_BYTES:
                more = await stream.inbox.read_some(PING_BYTES - len(data))
                if not more:
                    return
                data += more
            await stream.write(data)

    async def ping(self, peer: PeerId, timeout_ms: int = 5000) -> float:
        """Round-trip time in milliseconds of one /ipfs/ping/1.0.0 exchange."""
        async with asyncio.timeout(timeout_ms / 1000):
            stream = await self.new_stream(peer, [PING_ID])
            try:
                payload = os.urandom(PING_BYTES)
                start = time.perf_counter()
                await stream.write(payload)
                echoed = await stream.read_exact(PING_BYTES)
                rtt_ms = (time.perf_counter() - start) * 1000
            finally:
                stream.close_write()
        if echoed != payload:
            raise DecodeError("ping payload not echoed")
        return rtt_ms

    async def connect_all(self, addrs: Iterable[Multiaddr | str]) -> list[PeerId]:
        return [await self.dial(addr) for addr in addrs]
