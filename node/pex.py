"""Peer exchange: a node that knows one seed finds the rest of the network.

Theory of operation
-------------------
Every peer that passes the chain handshake (node/chaincheck.py) is written in the address book
(node/addrbook.py) with an address we can dial back: the one we dialled, or for an inbound
peer the listen port its identify announced on the address it came from.  Then we ask it, on
`/fedchain/<chain>/pex/1.0.0`, for up to PEX_ADDRS_MAX peers it has recently been connected
to, and learn them.  Every `pex_interval_ms` we ask one admitted peer again, dial book
entries we are not connected to (up to `peers_max` connections, a few dials at a time), and
save the book.  Only admitted peers are asked and answered; we never hand out a peer we have
banned, nor an address that the asker could not use (see addrbook.shareable).
"""

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from consensus.codec import DecodeLimits, decode, encode, expect_list, expect_seq, expect_str
from consensus.errors import CodecError
from node.addrbook import AddrBook, Entry, scope
from node.chaincheck import ChainGate
from node.logging import log_event
from node.p2p.errors import P2PError
from node.p2p.host import Connection, Host
from node.p2p.multiaddr import Multiaddr
from node.p2p.peer_id import PeerId

log = logging.getLogger(__name__)

PEX_ADDRS_MAX = 32
ADDR_CHARS_MAX = 200
PEX_REQUEST_BYTES_MAX = 16
PEX_RESPONSE_BYTES_MAX = PEX_ADDRS_MAX * (ADDR_CHARS_MAX + 64) + 64
DIALS_PER_TICK_MAX = 8
PEX_TIMEOUT_MS = 5_000


@dataclass(frozen=True, slots=True)
class PexSettings:
    interval_ms: int = 10_000
    peers_max: int = 50
    strict: bool = False


def encode_addrs(entries: list[Entry]) -> bytes:
    return encode([[e.peer, e.addr] for e in entries[:PEX_ADDRS_MAX]])


def decode_addrs(data: bytes) -> list[tuple[PeerId, Multiaddr]]:
    """A peer's answer; raises CodecError if it is malformed as a whole, skips bad entries."""
    limits = DecodeLimits(PEX_RESPONSE_BYTES_MAX, 0, ADDR_CHARS_MAX, PEX_ADDRS_MAX * 2 + 2)
    rows = expect_seq(decode(data, limits), "pex addrs", PEX_ADDRS_MAX)
    out: list[tuple[PeerId, Multiaddr]] = []
    for row in rows:
        peer_text, addr_text = expect_list(row, 2, "pex entry")
        try:
            peer = PeerId.from_base58(expect_str(peer_text, "pex peer", ADDR_CHARS_MAX))
            addr = Multiaddr.parse(expect_str(addr_text, "pex addr", ADDR_CHARS_MAX))
            addr.host_port()
        except (P2PError, ValueError):
            continue
        out.append((peer, addr))
    return out


def dialable(conn: Connection) -> Multiaddr | None:
    """Where `conn`'s peer can be dialled: the address we dialled, or its announced listen
    port on the address it came from (a listener on 0.0.0.0 announces 0.0.0.0)."""
    if conn.initiator:
        return conn.remote_addr.without_peer()
    for addr in conn.listen_addrs:
        try:
            host, port = addr.host_port()
        except P2PError:
            continue
        if scope(host) == "unspecified":
            return Multiaddr.tcp(conn.ip, port)
        return addr.without_peer()
    return None


