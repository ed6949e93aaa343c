"""Block sync: a node that is behind fetches blocks + commits from peers and verifies them.

Theory of operation
-------------------
Every node broadcasts `Status(height, base)` when a peer connects and every
`sync.status_interval_ms`.  The sync task compares its own stored height with the best height
peers report.  It switches to syncing when it is `sync.lag_heights_min` or more behind, or 1
behind for two checks in a row (a peer committed a block this node's consensus missed).

While syncing, it asks the best peer (`GetBlocks(next, batch)`) for consecutive blocks with
their commits; the consensus shell verifies each commit against the validator set of that
height (2/3+ of voting power, valid signatures, right block id) before the block is stored and
executed, exactly like a block decided by consensus.  A batch that fails verification penalizes
that peer and is dropped; another peer is tried next time.  Once no peer is ahead, the shell
restarts consensus at the new height and the node votes again.
"""

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from node.errors import SyncError
from node.logging import log_event
from node.network import Network
from node.p2p.errors import P2PError
from node.p2p.peer_id import PeerId
from node.wire import Blocks, GetBlocks

if TYPE_CHECKING:
    from node.service import Node

log = logging.getLogger(__name__)


class BlockSync:
    def __init__(self, node: "Node", network: Network) -> None:
        self._node = node
        self._network = network
        self._peer_heights: dict[PeerId, int] = {}
        self._behind_checks = 0
        self._wake = asyncio.Event()
        self.syncing = False
        self.synced_blocks = 0

    def on_status(self, peer: PeerId, height: int, _base: int) -> None:
        previous = self._peer_heights.get(peer, 0)
        self._peer_heights[peer] = max(previous, height)
        if height >= self._node.store.height + self._node.cfg.sync.lag_heights_min:
            self._wake.set()

    def hint(self, height: int) -> None:
        """Consensus saw a message for a later height: check peers' heights now."""
        if height > self._node.store.height + 1:
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
        interval_s = self._node.cfg.sync.status_interval_ms / 1000
        while True:
            self._node.broadcast_status()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
            # that lands as its timeout fires, and this loop then ran on after SIGTERM forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._wake.wait()
            self._wake.clear()
            peer, best = self.best_peer()
            mine = self._node.store.height
            lag = best - mine
            if peer is None or lag <= 0:
                self._behind_checks = 0
                continue
            self._behind_checks += 1
            if lag < self._node.cfg.sync.lag_heights_min and self._behind_checks < 2:
                continue
            await self._catch_up()

    async def _catch_up(self) -> None:
        self.syncing = True
        self._node.metrics.syncing.set(1)
        start_height = self._node.store.height
        log_event(log, "blocksync_started", height=start_height, target=self.best_peer()[1])
        failures = 0
        try:
            while failures < 5:
                peer, best = self.best_peer()
                mine = self._node.store.height
                if peer is None or best <= mine:
                    break
                count = min(self._node.cfg.sync.batch_blocks_max, best - mine)
                try:
                    answer = await self._network.request(
                        peer, GetBlocks(mine + 1, count), self._node.cfg.p2p.request_timeout_ms
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
                        if self._node.store.height >= mine + len(answer.blocks):
                            break
                        await self._node.shell.apply_synced_block(block, commit)
                        self.synced_blocks += 1
                except SyncError as exc:
                    failures += 1
                    self._node.penalize(peer, f"block sync: {exc}", severe=True)
                    self._peer_heights.pop(peer, None)
        finally:
            self.syncing = False
            self._node.metrics.syncing.set(0)
            self._behind_checks = 0
        log_event(
            log,
            "blocksync_finished",
            height=self._node.store.height,
            blocks=self._node.store.height - start_height,
        )
        self._node.shell.resume_after_sync()
