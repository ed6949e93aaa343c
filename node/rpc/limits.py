"""Budgets of the RPC server: connections, header and body deadlines, request body bytes.

Theory of operation
-------------------
Issue 13, attack 6: 24 uploads of 30 MiB that never finished held 914 MiB (and kept it after
the attacker left), connections that sent their header one byte at a time were never closed.
aiohttp has neither a cap on connections nor a header deadline, so the listening socket's
protocol factory wraps each aiohttp RequestHandler in a `_GuardedProtocol`:
  * beyond `connections_max` open connections, or `connections_per_ip_max` from one address,
    a new connection is closed at once;
  * a connection must deliver a complete request header within `header_timeout_ms` of
    connecting, and the next one within `keepalive_timeout_ms + header_timeout_ms` of the
    previous answer, however many bytes trickle in; the middleware tells the guard when a
    request starts and ends.  (aiohttp's keep-alive timer, 3,630 s by default, was the only
    deadline before; it is now `keepalive_timeout_ms`.)

Request bodies are read by `read_body`, never by aiohttp's `request.read()`:
  * one request may not exceed `body_bytes_max` (413 before any byte is read when the declared
    length says so) and must arrive within `body_timeout_ms` (408, connection closed);
  * all bodies being received at once share `bodies_in_flight_bytes_max`: every chunk is charged
    before it is read, so an upload that finds the budget spent waits (TCP pushes back on its
    sender) until others finish or its deadline passes.  Bodies of at most SMALL_BODY_BYTES
    (a transfer, a vote) never wait, so a flood of large uploads cannot starve them; they are
    bounded by the connection cap instead;
  * a body over SMALL_BODY_BYTES is collected in an anonymous mmap of its declared length and
    released with `munmap` when the request ends, however it ends: memory that glibc's heap
    would keep (the node raises its trim threshold, node/allocator.py) goes back to the
    kernel, and pages an attacker declared but never sent are never resident.
"""

import asyncio
import logging
import mmap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from node.logging import log_event

log = logging.getLogger(__name__)

# Bodies up to this size skip the wait for the shared budget (still charged to it).
SMALL_BODY_BYTES = 64 * 1024
CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class RpcLimits:
    body_bytes_max: int = 32 * 1024 * 1024
    bodies_in_flight_bytes_max: int = 128 * 1024 * 1024
    connections_max: int = 256
    connections_per_ip_max: int = 128
    header_timeout_ms: int = 10_000
    body_timeout_ms: int = 60_000
    keepalive_timeout_ms: int = 15_000


class BodyTooLarge(Exception):
    pass


class BodyBudget:
    """Bytes of request bodies being received, all requests together (event-loop thread)."""

    def __init__(self, bytes_max: int) -> None:
        self._max = bytes_max
        self.used = 0
        self._freed = asyncio.Event()

    async def acquire(self, n: int, wait: bool) -> None:
        while wait and self.used + n > self._max:
            self._freed.clear()
            await self._freed.wait()
        self.used += n

    def release(self, n: int) -> None:
        self.used -= n
        self._freed.set()


async def read_body(request: web.Request, limits: RpcLimits, budget: BodyBudget) -> bytes:
    """The request body within the limits above; raises BodyTooLarge or TimeoutError."""
    declared = request.content_length
    if declared is not None and declared > limits.body_bytes_max:
        raise BodyTooLarge
    capacity = limits.body_bytes_max if declared is None else declared
    if capacity == 0:
        return b""
    small = declared is not None and declared <= SMALL_BODY_BYTES
    # Small bodies (most txs) skip the two system calls of a mapping.
    buffer: mmap.mmap | bytearray = (
        bytearray(capacity) if capacity <= SMALL_BODY_BYTES else mmap.mmap(-1, capacity)
    )
    received = 0
    charged = 0
    try:
        async with asyncio.timeout(limits.body_timeout_ms / 1000):
            while True:
                want = min(CHUNK_BYTES, capacity - received) or 1  # 1: see EOF or excess
                await budget.acquire(want, wait=not small)
                charged += want
                chunk = await request.content.read(want)
                if not chunk:
                    break
                if received + len(chunk) > capacity:
                    raise BodyTooLarge
                buffer[received : received + len(chunk)] = chunk
                received += len(chunk)
        return bytes(buffer[:received]) if isinstance(buffer, bytearray) else buffer[:received]
    finally:
        budget.release(charged)
        if isinstance(buffer, mmap.mmap):
            buffer.close()


class ConnectionGuard:
    """Counts connections per address and enforces header deadlines (see module doc)."""

    def __init__(self, limits: RpcLimits) -> None:
        self._limits = limits
        self._by_handler: dict[RequestHandler, _GuardedProtocol] = {}
        self._per_ip: dict[str, int] = {}
        self.refused = 0
        self.timed_out = 0

    def __len__(self) -> int:
        return len(self._by_handler)

    def factory(self, make_handler: Callable[[], RequestHandler]) -> Callable[[], asyncio.Protocol]:
        return lambda: _GuardedProtocol(self, make_handler())

    def _admit(self, proto: "_GuardedProtocol", ip: str) -> bool:
        limits = self._limits
        if (
            len(self._by_handler) >= limits.connections_max
            or self._per_ip.get(ip, 0) >= limits.connections_per_ip_max
        ):
            self.refused += 1
            return False
        self._by_handler[proto.inner] = proto
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        return True

    def _forget(self, proto: "_GuardedProtocol", ip: str) -> None:
        if self._by_handler.pop(proto.inner, None) is not None:
            left = self._per_ip.get(ip, 1) - 1
            if left > 0:
                self._per_ip[ip] = left
            else:
                self._per_ip.pop(ip, None)

    def request_started(self, handler: Any) -> None:
        proto = self._by_handler.get(handler)
        if proto is not None:
            proto.disarm()

    def request_finished(self, handler: Any) -> None:
        proto = self._by_handler.get(handler)
        if proto is not None:
            limits = self._limits
            proto.arm(limits.keepalive_timeout_ms + limits.header_timeout_ms)


class _GuardedProtocol(asyncio.Protocol):
    """Forwards every protocol event to aiohttp's handler; closes the connection when it is one
    too many or its header deadline passes."""

    def __init__(self, guard: ConnectionGuard, inner: RequestHandler) -> None:
        self._guard = guard
        self.inner = inner
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ip = ""
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP server's transport is a read/write transport, but uvloop's does not subclass
        # asyncio.Transport (an isinstance check refused every connection under uvloop).
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._ip = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        self._admitted = self._guard._admit(self, self._ip)
        self.inner.connection_made(transport)
        if not self._admitted:
            log_event(log, "rpc_connection_refused", logging.DEBUG, ip=self._ip)
            transport.abort()
            return
        self.arm(self._guard._limits.header_timeout_ms)

    def arm(self, timeout_ms: int) -> None:
        self.disarm()
        self._timer = asyncio.get_running_loop().call_later(timeout_ms / 1000, self._expired)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        self._guard.timed_out += 1
        log_event(log, "rpc_header_timeout", logging.DEBUG, ip=self._ip)
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        if self._admitted:
            self._guard._forget(self, self._ip)
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        self.inner.eof_received()
        return None  # close the transport, as aiohttp's handler would

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections pass through a ConnectionGuard."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard):
        super().__init__(runner)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.factory(server), self._host, self._port, reuse_address=True
        )
