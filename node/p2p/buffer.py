"""An inbound byte buffer with awaitable reads, shared by TCP, Noise and yamux streams.

Producers call feed()/feed_eof()/fail() from protocol callbacks; a single consumer awaits
reads.  Fed chunks are kept by reference in a deque (decrypted Noise frames are immutable, so
no copy is needed); a read copies exactly once, when it assembles its result.  Growing one
bytearray instead costs a reallocation and copy of everything buffered every few appends.

`on_consume(n)` reports bytes taken out, which yamux turns into window credit and the TCP
layer into resume_reading, so every buffer is bounded by its producer's flow control.  A
reader waiting for a message longer than what is buffered reports how many more bytes it needs
(`on_demand`), so yamux can credit them ahead, within the connection's memory budget (the
message size itself was already checked against a limit).

Small chunks that pile up (the reader is behind) are copied into a shared tail chunk instead
of being kept one object each: a peer sending 1-byte frames would otherwise cost ~50 bytes of
object overhead per byte.  While the reader keeps up, chunks are kept as they come (no copy).
"""

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from node.p2p.errors import LimitError, StreamClosed
from node.p2p.varint import decode_uvarint

T = TypeVar("T")
Chunk = bytes | bytearray | memoryview
Parser = Callable[[bytes], tuple[T, int] | None]
VARINT_PEEK_BYTES = 10
OFFLOAD_JOIN_BYTES = 1024 * 1024
# Once this many chunks are buffered (the reader is behind), chunks shorter than
# SMALL_CHUNK_BYTES are appended to a bytearray tail of at most COALESCE_BYTES_MAX.
COALESCE_AFTER_CHUNKS = 16
SMALL_CHUNK_BYTES = 1024
COALESCE_BYTES_MAX = 16 * 1024


