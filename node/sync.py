"""Block sync: a node that is behind fetches blocks + commits from peers and verifies them.

Theory of operation
-------------------
Every node broadcasts `Status(height, base)` when a peer connects and every
`sync.status_interval_ms`.  The sync task compares the height its consensus has decided (the
store may still be writing the newest block) with the best height peers report.  It switches to
syncing when it is `sync.lag_heights_min` or more behind, or 1 behind for two checks in a row (a
peer committed a block this node's consensus missed).

While syncing, it asks the best peer (`GetBlocks(next, batch)`) for consecutive blocks with
their commits and hands each to consensus (`SyncPorts.apply_block`): the consensus driver
verifies the commit against the validator set of that height (2/3+ of voting power, valid
signatures, right block id) before the block is stored and executed, exactly like a block it
decided itself, and the engine moves on to the next height.  A batch that fails verification
penalizes that peer and is dropped; another peer is tried next time.

Repair.  A stored body that fails its sha256 while the node runs (read for /blocks, for a peer's
GetBlocks, for a tx lookup) is never served; the store logs `block_body_damaged` and lists the
height in `damaged()`.  Each pass of the sync loop (at least every `status_interval_ms`, unless
the node is catching up) asks one of the live peers that report that height for the one block
(another one on the next pass), checks the body against the block committed here
(`repair_stored_body`, `committed_body_problem`: the stored commit certifies the stored id, the
body decodes to that id, its header's hashes match its txs, evidence and last commit, and its
encoding is canonical, which fixes every byte) and rewrites it (`block_body_repaired`).  A peer
that sends a different body for a committed height is penalized; one without it is skipped.
"""

import asyncio
import contextlib
import logging
from typing import Protocol

from consensus.engine.checks import contents_problem
from consensus.errors import CodecError
from consensus.types import decode_block, decode_commit, encode_block
from node.config import SyncConfig
from node.errors import StorageError, SyncError
from node.logging import log_event
from node.network import Network
from node.p2p.errors import P2PError
from node.p2p.peer_id import PeerId
from node.store.sqlite import BlockStore
from node.wire import Blocks, GetBlocks

log = logging.getLogger(__name__)

# Damaged heights asked for per pass of the sync loop (the rest wait for the next pass).
REPAIR_HEIGHTS_PER_PASS = 8


class SyncPorts(Protocol):
    """What block sync needs from the node (node/service.py wires it)."""

    def committed_height(self) -> int:
        """The last height this node has decided (consensus; the store may still be writing)."""

    async def apply_block(self, block: bytes, commit: bytes) -> bool:
        """Verify and apply one block through consensus; SyncError if invalid."""

    def announce(self) -> None:
        """Broadcast our Status to peers."""

    def penalize(self, peer: PeerId, reason: str) -> None: ...

    def set_syncing(self, syncing: bool) -> None: ...

    def damaged_heights(self) -> list[int]:
        """Stored heights whose bodies failed their check and wait for a copy from peers."""

    async def repair_body(self, height: int, body: bytes) -> str | None:
        """Check `body` against the block committed at `height` and rewrite the stored one;
        None when repaired, otherwise why the body was refused."""