class PeerExchange:
    def __init__(
        self,
        host: Host,
        gate: ChainGate,
        book: AddrBook,
        chain_id: str,
        settings: PexSettings,
        rng: random.Random,
        clock_ms: Callable[[], int],
    ) -> None:
        self._host = host
        self._gate = gate
        self.book = book
        self.protocol = f"/fedchain/{chain_id}/pex/1.0.0"
        self._settings = settings
        self._rng = rng
        self._clock_ms = clock_ms
        self._dialing: set[PeerId] = set()

    def start(self) -> None:
        self.book.load()
        self._host.set_request_handler(self.protocol, self._serve, PEX_REQUEST_BYTES_MAX)
        self._gate.on_admitted(self._admitted)
        # Another chain's node, learned from a peer: not worth a dial every ban period.
        self._gate.on_refused(self.book.forget)
        self._host.spawn(self._loop(), "pex")

    def add_seed(self, addr: Multiaddr) -> None:
        if addr.peer_id is not None:
            self.book.add(addr.peer_id, addr)

    # -- serving --------------------------------------------------------------------------------
    async def _serve(self, peer: PeerId, _request: bytes) -> bytes:
        if not await self._gate.wait_admitted(peer):
            raise P2PError(f"{peer.short()} has not passed the chain handshake")
        conn = self._host.connection(peer)
        if conn is None:
            raise P2PError("peer left")
        exclude = {str(peer), str(self._host.peer_id)}
        exclude.update(str(e.peer) for e in self._banned())
        return encode_addrs(self.book.good(conn.ip, PEX_ADDRS_MAX, exclude))

    def _banned(self) -> list[Entry]:
        return [e for e in self.book.entries() if self._host.is_banned(PeerId.from_base58(e.peer))]

    # -- learning -------------------------------------------------------------------------------
    def _admitted(self, peer: PeerId) -> None:
        self._host.spawn(self._learn(peer), f"pex-learn-{peer.short()}")

    async def _learn(self, peer: PeerId) -> None:
        try:
            addr = dialable(await self._host.identify(peer, PEX_TIMEOUT_MS))
        except (P2PError, TimeoutError):
            addr = None  # gone, or no identify: ask it anyway, just do not list it
        if addr is not None:
            self.book.mark_ok(peer, addr, self._clock_ms())
        await self._ask(peer)
        await self._dial_more()

    async def _ask(self, peer: PeerId) -> None:
        try:
            raw = await self._host.request(
                peer,
                self.protocol,
                encode([PEX_ADDRS_MAX]),
                timeout_ms=PEX_TIMEOUT_MS,
                response_bytes_max=PEX_RESPONSE_BYTES_MAX,
            )
            learned = decode_addrs(raw)
        except CodecError as exc:
            self._host.penalize(peer)
            log_event(log, "pex_bad_answer", logging.DEBUG, peer=str(peer), error=str(exc))
            return
        except (P2PError, TimeoutError, OSError) as exc:
            log_event(log, "pex_ask_failed", logging.DEBUG, peer=str(peer), error=str(exc))
            return
        added = 0
        for other, addr in learned:
            if other != self._host.peer_id and self.book.get(other) is None:
                added += self.book.add(other, addr)
        if added:
            log_event(log, "pex_learned", peer=str(peer), addrs=added, book=len(self.book))

    async def _dial_more(self) -> None:
        room = self._settings.peers_max - len(self._host.connected_peers()) - len(self._dialing)
        if room <= 0:
            return
        exclude = {str(p) for p in self._host.connected_peers()}
        exclude.update(str(p) for p in self._dialing)
        exclude.add(str(self._host.peer_id))
        for entry in self.book.candidates(exclude, min(room, DIALS_PER_TICK_MAX)):
            peer = PeerId.from_base58(entry.peer)
            if self._host.is_banned(peer):
                continue
            self._dialing.add(peer)
            self._host.spawn(self._dial(peer, entry), f"pex-dial-{peer.short()}")

    async def _dial(self, peer: PeerId, entry: Entry) -> None:
        try:
            await self._host.dial(entry.multiaddr())
        except (P2PError, OSError, TimeoutError) as exc:
            self.book.mark_failed(peer)
            log_event(log, "pex_dial_failed", logging.DEBUG, peer=str(peer), error=str(exc))
        finally:
            self._dialing.discard(peer)

    async def _loop(self) -> None:
        while True:
            await self._dial_more()
            await asyncio.sleep(self._settings.interval_ms / 1000)
            admitted = self._gate.admitted_peers()
            if admitted:
                await self._ask(self._rng.choice(admitted))
            try:
                self.book.save()
            except OSError as exc:
                log_event(log, "addrbook_save_failed", logging.WARNING, error=str(exc))


def start_pex(
    host: Host, gate: ChainGate, chain_id: str, book_file: Path, settings: PexSettings
) -> PeerExchange:
    """The started peer exchange of a node (its persistent peers are added as seeds)."""
    pex = PeerExchange(
        host,
        gate,
        AddrBook(book_file, strict=settings.strict),
        chain_id,
        settings,
        random.Random(),
        lambda: int(time.time() * 1000),  # wall clock: the book outlives the process
    )
    pex.start()
    return pex
