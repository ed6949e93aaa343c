"""The chain handshake: peers show each other their chain id, genesis hash and protocol version
before any block, vote or chain request passes between them.

Theory of operation
-------------------
When a connection comes up, each side sends a `Hello` on `/fedchain/hello/1.0.0` (a
request/response through the Host's helper; the answer is the other side's `Hello`), so both
sides judge both hellos, whichever request arrives first.  The protocol id carries no chain id
on purpose: a node of another chain must still be able to say which chain it is on, so the
refusal can name the difference.

`judge(ours, theirs)` (pure) names what differs.  A match admits the peer: the chain links
(node/network.py) open only for admitted peers, and its chain protocols wait for the verdict
(`wait_admitted`).  A mismatch refuses it: a `peer_refused` WARNING on each side naming their
value and ours, then a ban of the peer id (not its address: a loopback testnet shares one) a
moment later, so our own answer still reaches it and it can log why too.  A node must never
build a chain on a genesis its peers do not share, so until admitted a peer gets nothing.

A peer that does not speak the protocol at all (a py-libp2p tool, a plain libp2p host) is not a
chain node: it keeps its connection for identify, ping and gossipsub, never a chain link.
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from consensus.app import Genesis
from consensus.codec import (
    DecodeLimits,
    decode,
    encode,
    expect_bytes,
    expect_int,
    expect_list,
    expect_str,
)
from consensus.errors import CodecError
from node.genesis import genesis_hash
from node.logging import log_event
from node.p2p.errors import P2PError, ProtocolNotSupported, RequestTimeout, StreamClosed
from node.p2p.host import Host
from node.p2p.peer_id import PeerId

log = logging.getLogger(__name__)

HELLO_PROTOCOL = "/fedchain/hello/1.0.0"
# Bumped when peers of different versions can no longer share a chain (wire or block format).
CHAIN_PROTOCOL_VERSION = 1
HELLO_BYTES_MAX = 512
CHAIN_ID_CHARS_MAX = 64
GENESIS_HASH_BYTES = 32
HELLO_TIMEOUT_MS = 10_000
# A peer on another chain or genesis will not change its mind soon; a restarted, fixed node is
# welcome again after this.
MISMATCH_BAN_MS = 600_000
# Time for our hello answer to reach a refused peer before the ban closes the connection.
REFUSE_GRACE_S = 0.5
HELLO_ATTEMPTS = 3

AdmittedCallback = Callable[[PeerId], None]


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    chain_id: str
    genesis_hash: bytes

    def encode(self) -> bytes:
        return encode([self.version, self.chain_id, self.genesis_hash])

    @staticmethod
    def decode(data: bytes) -> "Hello":
        """Raises CodecError on anything but a well-formed hello."""
        limits = DecodeLimits(HELLO_BYTES_MAX, GENESIS_HASH_BYTES, CHAIN_ID_CHARS_MAX * 4, 8)
        version, chain_id, genesis = expect_list(decode(data, limits), 3, "hello")
        return Hello(
            expect_int(version, "hello version", 0, 2**32 - 1),
            expect_str(chain_id, "hello chain_id", CHAIN_ID_CHARS_MAX),
            expect_bytes(genesis, "hello genesis_hash", GENESIS_HASH_BYTES),
        )


@dataclass(frozen=True, slots=True)
class Mismatch:
    """What differs between two hellos, in the words the log line uses."""

    field: str  # "chain_id", "genesis_hash" or "version"
    theirs: str
    ours: str


def judge(ours: Hello, theirs: Hello) -> Mismatch | None:
    """None if the peer may share our chain; else the first difference, most telling first."""
    if theirs.chain_id != ours.chain_id:
        return Mismatch("chain_id", theirs.chain_id, ours.chain_id)
    if theirs.genesis_hash != ours.genesis_hash:
        return Mismatch(
            "genesis_hash", theirs.genesis_hash.hex()[:16], ours.genesis_hash.hex()[:16]
        )
    if theirs.version != ours.version:
        return Mismatch("version", str(theirs.version), str(ours.version))
    return None


class ChainGate:
    """Admits peers to the chain protocols once their hello matches ours (see module doc)."""

    def __init__(
        self,
        host: Host,
        ours: Hello,
        ban_ms: int = MISMATCH_BAN_MS,
        timeout_ms: int = HELLO_TIMEOUT_MS,
    ) -> None:
        self._host = host
        self._ours = ours
        self._ban_ms = ban_ms
        self._timeout_ms = timeout_ms
        # One verdict per live connection: True admitted, False refused or not a chain node.
        self._verdicts: dict[PeerId, asyncio.Future[bool]] = {}
        self._callbacks: list[AdmittedCallback] = []
        self._refused_callbacks: list[AdmittedCallback] = []
        self.refused = 0

    def start(self) -> None:
        self._host.set_request_handler(HELLO_PROTOCOL, self._serve, HELLO_BYTES_MAX)
        self._host.on_peer_connected(self._connected)
        self._host.on_peer_disconnected(self._disconnected)
        for peer in self._host.connected_peers():
            self._connected(peer)

    def on_admitted(self, callback: AdmittedCallback) -> None:
        self._callbacks.append(callback)

    def on_refused(self, callback: AdmittedCallback) -> None:
        self._refused_callbacks.append(callback)

    def admits(self, peer: PeerId) -> bool:
        verdict = self._verdicts.get(peer)
        return verdict is not None and verdict.done() and verdict.result()

    def admitted_peers(self) -> list[PeerId]:
        return sorted(p for p in self._verdicts if self.admits(p))

    async def wait_admitted(self, peer: PeerId) -> bool:
        """The verdict on `peer`, waiting for it (bounded) if the handshake is under way."""
        verdict = self._verdicts.get(peer)
        if verdict is None:
            return False
        try:
            async with asyncio.timeout(self._timeout_ms / 1000):
                return await asyncio.shield(verdict)
        except TimeoutError:
            return False

    # -- connection events ----------------------------------------------------------------------
    def _verdict(self, peer: PeerId) -> asyncio.Future[bool]:
        verdict = self._verdicts.get(peer)
        if verdict is None:
            verdict = asyncio.get_running_loop().create_future()
            self._verdicts[peer] = verdict
        return verdict

    def _connected(self, peer: PeerId) -> None:
        self._verdict(peer)
        self._host.spawn(self._greet(peer), f"chain-hello-{peer.short()}")

    def _disconnected(self, peer: PeerId) -> None:
        verdict = self._verdicts.pop(peer, None)
        if verdict is not None and not verdict.done():
            verdict.set_result(False)

    async def _ask_hello(self, peer: PeerId) -> bytes:
        """Their hello, asked on a fresh stream up to HELLO_ATTEMPTS times within the timeout,
        while the peer is connected and undecided.

        Two nodes that dial each other at start (every validator's persistent peers) open two
        connections, and the host closes one of them (node/p2p/host.py, the lower dialer's
        wins) with any request on it: StreamClosed, while the peer stays connected on the
        other.  Each side's hello went out on its first connection, so when both lost theirs,
        neither was asked again and each waited for the other's until the timeout, then
        dropped the link (CI: 'peers 2 != 3').  A request that times out is asked again too."""
        per_attempt_ms = max(1, self._timeout_ms // HELLO_ATTEMPTS)
        for attempt in range(HELLO_ATTEMPTS):
            try:
                return await self._host.request(
                    peer,
                    HELLO_PROTOCOL,
                    self._ours.encode(),
                    timeout_ms=per_attempt_ms,
                    response_bytes_max=HELLO_BYTES_MAX,
                )
            except (RequestTimeout, StreamClosed) as exc:
                again = self._undecided(peer) and self._host.is_connected(peer)
                if attempt == HELLO_ATTEMPTS - 1 or not again:
                    raise
                log_event(log, "peer_hello_retry", logging.DEBUG, peer=str(peer), error=str(exc))
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _greet(self, peer: PeerId) -> None:
        try:
            theirs = Hello.decode(await self._ask_hello(peer))
        except ProtocolNotSupported:
            log_event(log, "peer_not_chain_node", logging.INFO, peer=str(peer))
            self._decide(peer, False)
            return
        except CodecError as exc:
            self._refuse(peer, Mismatch("hello", f"undecodable: {exc}"[:120], "valid hello"))
            return
        except (P2PError, OSError, TimeoutError) as exc:
            log_event(log, "peer_hello_failed", logging.DEBUG, peer=str(peer), error=str(exc))
            # Its own hello to us may still settle the verdict.  If none comes, the connection
            # is dropped (not banned): a chain peer left without a link would stay useless
            # until it disconnected, and a persistent peer is redialled for a fresh handshake.
            if not await self.wait_admitted(peer) and self._undecided(peer):
                log_event(log, "peer_hello_timeout", logging.WARNING, peer=str(peer))
                self._host.disconnect(peer)
            return
        self._judge(peer, theirs)

    def _undecided(self, peer: PeerId) -> bool:
        verdict = self._verdicts.get(peer)
        return verdict is not None and not verdict.done()

    async def _serve(self, peer: PeerId, request: bytes) -> bytes:
        try:
            theirs = Hello.decode(request)
        except CodecError as exc:
            self._refuse(peer, Mismatch("hello", f"undecodable: {exc}"[:120], "valid hello"))
            return self._ours.encode()
        self._judge(peer, theirs)
        return self._ours.encode()

    # -- verdicts -------------------------------------------------------------------------------
    def _judge(self, peer: PeerId, theirs: Hello) -> None:
        mismatch = judge(self._ours, theirs)
        if mismatch is None:
            self._decide(peer, True)
        else:
            self._refuse(peer, mismatch)

    def _decide(self, peer: PeerId, admitted: bool) -> bool:
        """Settle the verdict once; False if it was settled already (or the peer is gone)."""
        if not self._host.is_connected(peer):
            return False
        verdict = self._verdict(peer)
        if verdict.done():
            return False
        verdict.set_result(admitted)
        if admitted:
            log_event(log, "peer_admitted", logging.DEBUG, peer=str(peer))
            for callback in self._callbacks:
                callback(peer)
        return True

    def _refuse(self, peer: PeerId, mismatch: Mismatch) -> None:
        if not self._decide(peer, False):
            return
        self.refused += 1
        log_event(
            log,
            "peer_refused",
            logging.WARNING,
            peer=str(peer),
            reason=f"{mismatch.field} differs",
            field=mismatch.field,
            theirs=mismatch.theirs[:80],
            ours=mismatch.ours[:80],
            ban_ms=self._ban_ms,
        )
        for callback in self._refused_callbacks:
            callback(peer)
        self._host.spawn(self._ban_later(peer), f"chain-refuse-{peer.short()}")

    async def _ban_later(self, peer: PeerId) -> None:
        await asyncio.sleep(REFUSE_GRACE_S)
        # Its id only: on a loopback testnet every peer shares the address.
        self._host.ban(peer, self._ban_ms, address=False)


def open_gate(host: Host, genesis: Genesis) -> ChainGate:
    """The started gate of a node whose chain starts at `genesis`."""
    gate = ChainGate(host, Hello(CHAIN_PROTOCOL_VERSION, genesis.chain_id, genesis_hash(genesis)))
    gate.start()
    return gate
