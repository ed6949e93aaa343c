"""Transaction gossip: small txs through gossipsub, large ones pushed once per link and
announced beyond.

Theory of operation
-------------------
A tx submitted over RPC enters the local mempool first.  If it is small (<=
`push_tx_bytes_max`) its bytes are published on the gossipsub topic `/fedchain/<chain>/txs/1`
(StrictNoSign, content ids; what one event-loop turn admitted goes out as one batch), whose
validation hook admits them into each receiver's mempool before they are relayed.

A large tx (an FL update) is pushed by the node that received it from the client straight to
each of its direct peers on the bulk lane (what one loop turn admitted, in messages of at most
`DIRECT_PUSH_BYTES_MAX`), and a peer that admits it announces only its hash to its other
peers.  In the full mesh of a validator set the bytes therefore cross each link once and arrive
one way, with no request round trip; in a partial mesh announcements carry them hop by hop,
and a peer whose bulk queue is full gets the announcement instead of the bytes.  (Announcing
first and pulling on request, the earlier design, put one round trip per update on a busy
event loop and capped dissemination at ~20 MB/s per node: docs/ARCHITECTURE.md.)

On an announcement the node asks the announcing peer for the hashes it has neither pending nor
recently committed nor already requested (`GetTxs`); the peer answers with those it holds.
The node waits a grace period first (`PULL_GRACE_S` in node/service.py), in which the origin's
push usually lands.  `fetch(peer, hashes, urgent=True)` is the same pull, awaited, for
compact-block reassembly (a proposal lists hashes; the validator fetches what it lacks before
it may prevote), answered ahead of the peer's bulk traffic.

A peer's tx that check_tx refuses for a reason of state (a nonce already used, a round that
closed) is not penalized: the peer may simply be a block ahead or behind.  A tx that is invalid
whatever the state (undecodable, bad signature: `InvalidTxError`) is the sender's fault, since
an honest node checks every tx before it relays it: the gossipsub message carrying it is
REJECTed (P4 for the sender) and, for gossip and direct pushes, the node's `penalize` hook
is told once per message, which bans the peer after a bounded number (issue 13: such pushes
cut the commit rate by ~30% and were never penalized).  Pulled txs are exempt: we asked for
those exact bytes, and an honest peer serves what a byzantine proposer put in a proposal.
Bytes that do not decode as a message are the Network's business (penalized there).
"""

import asyncio
import enum
import logging
from collections.abc import Callable, Iterable, Sequence

from consensus.errors import CodecError
from node.errors import MempoolError
from node.logging import log_event
from node.mempool import InvalidTxError, Mempool, tx_hash
from node.network import Network
from node.p2p.errors import P2PError
from node.p2p.gossipsub.router import Validation
from node.p2p.peer_id import PeerId
from node.wire import HASHES_MAX, GetTxs, TxAnnounce, TxPush, Txs, decode_message, encode_message

log = logging.getLogger(__name__)

ANNOUNCE_BATCH_MAX = 1_000
# Large txs pushed in one message at most: small enough that the receiver starts checking the
# first updates while the rest are on the wire.
DIRECT_PUSH_BYTES_MAX = 1024 * 1024
PULLS_IN_FLIGHT_MAX = 64


class _Admission(enum.Enum):
    ADMITTED = "admitted"
    REFUSED = "refused"  # known, full, or refused for a reason of state: no one's fault
    INVALID = "invalid"  # invalid whatever the state: the sender's fault


