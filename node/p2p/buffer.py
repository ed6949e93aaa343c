"""An inbound byte buffer with awaitable reads, shared by TCP, Noise and yamux streams.

Producers call feed()/feed_eof()/fail() from protocol callbacks; a single consumer awaits
reads.  `on_consume(n)` reports bytes taken out, which yamux turns into window credit and the
TCP layer into resume_reading, so every buffer is bounded by its producer's flow control.
Large reads consume progressively, so a message larger than the window still arrives.
"""

import asyncio
from collections.abc import Callable
from typing import TypeVar

from node.p2p.errors import LimitError, StreamClosed
from node.p2p.varint import decode_uvarint

T = TypeVar("T")
Parser = Callable[[bytearray], tuple[T, int] | None]


class ReadBuffer:
    __slots__ = ("_buf", "_credited", "_eof", "_exc", "_on_consume", "_waiter")

    def __init__(self, on_consume: Callable[[int], None] | None = None) -> None:
        self._buf = bytearray()
        self._eof = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_consume = on_consume
        # Bytes still in the buffer that were already reported as consumed (see read_exact).
        self._credited = 0

    def __len__(self) -> int:
        return len(self._buf)

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._buf

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if self._exc is None:
            self._exc = exc
        self._wake()

    def take_all(self) -> bytes:
        """Hand the buffered bytes to a new consumer (when switching to push mode)."""
        data = bytes(self._buf)
        self._buf.clear()
        self._credited = 0
        return data

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        if self._exc is not None:
            raise self._exc
        if self._eof:
            raise StreamClosed("end of stream")
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None

    def _consumed(self, n: int) -> None:
        credited = self._credited
        if credited:
            if n <= credited:
                self._credited = credited - n
                return
            n -= credited
            self._credited = 0
        if self._on_consume is not None and n:
            self._on_consume(n)

    def _credit_buffered(self) -> None:
        """Report buffered bytes as consumed ahead of time, so a reader waiting for a message
        larger than the flow-control window keeps the sender going."""
        extra = len(self._buf) - self._credited
        if extra > 0:
            self._credited += extra
            if self._on_consume is not None:
                self._on_consume(extra)

    async def read_exact(self, n: int) -> bytes:
        buf = self._buf
        while len(buf) < n:
            self._credit_buffered()
            await self._wait()
        with memoryview(buf) as view, view[:n] as head:
            data = bytes(head)
        del buf[:n]
        self._consumed(n)
        return data

    async def read_some(self, n_max: int) -> bytes:
        """Up to n_max bytes; b"" at a clean end of stream."""
        while not self._buf:
            if self._exc is not None:
                raise self._exc
            if self._eof:
                return b""
            await self._wait()
        with memoryview(self._buf) as view, view[:n_max] as head:
            data = bytes(head)
        del self._buf[: len(data)]
        self._consumed(len(data))
        return data

    async def read_parsed(self, parse: Parser[T]) -> T:
        """Wait until `parse(buffer)` returns (value, consumed); parse raises on bad bytes."""
        while True:
            parsed = parse(self._buf)
            if parsed is not None:
                value, used = parsed
                del self._buf[:used]
                self._consumed(used)
                return value
            await self._wait()

    async def read_uvarint_frame(self, bytes_max: int) -> bytes | None:
        """A uvarint-length-prefixed message, or None at a clean end of stream."""
        if self._eof and not self._buf:
            return None
        while not self._buf:
            if self._exc is not None:
                raise self._exc
            if self._eof:
                return None
            await self._wait()
        length = await self.read_parsed(decode_uvarint)
        if length > bytes_max:
            raise LimitError(f"message of {length} bytes over limit {bytes_max}")
        return await self.read_exact(length)
