"""The Noise transport channel: framing, encryption and a two-class priority send queue.

Inbound: raw TCP chunks are split into 2-byte-length frames, decrypted in order and handed to
the muxer (push mode) or to `inbox` while the muxer is being negotiated (pull mode).

Outbound: callers enqueue whole yamux frames as control (the muxer's own small frames: window
updates, ping replies, SYN/ACK/RST, written before anything else and reported back as written
through `on_control_written`, so the muxer can bound what a non-reading peer makes it owe),
high priority (consensus streams) or bulk.  A flush scheduled with call_soon packs queued
frames into Noise messages of at most 65519 plaintext bytes, control and high priority first,
and writes while the socket is writable.
So a vote queued behind megabytes of bulk data waits for at most one Noise frame plus the
socket buffer, and many small messages queued in one loop turn share one frame and one syscall.
Bulk producers wait (`wait_bulk_room`) while more than `bulk_queue_bytes_max` is queued.
"""

import asyncio
from collections import deque
from collections.abc import Callable

from node.p2p.buffer import ReadBuffer
from node.p2p.errors import InvariantError, LimitError, RemoteError, StreamClosed
from node.p2p.noise import PLAINTEXT_BYTES_MAX, CipherState
from node.p2p.peer_id import PeerId
from node.p2p.tcp import TcpConnection

Sink = Callable[[bytes], None]
# A queued muxer frame: whole bytes, or (header, payload) sent as two consecutive Noise messages
# so a large payload is encrypted straight from the caller's buffer and arrives as a buffer of
# its own (no join on either side).
Item = bytes | tuple[bytes, memoryview]
# Bulk bytes written per loop turn before yielding (bounds how long a vote can wait).
BULK_BYTES_PER_TURN = 128 * 1024