class TxGossip:
    def __init__(
        self,
        mempool: Mempool,
        network: Network,
        push_tx_bytes_max: int,
        request_timeout_ms: int,
        response_bytes_max: int,
        on_admitted: Callable[[bytes], None] | None = None,
        lookup: Callable[[bytes], bytes | None] | None = None,
        publish: Callable[[bytes], None] | None = None,
        penalize: Callable[[PeerId, str], None] | None = None,
    ) -> None:
        self._mempool = mempool
        self._network = network
        self._push_max = push_tx_bytes_max
        self._timeout_ms = request_timeout_ms
        self._response_max = response_bytes_max
        self._on_admitted = on_admitted
        # Where to find txs that left the mempool but a peer may still need (the block being
        # decided); defaults to the mempool alone.
        self._lookup = lookup or mempool.get
        # How batches of small txs travel: gossipsub when the node runs it, else direct pushes.
        self._publish = publish
        self._penalize = penalize
        self.invalid_from_peers = 0
        self._in_flight: dict[bytes, asyncio.Future[bytes | None]] = {}
        self._pull_slots = asyncio.Semaphore(PULLS_IN_FLIGHT_MAX)
        self._push_batch: list[bytes] = []
        self._push_batch_bytes = 0
        self._direct_batch: list[tuple[bytes, bytes]] = []  # (hash, tx) of large txs
        self._relay_batch: dict[PeerId, list[bytes]] = {}  # hashes to announce, by source
        self._flush_scheduled = False
        self.pulled_bytes = 0

    # -- local submissions ---------------------------------------------------------------------
    def submit(self, tx: bytes) -> bytes:
        """Admit a client's tx (MempoolError if refused) and start spreading it."""
        entry = self._mempool.add(tx)
        if len(tx) <= self._push_max:
            self._push_batch.append(tx)
            self._push_batch_bytes += len(tx)
        else:
            self._direct_batch.append((entry.hash, tx))
        self._schedule_flush()
        self._admitted(tx)
        return entry.hash

    def _schedule_flush(self) -> None:
        """Batch what one event-loop turn admitted into one message per peer."""
        if self._push_batch_bytes >= self._push_max:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._push_batch:
            batch, self._push_batch, self._push_batch_bytes = self._push_batch, [], 0
            msg = TxPush(batch[0]) if len(batch) == 1 else Txs(tuple(batch))
            if self._publish is not None:
                self._publish(encode_message(msg))
            else:
                self._network.broadcast(msg, bulk=True)
        if self._direct_batch:
            direct, self._direct_batch = self._direct_batch, []
            for group in _groups(direct, DIRECT_PUSH_BYTES_MAX):
                self._push_direct(group)
        if self._relay_batch:
            relays, self._relay_batch = self._relay_batch, {}
            for source, hashes in relays.items():
                for start in range(0, len(hashes), ANNOUNCE_BATCH_MAX):
                    chunk = tuple(hashes[start : start + ANNOUNCE_BATCH_MAX])
                    self._network.broadcast(TxAnnounce(chunk), exclude=source)

    def _push_direct(self, group: list[tuple[bytes, bytes]]) -> None:
        txs = tuple(tx for _, tx in group)
        data = encode_message(TxPush(txs[0]) if len(txs) == 1 else Txs(txs))
        for peer in self._network.peers():
            if not self._network.send_raw(peer, data, bulk=True):
                # Bulk queue full (a slow peer): it pulls the bytes when it has room.
                self._network.send(peer, TxAnnounce(tuple(h for h, _ in group)))

    def _admitted(self, tx: bytes) -> None:
        if self._on_admitted is not None:
            self._on_admitted(tx)

    # -- from peers ----------------------------------------------------------------------------
    def validate_gossip(self, peer: PeerId, data: bytes) -> Validation:
        """The gossipsub validation hook of the tx topic: admit the batch into the mempool.

        ACCEPT (and relay) if at least one tx was new and valid; IGNORE if all were known or
        refused by check_tx (state may differ between nodes: no penalty); REJECT (the router
        penalizes the forwarder) only for bytes that are not a tx batch at all.
        """
        try:
            msg = decode_message(data, self._response_max)
        except CodecError:
            return Validation.REJECT
        match msg:
            case TxPush(tx):
                txs: Sequence[bytes] = (tx,)
            case Txs(batch):
                txs = batch
            case _:
                return Validation.REJECT
        outcomes = [
            self._try_add(peer, tx, h)
            for tx, h in ((tx, tx_hash(tx)) for tx in txs)
            if not self._mempool.seen(h)
        ]
        if _Admission.INVALID in outcomes:
            self._misbehaved(peer, "gossiped an invalid tx")
            return Validation.REJECT
        return Validation.ACCEPT if _Admission.ADMITTED in outcomes else Validation.IGNORE

    def on_push(self, peer: PeerId, txs: Sequence[bytes]) -> None:
        """Txs pushed by the peer that received them from a client (it pushed them to all of its
        peers).  Small ones are not relayed: anyone else that needs one for a proposal fetches
        it from the proposer.  Large ones are announced to our other peers, so they also reach
        a node that is not the origin's neighbour."""
        invalid = False
        for tx in txs:
            h = tx_hash(tx)
            if self._mempool.seen(h):
                continue
            outcome = self._try_add(peer, tx, h)
            invalid = invalid or outcome is _Admission.INVALID
            if outcome is _Admission.ADMITTED and len(tx) > self._push_max:
                self._relay_batch.setdefault(peer, []).append(h)
                self._schedule_flush()
        if invalid:
            self._misbehaved(peer, "pushed an invalid tx")

    def on_announce(self, peer: PeerId, hashes: Sequence[bytes]) -> list[bytes]:
        """Hashes worth pulling from `peer` (the caller awaits `pull`)."""
        return [h for h in hashes if not self._mempool.seen(h) and h not in self._in_flight]

    async def pull(self, peer: PeerId, hashes: Sequence[bytes]) -> None:
        for start in range(0, len(hashes), ANNOUNCE_BATCH_MAX):
            await self.fetch(peer, hashes[start : start + ANNOUNCE_BATCH_MAX])

    def serve_get_txs(self, request: GetTxs) -> Txs:
        out: list[bytes] = []
        total = 0
        for h in request.hashes:
            tx = self._lookup(h)
            if tx is None:
                continue
            if out and total + len(tx) > self._response_max - 1024:
                break
            out.append(tx)
            total += len(tx)
        return Txs(tuple(out))

    async def fetch(
        self, peer: PeerId, hashes: Iterable[bytes], urgent: bool = False
    ) -> dict[bytes, bytes]:
        """Get these txs into the mempool (or return them if the mempool refuses them).

        Returns the bytes of every requested hash that is now held, by hash.  `urgent` (a
        proposal waits on them) asks the peer to answer ahead of its bulk traffic.
        """
        wanted = list(dict.fromkeys(hashes))[:HASHES_MAX]
        found: dict[bytes, bytes] = {}
        waits: list[tuple[bytes, asyncio.Future[bytes | None]]] = []
        to_ask: list[bytes] = []
        loop = asyncio.get_running_loop()
        for h in wanted:
            tx = self._mempool.get(h)
            if tx is not None:
                found[h] = tx
            elif h in self._in_flight:
                waits.append((h, self._in_flight[h]))
            else:
                fut: asyncio.Future[bytes | None] = loop.create_future()
                self._in_flight[h] = fut
                to_ask.append(h)
        if to_ask:
            got = await self._pull(peer, to_ask, urgent)
            for h in to_ask:
                fut = self._in_flight.pop(h)
                tx = got.get(h)
                if tx is not None:
                    found[h] = tx
                    # No penalty for an invalid one: we asked for exactly these bytes, and an
                    # honest peer serves what a (byzantine) proposer put in its proposal.
                    if self._try_add(peer, tx, h) is _Admission.ADMITTED:
                        self._network.broadcast(TxAnnounce((h,)), exclude=peer)
                fut.set_result(tx)
        for h, fut in waits:
            tx = await asyncio.shield(fut)
            if tx is not None:
                found[h] = tx
        return found

    async def _pull(
        self, peer: PeerId, hashes: list[bytes], urgent: bool = False
    ) -> dict[bytes, bytes]:
        """Ask `peer` for `hashes`, and again for the rest while each answer brings some.

        An answer is capped at the response size (serve_get_txs), so a batch of large FL
        updates arrives over several requests; asking once lost everything past the cap and
        left a 1,000-update proposal unassemblable.
        """
        got: dict[bytes, bytes] = {}
        remaining = hashes
        while remaining:
            try:
                request = GetTxs(tuple(remaining))
                if urgent:  # not behind the gossip's pulls either
                    answer = await self._network.request(peer, request, self._timeout_ms, True)
                else:
                    async with self._pull_slots:
                        answer = await self._network.request(peer, request, self._timeout_ms)
            except P2PError as exc:
                log_event(log, "tx_pull_failed", logging.DEBUG, peer=str(peer), error=str(exc))
                break
            if not isinstance(answer, Txs):
                break
            received = 0
            for tx in answer.txs:
                h = tx_hash(tx)
                if h in self._in_flight and h not in got:
                    got[h] = tx
                    self.pulled_bytes += len(tx)
                    received += 1
            if received == 0:
                break
            remaining = [h for h in remaining if h not in got]
        return got

    def _try_add(self, peer: PeerId, tx: bytes, h: bytes) -> _Admission:
        """Admit a peer's tx whose hash `h` we computed ourselves."""
        try:
            self._mempool.add(tx, h)
        except InvalidTxError as exc:
            self.invalid_from_peers += 1
            log_event(
                log,
                "peer_tx_invalid",
                logging.DEBUG,
                peer=str(peer),
                tx=h.hex()[:16],
                reason=exc.reason[:200],
            )
            return _Admission.INVALID
        except MempoolError as exc:
            if exc.code not in ("duplicate",):
                log_event(
                    log,
                    "peer_tx_refused",
                    logging.DEBUG,
                    peer=str(peer),
                    tx=h.hex()[:16],
                    reason=exc.reason[:200],
                )
            return _Admission.REFUSED
        self._admitted(tx)
        return _Admission.ADMITTED

    def _misbehaved(self, peer: PeerId, reason: str) -> None:
        """Once per message: a peer that sends invalid txs loses standing (node.penalize)."""
        if self._penalize is not None:
            self._penalize(peer, reason)


def _groups(
    batch: list[tuple[bytes, bytes]], bytes_max: int
) -> Iterable[list[tuple[bytes, bytes]]]:
    """Consecutive runs of `batch` of at most `bytes_max` bytes (a larger tx goes alone)."""
    group: list[tuple[bytes, bytes]] = []
    size = 0
    for item in batch:
        if group and size + len(item[1]) > bytes_max:
            yield group
            group, size = [], 0
        group.append(item)
        size += len(item[1])
    if group:
        yield group