class ReadBuffer:
    __slots__ = ("_chunks", "_eof", "_exc", "_on_consume", "_on_demand", "_size", "_waiter")

    def __init__(
        self,
        on_consume: Callable[[int], None] | None = None,
        on_demand: Callable[[int], None] | None = None,
    ) -> None:
        self._chunks: deque[Chunk] = deque()
        self._size = 0
        self._eof = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_consume = on_consume
        self._on_demand = on_demand

    def __len__(self) -> int:
        return self._size

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._size

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if not len(data):
            return
        chunks = self._chunks
        n = len(data)
        if n < SMALL_CHUNK_BYTES and len(chunks) >= COALESCE_AFTER_CHUNKS:
            tail = chunks[-1] if chunks else None
            if isinstance(tail, bytearray) and len(tail) + n <= COALESCE_BYTES_MAX:
                tail += data
            else:
                chunks.append(bytearray(data))
        else:
            if isinstance(data, bytearray):
                data = bytes(data)  # the producer may mutate it later
            chunks.append(data)
        self._size += n
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        """End the buffer with an error; what it still holds is dropped at once.

        Nobody reads a failed buffer's bytes, and the consumer's callbacks usually point back
        at the object that owns this buffer: a reference cycle that only the cyclic garbage
        collector would free, seconds or minutes later (a closed connection's megabytes
        stayed resident that long)."""
        if self._exc is None:
            self._exc = exc
        self._chunks.clear()
        self._size = 0
        self._on_consume = None
        self._on_demand = None
        self._wake()

    def take_all(self) -> bytes:
        """Hand the buffered bytes to a new consumer (when switching to push mode)."""
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
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
        if self._on_consume is not None and n:
            self._on_consume(n)

    def _demand(self, n: int) -> None:
        """The reader needs n bytes in all: ask the producer for what is missing."""
        if self._on_demand is not None and n > self._size:
            self._on_demand(n - self._size)

    def _take(self, n: int) -> bytes:
        chunks = self._chunks
        first = chunks[0]
        if len(first) >= n:
            data = bytes(first[:n]) if len(first) > n or not isinstance(first, bytes) else first
            if len(first) == n:
                chunks.popleft()
            elif type(first) is bytearray:
                del first[:n]  # a small tail: never exported, so it may be resized
            else:
                chunks[0] = memoryview(first)[n:]
            self._size -= n
            self._consumed(n)
            return data
        return b"".join(self._take_parts(n))

    def _take_parts(self, n: int) -> list[Chunk]:
        """Remove the first n buffered bytes as a list of chunks and views (no copying)."""
        chunks = self._chunks
        parts: list[Chunk] = []
        need = n
        while need:
            chunk = chunks[0]
            if len(chunk) <= need:
                parts.append(chunks.popleft())
                need -= len(chunk)
            elif isinstance(chunk, bytearray):
                parts.append(bytes(chunk[:need]))
                del chunk[:need]
                need = 0
            else:
                view = memoryview(chunk)
                parts.append(view[:need])
                chunks[0] = view[need:]
                need = 0
        self._size -= n
        self._consumed(n)
        return parts

    def _head(self, n: int) -> bytes:
        """The first min(n, buffered) bytes as one contiguous chunk (merging a few chunks)."""
        want = min(n, self._size)
        chunks = self._chunks
        if len(chunks[0]) < want:
            parts: list[Chunk] = []
            got = 0
            while got < want:
                chunk = chunks.popleft()
                parts.append(chunk)
                got += len(chunk)
            chunks.appendleft(b"".join(parts))
        first = chunks[0]
        return first[:want] if isinstance(first, bytes) else bytes(first[:want])

    async def read_exact(self, n: int) -> bytes:
        while self._size < n:
            self._demand(n)
            await self._wait()
        if n == 0:
            return b""
        return self._take(n)

    async def read_some(self, n_max: int) -> bytes:
        """Up to n_max bytes; b"" at a clean end of stream."""
        while not self._size:
            if self._exc is not None:
                raise self._exc
            if self._eof:
                return b""
            await self._wait()
        return self._take(min(n_max, len(self._chunks[0])))

    async def read_parsed(self, parse: Parser[T], peek_bytes: int = 1 << 20) -> T:
        """Wait until `parse(head)` returns (value, consumed); parse raises on bad bytes.

        `head` is the first `peek_bytes` buffered bytes; parsers of small framed messages
        (multistream, handshake frames, varints) need no more.
        """
        while True:
            if self._size:
                parsed = parse(self._head(peek_bytes))
                if parsed is not None:
                    value, used = parsed
                    self._take(used)
                    return value
                if self._size >= peek_bytes:
                    raise LimitError(f"no complete message within {peek_bytes} bytes")
            await self._wait()

    async def read_exact_offloaded(self, n: int) -> bytes:
        """Like read_exact, but a large result is assembled in a worker thread: bytes.join
        releases the GIL for joins over 1 MiB, so the event loop keeps running meanwhile."""
        if n < OFFLOAD_JOIN_BYTES:
            return await self.read_exact(n)
        while self._size < n:
            self._demand(n)
            await self._wait()
        parts = self._take_parts(n)
        # bytes.join drops the GIL only if every part is an exact bytes object: copy the (few,
        # small) views first, or the big join would stall the event loop.
        exact = [p if type(p) is bytes else bytes(p) for p in parts]
        return await asyncio.to_thread(b"".join, exact)

    async def read_length_prefix(self, bytes_max: int) -> int | None:
        """The uvarint length of the next message (checked against bytes_max before anything
        else is read), or None at a clean end of stream."""
        while not self._size:
            if self._exc is not None:
                raise self._exc
            if self._eof:
                return None
            await self._wait()
        length = await self.read_parsed(decode_uvarint, VARINT_PEEK_BYTES)
        if length > bytes_max:
            raise LimitError(f"message of {length} bytes over limit {bytes_max}")
        return length

    async def wait_buffered(self, n: int) -> None:
        """Wait until n bytes are buffered (crediting them to the sender meanwhile)."""
        while self._size < n:
            self._demand(n)
            await self._wait()

    def peek(self, n: int) -> bytes:
        """The first min(n, buffered) bytes, without consuming them."""
        return self._head(n) if self._size else b""

    async def read_uvarint_frame(self, bytes_max: int, offload: bool = False) -> bytes | None:
        """A uvarint-length-prefixed message, or None at a clean end of stream."""
        length = await self.read_length_prefix(bytes_max)
        if length is None:
            return None
        if offload:
            return await self.read_exact_offloaded(length)
        return await self.read_exact(length)