class BlockSync:
    def __init__(
        self, ports: SyncPorts, network: Network, cfg: SyncConfig, request_timeout_ms: int
    ) -> None:
        self._ports = ports
        self._cfg = cfg
        self._request_timeout_ms = request_timeout_ms
        self._network = network
        self._peer_heights: dict[PeerId, int] = {}
        self._behind_checks = 0
        self._wake = asyncio.Event()
        self.syncing = False
        self.synced_blocks = 0
        self._repair_turn = 0

    def on_status(self, peer: PeerId, height: int, _base: int) -> None:
        previous = self._peer_heights.get(peer, 0)
        self._peer_heights[peer] = max(previous, height)
        if height >= self._ports.committed_height() + self._cfg.lag_heights_min:
            self._wake.set()

    def hint(self, height: int) -> None:
        """Consensus saw a message for a later height: check peers' heights now."""
        if height > self._ports.committed_height() + 1:
            self._wake.set()

    def forget(self, peer: PeerId) -> None:
        self._peer_heights.pop(peer, None)

    def best_peer(self) -> tuple[PeerId | None, int]:
        live = set(self._network.peers())
        best: tuple[PeerId | None, int] = (None, 0)
        for peer in sorted(self._peer_heights):
            height = self._peer_heights[peer]
            if peer in live and height > best[1]:
                best = (peer, height)
        return best

    async def run(self) -> None:
        interval_s = self._cfg.status_interval_ms / 1000
        while True:
            self._ports.announce()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
            # that lands as its timeout fires, and this loop then ran on after SIGTERM forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._wake.wait()
            self._wake.clear()
            peer, best = self.best_peer()
            mine = self._ports.committed_height()
            lag = best - mine
            if lag < self._cfg.lag_heights_min and self._ports.damaged_heights():
                await self._repair()  # catching up comes first
            if peer is None or lag <= 0:
                self._behind_checks = 0
                continue
            self._behind_checks += 1
            if lag < self._cfg.lag_heights_min and self._behind_checks < 2:
                continue
            await self._catch_up()

    async def _catch_up(self) -> None:
        self.syncing = True
        self._ports.set_syncing(True)
        start_height = self._ports.committed_height()
        log_event(log, "blocksync_started", height=start_height, target=self.best_peer()[1])
        failures = 0
        try:
            while failures < 5:
                peer, best = self.best_peer()
                mine = self._ports.committed_height()
                if peer is None or best <= mine:
                    break
                count = min(self._cfg.batch_blocks_max, best - mine)
                try:
                    answer = await self._network.request(
                        peer, GetBlocks(mine + 1, count), self._request_timeout_ms
                    )
                except P2PError as exc:
                    failures += 1
                    log_event(
                        log,
                        "blocksync_request_failed",
                        logging.DEBUG,
                        peer=str(peer),
                        error=str(exc),
                    )
                    self._peer_heights.pop(peer, None)
                    continue
                if not isinstance(answer, Blocks) or not answer.blocks:
                    failures += 1
                    self._peer_heights[peer] = mine
                    continue
                try:
                    for block, commit in answer.blocks:
                        if self._ports.committed_height() >= mine + len(answer.blocks):
                            break
                        await self._ports.apply_block(block, commit)
                        self.synced_blocks += 1
                except SyncError as exc:
                    failures += 1
                    self._ports.penalize(peer, f"block sync: {exc}")
                    self._peer_heights.pop(peer, None)
        finally:
            self.syncing = False
            self._ports.set_syncing(False)
            self._behind_checks = 0
        log_event(
            log,
            "blocksync_finished",
            height=self._ports.committed_height(),
            blocks=self._ports.committed_height() - start_height,
        )

    async def _repair(self) -> None:
        """Ask one peer that has the height for each damaged body (the next one on the next
        pass, so a peer that hangs or lies costs one request a pass), verify, rewrite."""
        live = set(self._network.peers())
        self._repair_turn += 1
        for height in self._ports.damaged_heights()[:REPAIR_HEIGHTS_PER_PASS]:
            holders = [
                p
                for p in sorted(self._peer_heights)
                if p in live and self._peer_heights[p] >= height
            ]
            if not holders:
                log_event(log, "block_repair_pending", logging.DEBUG, height=height)
                continue
            peer = holders[(self._repair_turn + height) % len(holders)]
            try:
                answer = await self._network.request(
                    peer, GetBlocks(height, 1), self._request_timeout_ms
                )
            except P2PError as exc:
                log_event(
                    log,
                    "block_repair_request_failed",
                    logging.DEBUG,
                    peer=str(peer),
                    height=height,
                    error=str(exc),
                )
                continue
            if not isinstance(answer, Blocks) or not answer.blocks:
                continue  # pruned there, or damaged there too: another peer next pass
            problem = await self._ports.repair_body(height, answer.blocks[0][0])
            if problem is None:
                log_event(
                    log, "block_body_refetched", logging.WARNING, height=height, peer=str(peer)
                )
            else:
                self._ports.penalize(peer, f"block {height} body: {problem}")


async def repair_stored_body(store: BlockStore, height: int, body: bytes) -> str | None:
    """SyncPorts.repair_body over the node's store: None when `body` (from a peer) is block
    `height` as committed here and has replaced the damaged one, else what is wrong with it.

    The stored commit must certify the stored block id, or our own row is broken and no peer
    can fix it (StorageError: the node halts).  Decoding and hashing up to a 16 MiB block and
    the append (and fsync) run in a worker thread."""
    stored = store.summary(height)
    commit_data = store.commit_data(height)
    if stored is None or commit_data is None:
        return None  # rolled back meanwhile: nothing to repair, and not the peer's fault
    try:
        committed_id = decode_commit(commit_data).block_id
    except CodecError:
        committed_id = b""
    if committed_id != stored.hash:
        raise StorageError(
            f"block {height}: the stored commit does not certify the stored block id"
        )
    return await asyncio.to_thread(_verify_and_rewrite, store, height, body, stored.hash)


def _verify_and_rewrite(store: BlockStore, height: int, body: bytes, block_id: bytes) -> str | None:
    problem = committed_body_problem(body, height, block_id)
    if problem is None:
        store.repair_body(height, body, verified=True)
    return problem


def committed_body_problem(body: bytes, height: int, block_id: bytes) -> str | None:
    """Why `body` is not the block committed at `height` with id `block_id` (None: it is).

    The id covers the header; the header's hashes cover the txs, the evidence and the last
    commit; the canonical encoding then fixes the bytes: a body that passes is byte for byte
    the one committed (barring a sha256 collision)."""
    try:
        block = decode_block(body)
    except CodecError as exc:
        return f"undecodable: {str(exc)[:120]}"
    header = block.header
    if header.height != height:
        return f"it is block {header.height}, not {height}"
    if block.id() != block_id:
        return "its id is not the committed block's"
    contents = contents_problem(block)
    if contents is not None:
        return contents
    if encode_block(block) != body:
        return "not canonically encoded"
    return None
