"""The TCP transport as an asyncio.Protocol with two modes.

Pull mode (during multistream and the Noise handshake): bytes go to `inbox`, a ReadBuffer;
reading pauses when it holds more than `buffer_bytes_max`.  Push mode (after the handshake):
every chunk is handed straight to a sink callback, so decryption and demultiplexing run in the
data_received callback without a task switch per frame.  Write readiness is exposed as a flag
plus a callback so the Noise layer can prioritise what it writes next.
"""

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import cast

from node.logging import log_event
from node.p2p.buffer import ReadBuffer
from node.p2p.errors import StreamClosed

log = logging.getLogger(__name__)
Sink = Callable[[bytes], None]


class TcpConnection(asyncio.Protocol):
    def __init__(
        self,
        buffer_bytes_max: int,
        on_made: "Callable[[TcpConnection], None] | None" = None,
        socket_buffer_bytes: int = 0,
    ) -> None:
        self._on_made = on_made
        self._socket_buffer_bytes = socket_buffer_bytes
        self.transport: asyncio.Transport | None = None
        self.inbox = ReadBuffer(on_consume=self._on_consume)
        self._buffer_bytes_max = buffer_bytes_max
        self._sink: Sink | None = None
        self._on_eof: Callable[[], None] | None = None
        self._reading_paused = False
        self.writable = True
        self.on_writable: Callable[[], None] | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.remote: tuple[str, int] = ("", 0)

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but implement its interface.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        # Writes beyond this are held by us (and prioritised) rather than by the transport.
        transport.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
        sock = transport.get_extra_info("socket")
        if self._socket_buffer_bytes and sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._socket_buffer_bytes)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._socket_buffer_bytes)
            except OSError as exc:
                log_event(log, "p2p_socket_buffers_unchanged", logging.DEBUG, error=str(exc))
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.remote = (str(peer[0]), int(peer[1]))
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        sink = self._sink
        if sink is not None:
            sink(data)
            return
        self.inbox.feed(data)
        if len(self.inbox) > self._buffer_bytes_max and not self._reading_paused:
            self._reading_paused = True
            if self.transport is not None:
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        if self._on_eof is not None:
            self._on_eof()
        else:
            self.inbox.feed_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable = False
        self.inbox.fail(StreamClosed("connection lost"))
        if self._on_eof is not None:
            self._on_eof()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        if self.on_writable is not None:
            self.on_writable()

    # -- shell API ----------------------------------------------------------------------------
    def _on_consume(self, _n: int) -> None:
        if self._reading_paused and len(self.inbox) <= self._buffer_bytes_max // 2:
            self._reading_paused = False
            if self.transport is not None:
                self.transport.resume_reading()

    def set_sink(self, sink: Sink, on_eof: Callable[[], None]) -> None:
        """Switch to push mode; bytes already buffered are delivered first."""
        self._sink = sink
        self._on_eof = on_eof
        pending = self.inbox.take_all()
        if self._reading_paused:
            self._reading_paused = False
            if self.transport is not None:
                self.transport.resume_reading()
        if pending:
            sink(pending)
        if self.closed.done() or self.inbox.at_eof:
            on_eof()

    def write(self, data: bytes | bytearray) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def write_async(self, data: bytes) -> None:
        self.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