class SecureChannel:
    def __init__(
        self,
        tcp: TcpConnection,
        send: CipherState,
        recv: CipherState,
        remote_peer: PeerId,
        bulk_queue_bytes_max: int,
        high_queue_bytes_max: int = 64 * 1024 * 1024,
    ) -> None:
        self.tcp = tcp
        self.remote_peer = remote_peer
        self._send = send
        self._recv = recv
        self._rbuf = bytearray()
        self.inbox = ReadBuffer()
        self._sink: Sink | None = None
        self._on_eof: Callable[[], None] | None = None
        self.error: RemoteError | None = None
        self._ctl: deque[bytes] = deque()
        self.on_control_written: Callable[[int], None] | None = None
        self._hi: deque[Item] = deque()
        self._lo: deque[Item] = deque()
        self._lo_bytes = 0
        self._hi_bytes = 0
        self._high_queue_bytes_max = high_queue_bytes_max
        self._bulk_queue_bytes_max = bulk_queue_bytes_max
        self._bulk_waiters: deque[asyncio.Future[None]] = deque()
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()
        self.closed = False
        self.bytes_sent = 0
        self.bytes_received = 0
        tcp.on_writable = self._flush
        tcp.set_sink(self._on_raw, self._on_tcp_eof)

    # -- inbound ------------------------------------------------------------------------------
    def _on_raw(self, data: bytes) -> None:
        if self.closed:
            return
        rbuf = self._rbuf
        # Decrypt straight out of the received chunk unless a partial frame is pending.
        src: bytes | bytearray = data
        if rbuf:
            rbuf += data
            src = rbuf
        end = len(src)
        pos = 0
        plaintexts: list[bytes] = []
        decrypt = self._recv.decrypt
        try:
            with memoryview(src) as view:
                while end - pos >= 2:
                    length = (src[pos] << 8) | src[pos + 1]
                    if end - pos - 2 < length:
                        break
                    with view[pos + 2 : pos + 2 + length] as ciphertext:
                        plaintexts.append(decrypt(ciphertext))
                    pos += 2 + length
        except RemoteError as exc:
            # A frame that fails authentication poisons the channel: close the connection.
            self.error = exc
            rbuf.clear()
            self.inbox.fail(exc)
            self.close()
            return
        if src is rbuf:
            del rbuf[:pos]
        elif pos < end:
            rbuf += data[pos:]
        self.bytes_received += pos
        sink = self._sink
        for plain in plaintexts:
            if sink is not None:
                sink(plain)
                if self.closed:
                    return
            else:
                self.inbox.feed(plain)

    def _on_tcp_eof(self) -> None:
        self.inbox.fail(StreamClosed("connection closed"))
        self.closed = True
        self._fail_bulk_waiters()
        if self._on_eof is not None:
            self._on_eof()

    def set_sink(self, sink: Sink, on_eof: Callable[[], None]) -> None:
        self._sink = sink
        self._on_eof = on_eof
        pending = self.inbox.take_all()
        if pending:
            sink(pending)
        if self.closed:
            on_eof()

    # -- outbound -----------------------------------------------------------------------------
    def send(self, data: bytes, high: bool = True) -> None:
        """Queue one muxer frame; frames are never split, so classes interleave safely."""
        if len(data) > PLAINTEXT_BYTES_MAX:
            raise InvariantError("frame larger than one Noise message")
        if self.closed:
            return
        if high:
            self._hi.append(data)
            self._hi_bytes += len(data)
            if self._hi_bytes > self._high_queue_bytes_max:
                # A peer that keeps asking (pings, window updates, requests) but never reads
                # would grow this queue without bound: give up on the connection instead.
                self.error = LimitError("high-priority send queue over its limit")
                self.close()
                return
        else:
            self._lo.append(data)
            self._lo_bytes += len(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def send_control(self, frame: bytes) -> None:
        """Queue a small muxer control frame ahead of all data."""
        if self.closed:
            return
        self._ctl.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    @property
    def control_queued(self) -> int:
        return len(self._ctl)

    def send_pair(self, header: bytes, payload: memoryview, high: bool) -> None:
        """Queue a header and its payload (<= one Noise message) as one indivisible item."""
        if len(payload) > PLAINTEXT_BYTES_MAX:
            raise InvariantError("payload larger than one Noise message")
        if self.closed:
            return
        size = len(header) + len(payload)
        if high:
            self._hi.append((header, payload))
            self._hi_bytes += size
        else:
            self._lo.append((header, payload))
            self._lo_bytes += size
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    async def send_async(self, data: bytes) -> None:
        self.send(data, True)

    @property
    def bulk_queued_bytes(self) -> int:
        return self._lo_bytes

    async def wait_bulk_room(self) -> None:
        while self._lo_bytes >= self._bulk_queue_bytes_max:
            if self.closed:
                raise StreamClosed("connection closed")
            waiter = self._loop.create_future()
            self._bulk_waiters.append(waiter)
            await waiter
        if self.closed:
            raise StreamClosed("connection closed")

    def _flush(self) -> None:
        self._flush_scheduled = False
        tcp = self.tcp
        hi, lo = self._hi, self._lo
        encrypt_framed = self._send.encrypt_framed
        limit = PLAINTEXT_BYTES_MAX
        bulk_budget = BULK_BYTES_PER_TURN
        ctl = self._ctl
        control_written = 0
        while ctl and tcp.writable and not self.closed:
            # Control frames first, packed into as few Noise messages as fit.
            parts_ctl: list[bytes] = []
            size = 0
            while ctl and size + len(ctl[0]) <= PLAINTEXT_BYTES_MAX:
                frame = ctl.popleft()
                parts_ctl.append(frame)
                size += len(frame)
            framed = encrypt_framed(b"".join(parts_ctl))
            tcp.write(framed)
            self.bytes_sent += len(framed)
            control_written += len(parts_ctl)
        if control_written and self.on_control_written is not None:
            self.on_control_written(control_written)
        while tcp.writable and (hi or lo) and not self.closed and not ctl:
            if not hi and bulk_budget <= 0:
                # Give the loop back so new high-priority frames (votes) are produced and
                # written before the next slice of bulk data.
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    self._loop.call_soon(self._flush)
                break
            first = (hi if hi else lo)[0]
            if isinstance(first, tuple):
                # A header/payload pair: two Noise messages, back to back.
                source = hi if hi else lo
                source.popleft()
                header, payload = first
                size = len(header) + len(payload)
                if source is hi:
                    self._hi_bytes -= size
                else:
                    self._lo_bytes -= size
                    bulk_budget -= size
                for plain in (header, payload):
                    framed = encrypt_framed(plain)
                    tcp.write(framed)
                    self.bytes_sent += len(framed)
                continue
            # Pack queued frames, high priority first, into one Noise message.
            parts: list[bytes] = []
            size = 0
            while size < limit:
                source = hi if hi else lo
                if not source:
                    break
                item = source[0]
                if isinstance(item, tuple) or len(item) > limit - size:
                    break
                source.popleft()
                if source is hi:
                    self._hi_bytes -= len(item)
                if source is lo:
                    self._lo_bytes -= len(item)
                    bulk_budget -= len(item)
                parts.append(item)
                size += len(item)
            plain = parts[0] if len(parts) == 1 else b"".join(parts)
            framed = encrypt_framed(plain)
            tcp.write(framed)
            self.bytes_sent += len(framed)
        if self._lo_bytes < self._bulk_queue_bytes_max:
            waiters = self._bulk_waiters
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)

    def _fail_bulk_waiters(self) -> None:
        while self._bulk_waiters:
            waiter = self._bulk_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        if not self.closed:
            self._flush()
        self.closed = True
        self._fail_bulk_waiters()
        self.tcp.close()
