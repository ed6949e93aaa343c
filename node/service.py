"""`fedchain start`: one process wiring p2p, consensus, mempool, app, store, RPC and metrics.

Theory of operation
-------------------
Start-up, in order:
  1. take HOME/data/node.lock (two processes never share a home);
  2. open the block store, the consensus WAL (repairing a torn tail, refusing a corrupt middle)
     and the LastSigned file;
  3. recover the application: restore the newest snapshot (or run init_chain on genesis) and
     replay stored blocks above it through finalize_block + commit, checking every app hash
     against the one stored with the block (block -> state -> app commit);
  4. start the p2p Host, the node's peer links, tx gossip, the RPC and metrics servers;
  5. run the consensus shell (node/consensus_shell.py), which owns the engine state in one task,
     replays the WAL of the current height and then follows the network; block sync
     (node/sync.py) runs beside it and takes over while the node lags (and fetches back any
     block body found damaged: by a read, or by the scrub that reads them all back slowly).
SIGTERM/SIGINT set a stop event; every task is cancelled inside the TaskGroup, the WAL and the
store are closed, and the process exits 0.
"""

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
from typing import Any

from aiohttp import web

from consensus.app import Application, CheckTxResult, QueryResult
from node.allocator import trim_heap_periodically
from node.apps import build_app
from node.chaincheck import open_gate
from node.config import NodeConfig
from node.consensus_shell import ConsensusShell
from node.errors import MempoolError, NodeError
from node.events import EventBus
from node.genesis import GenesisFile
from node.home import Home
from node.keys import read_key
from node.logging import log_event
from node.mempool import Mempool, tx_hash
from node.metrics import NodeMetrics, metrics_app
from node.network import Network
from node.ops import start_ops
from node.p2p.errors import P2PError
from node.p2p.gossipsub.service import GossipSub
from node.p2p.host import Host
from node.p2p.peer_id import Identity, PeerId
from node.peering import open_host
from node.rpc import views
from node.rpc.server import RpcServer
from node.store.sqlite import BlockStore, StoredBlock
from node.sync import BlockSync, repair_stored_body
from node.txgossip import TxGossip
from node.wal import Wal
from node.wire import (
    Blocks,
    CompactProposal,
    ConsensusMsg,
    GetBlocks,
    GetStatus,
    GetTxs,
    Message,
    Status,
    TxAnnounce,
    TxPush,
    Txs,
)

log = logging.getLogger(__name__)

PEER_QUEUE_BYTES_MAX = 256 * 1024 * 1024
PENALTY_SEVERE = 10
PENALTY_BAN = 20
PEER_BAN_MS = 10_000
BLOCKS_RESPONSE_BYTES_MAX = 32 * 1024 * 1024
# An announced tx is pulled only if its push has not landed this long after the announcement:
# in the validators' full mesh the origin's push is usually still in its bulk lane when another
# peer's announcement arrives, and pulling at once fetched ~20% of all updates twice.  Pulls
# then add load that slows the pushes further, so the grace is generous: a proposal never
# waits for it (reassembly fetches at once, urgently), only relaying in a partial mesh does.
PULL_GRACE_S = 2.0


class Node:
    def __init__(self, home: Home, cfg: NodeConfig, genesis_file: GenesisFile) -> None:
        self.home = home
        self.cfg = cfg
        self.genesis = genesis_file.genesis
        self.app_name = genesis_file.app
        self.node_key = read_key(home.node_key_file)
        self.validator_key = read_key(home.validator_key_file)
        self.identity = Identity.from_seed(self.node_key.seed)
        self.metrics = NodeMetrics()
        self.events = EventBus(cfg.rpc.ws_clients_max, cfg.rpc.ws_queue_events_max)
        self._stop = asyncio.Event()
        self._lock_fd = -1
        self._store: BlockStore | None = None
        self._wal: Wal | None = None
        self._app: Application | None = None
        self._mempool: Mempool | None = None
        self._host: Host | None = None
        self._network: Network | None = None
        self._gossip: TxGossip | None = None
        self._shell: ConsensusShell | None = None
        self._sync: BlockSync | None = None
        self._pubsub: GossipSub | None = None
        self._offences: dict[PeerId, int] = {}

    # -- typed accessors (set during run) ------------------------------------------------------
    @property
    def store(self) -> BlockStore:
        if self._store is None:
            raise NodeError("store used before the node started")
        return self._store

    @property
    def app(self) -> Application:
        if self._app is None:
            raise NodeError("app used before the node started")
        return self._app

    @property
    def mempool(self) -> Mempool:
        if self._mempool is None:
            raise NodeError("mempool used before the node started")
        return self._mempool

    @property
    def shell(self) -> ConsensusShell:
        if self._shell is None:
            raise NodeError("consensus used before the node started")
        return self._shell

    def stop(self) -> None:
        self._stop.set()

    def _check_tx(self, tx: bytes) -> CheckTxResult:
        """The app's check_tx; an exception there is the app's bug, answered as a refusal."""
        try:
            return self.app.check_tx(tx)
        except Exception as exc:
            log_event(log, "app_check_tx_failed", logging.ERROR, exc_info=True)
            return CheckTxResult(code=1, reason=f"check_tx failed: {type(exc).__name__}")

    def _release_tx(self, tx: bytes) -> None:
        try:
            self.app.release_tx(tx)
        except Exception:
            log_event(log, "app_release_tx_failed", logging.ERROR, exc_info=True)

    # -- lifecycle -------------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signo in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signo, self.stop)
        # `kill -USR2 <pid>`: every asyncio task's stack to stderr (SIGUSR1 shows the threads).
        loop.add_signal_handler(signal.SIGUSR2, _dump_tasks)
        self._lock()
        try:
            await self._run()
        finally:
            if self._shell is not None:
                self._shell.close()
            if self._wal is not None:
                self._wal.close()
            if self._store is not None:
                self._store.close()
            self._unlock()
            for signo in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2):
                loop.remove_signal_handler(signo)

    def _lock(self) -> None:
        self.home.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.home.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise NodeError(f"{self.home.root} is in use by another fedchain process") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    async def _run(self) -> None:
        cfg = self.cfg
        self._store = BlockStore(self.home.store_file, fsync=cfg.storage.fsync)
        # A damaged or cut-short body at the tail is rolled back (logged) rather than fatal;
        # block sync fetches those heights again from peers.
        self._store.recover_tail()
        self._wal = Wal(self.home.wal_file)
        recovery = self._wal.open(stored_height=self._store.height)
        if recovery.repaired_bytes:
            log_event(
                log,
                "wal_tail_repaired",
                logging.WARNING,
                bytes=recovery.repaired_bytes,
                height=recovery.last_end_height,
            )
        self._app = build_app(self.app_name)
        self._mempool = Mempool.from_config(self._check_tx, cfg.mempool, release=self._release_tx)
        self._shell = ConsensusShell(
            node=self,
            wal=self._wal,
            wal_recovery=recovery,
        )
        self.shell.recover()
        async with open_host(self.identity, cfg.p2p) as host:
            self._host = host
            self._network = Network(
                host,
                self.genesis.chain_id,
                on_message=self._on_message,
                on_request=self._on_request,
                on_invalid=self._on_invalid,
                frame_bytes_max=cfg.p2p.request_bytes_max,
                queue_bytes_max=PEER_QUEUE_BYTES_MAX,
                stranger_frame_bytes_max=cfg.p2p.stranger_message_bytes_max,
                frame_timeout_ms=cfg.p2p.message_timeout_ms,
            )
            self._network.on_peer_change(self._on_peer_change)
            self._network.gate = open_gate(host, self.genesis)  # chain id + genesis handshake
            self._network.start()
            pubsub = GossipSub(host, cfg.p2p.gossipsub.router_config())
            self._pubsub = pubsub
            tx_topic = f"/fedchain/{self.genesis.chain_id}/txs/1"
            self._gossip = TxGossip(
                self.mempool,
                self._network,
                cfg.p2p.push_tx_bytes_max,
                cfg.p2p.request_timeout_ms,
                cfg.p2p.request_bytes_max,
                on_admitted=self._on_tx_admitted,
                lookup=self.shell.lookup_tx,
                publish=lambda data: self._publish(pubsub, tx_topic, data),
                # A forged or undecodable tx is never honest: banned after two such messages.
                penalize=lambda peer, reason: self.penalize(peer, reason, severe=True),
            )
            pubsub.start()
            gossip = self._gossip
            pubsub.subscribe(
                tx_topic,
                lambda peer, message: gossip.validate_gossip(peer, message.data),
                strict_sign=False,
                on_message=lambda _message: None,
            )
            self._sync = BlockSync(
                _SyncPorts(self), self._network, cfg.sync, cfg.p2p.request_timeout_ms
            )
            try:
                await host.listen(cfg.p2p.listen_host, cfg.p2p.listen_port)
            except OSError as exc:
                raise NodeError(
                    f"p2p.listen_port: cannot listen on {cfg.p2p.listen_host}:"
                    f"{cfg.p2p.listen_port}: {exc.strerror or exc}"
                ) from None
            for addr in cfg.p2p.persistent_peers:
                try:
                    host.add_persistent_peer(addr)
                except P2PError as exc:
                    raise NodeError(f"p2p.persistent_peers: {addr[:80]}: {exc}") from None
            self.ops = start_ops(self, host, self._network)  # peer exchange, signing, metrics
            try:
                runners = await self._start_http()
            except OSError as exc:
                raise NodeError(
                    f"rpc/metrics listen_port: cannot listen: {exc.strerror or exc}"
                ) from None
            log_event(
                log,
                "node_started",
                moniker=cfg.moniker,
                node_id=str(self.identity.peer_id),
                chain_id=self.genesis.chain_id,
                height=self.store.height,
                validator=self.validator_key.public_key.hex()[:16],
                p2p_port=cfg.p2p.listen_port,
                rpc_port=cfg.rpc.listen_port,
            )
            try:
                async with asyncio.TaskGroup() as tg:
                    tasks = [
                        tg.create_task(self.shell.run(self._network), name="consensus"),
                        tg.create_task(self._sync.run(), name="blocksync"),
                        tg.create_task(self._gossip_worker(), name="tx-pull"),
                    ]
                    if cfg.storage.scrub_interval_ms > 0:
                        tasks.append(tg.create_task(self._scrub(), name="block-scrub"))
                    if cfg.memory.trim_interval_ms > 0:
                        trim = trim_heap_periodically(cfg.memory.trim_interval_ms / 1000)
                        tasks.append(tg.create_task(trim, name="heap-trim"))
                    await self._stop.wait()
                    log_event(log, "node_stopping", height=self.store.height)
                    for task in tasks:
                        task.cancel()
            finally:
                for runner in runners:
                    await runner.cleanup()
        pulled = 0 if self._gossip is None else self._gossip.pulled_bytes
        log_event(log, "node_stopped", height=self.store.height, tx_pulled_bytes=pulled)

    async def _start_http(self) -> list[web.AppRunner]:
        runners: list[web.AppRunner] = []
        if self.cfg.rpc.enabled:
            rpc = RpcServer(self, self.cfg.rpc.body_bytes_max, self.cfg.rpc)
            runners.append(await rpc.start(self.cfg.rpc.listen_host, self.cfg.rpc.listen_port))
        if self.cfg.metrics.enabled:
            runner = web.AppRunner(metrics_app(self.metrics), access_log=None)
            await runner.setup()
            await web.TCPSite(
                runner, self.cfg.metrics.listen_host, self.cfg.metrics.listen_port
            ).start()
            runners.append(runner)
        return runners

    async def _scrub(self) -> None:
        """Read one stored body back every storage.scrub_interval_ms, round and round; a
        damaged one is listed in store.damaged(), and block sync fetches it again."""
        interval_s = self.cfg.storage.scrub_interval_ms / 1000
        height = 0
        while True:
            await asyncio.sleep(interval_s)
            height = await asyncio.to_thread(self.store.scrub_next, height)

    # -- peers -----------------------------------------------------------------------------------
    _pulls: asyncio.Queue[tuple[float, PeerId, list[bytes]]]

    async def _gossip_worker(self) -> None:
        """Pull announced txs a grace period after their announcement, a few requests at a
        time, in announcement order (TxGossip.fetch skips what arrived meanwhile)."""
        self._pulls = asyncio.Queue(10_000)
        loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as tg:
            slots = asyncio.Semaphore(8)
            while True:
                due, peer, hashes = await self._pulls.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                await slots.acquire()

                async def pull(peer: PeerId = peer, hashes: list[bytes] = hashes) -> None:
                    try:
                        if self._gossip is not None:
                            await self._gossip.pull(peer, hashes)
                    finally:
                        slots.release()

                tg.create_task(pull())

    def _on_message(self, peer: PeerId, msg: Message) -> None:
        match msg:
            case TxPush(tx):
                if self._gossip is not None:
                    self._gossip.on_push(peer, (tx,))
            case Txs(txs):
                if self._gossip is not None:
                    self._gossip.on_push(peer, txs)
            case TxAnnounce(hashes):
                if self._gossip is not None:
                    wanted = self._gossip.on_announce(peer, hashes)
                    if wanted:
                        try:
                            due = asyncio.get_running_loop().time() + PULL_GRACE_S
                            self._pulls.put_nowait((due, peer, wanted))
                        except (asyncio.QueueFull, AttributeError):
                            log_event(log, "tx_pull_queue_full", logging.WARNING, peer=str(peer))
            case ConsensusMsg() | CompactProposal():
                self.shell.on_peer_message(peer, msg)
            case Status(height, base):
                if self._sync is not None:
                    self._sync.on_status(peer, height, base)
            case _:
                self._on_invalid(peer, f"unexpected pushed message {type(msg).__name__}")

    async def _on_request(self, peer: PeerId, msg: Message) -> Message:
        match msg:
            case GetTxs():
                if self._gossip is None:
                    return Txs(())
                return self._gossip.serve_get_txs(msg)
            case GetBlocks(start, count):
                stored = self.store.blocks(start, count, BLOCKS_RESPONSE_BYTES_MAX)
                return Blocks(tuple((b.data, b.commit_data) for b in stored))
            case GetStatus():
                return Status(self.store.height, self.store.base_height())
            case _:
                self._on_invalid(peer, f"unexpected request {type(msg).__name__}")
                return Txs(())

    def _on_invalid(self, peer: PeerId, reason: str) -> None:
        self.penalize(peer, reason, severe=True)

    def penalize(self, peer: PeerId, reason: str, severe: bool = False) -> None:
        """Count a peer's offence; garbage bytes (severe) or repeated offences cost a ban."""
        self.metrics.peer_penalties.inc()
        score = self._offences.get(peer, 0) + (PENALTY_SEVERE if severe else 1)
        self._offences[peer] = score
        log_event(
            log, "peer_misbehaved", logging.WARNING, peer=str(peer), reason=reason, score=score
        )
        if score >= PENALTY_BAN and self._host is not None:
            self._offences.pop(peer, None)
            log_event(log, "peer_banned", logging.WARNING, peer=str(peer), ban_ms=PEER_BAN_MS)
            self._host.ban(peer, PEER_BAN_MS)

    def _publish(self, pubsub: GossipSub, topic: str, data: bytes) -> None:
        try:
            pubsub.publish_nowait(topic, data)
        except P2PError as exc:
            log_event(log, "tx_publish_failed", logging.WARNING, error=str(exc))

    def sync_hint(self, height: int) -> None:
        if self._sync is not None:
            self._sync.hint(height)

    @property
    def gossip(self) -> TxGossip | None:
        return self._gossip

    @property
    def pubsub(self) -> GossipSub | None:
        """The gossipsub router of the tx topic (None until the node has started)."""
        return self._pubsub

    def _on_peer_change(self, peer: PeerId, connected: bool) -> None:
        peers = len(self._network.peers()) if self._network is not None else 0
        self.metrics.peers.set(peers)
        log_event(
            log,
            "peer_connected" if connected else "peer_disconnected",
            peer=str(peer),
            peers=peers,
        )
        if connected:
            if self._network is not None:
                self._network.send(peer, Status(self.store.height, self.store.base_height()))
            self.shell.on_peer_connected(peer)

    def _on_tx_admitted(self, _tx: bytes) -> None:
        self.metrics.mempool_txs.set(len(self.mempool))
        self.metrics.mempool_bytes.set(self.mempool.size_bytes)
        self.shell.on_tx_admitted()

    def broadcast_status(self) -> None:
        if self._network is not None:
            self._network.broadcast(Status(self.store.height, self.store.base_height()))

    # -- RpcBackend ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        # The summary, not the block: no body read and hashed per poll, none damaged either.
        stored = self.store.summary(self.store.height) if self.store.height else None
        body: dict[str, Any] = {
            "node_id": str(self.identity.peer_id),
            "moniker": self.cfg.moniker,
            "chain_id": self.genesis.chain_id,
            "height": self.store.height,
            "latest_block_hash": stored.hash.hex() if stored else "",
            "latest_app_hash": stored.app_hash.hex() if stored else "",
            "latest_block_time_ms": stored.time_ms if stored else 0,
            "peers": len(self._network.peers()) if self._network is not None else 0,
            "mempool_txs": len(self.mempool),
            "mempool_bytes": self.mempool.size_bytes,
            "syncing": self._sync.syncing if self._sync is not None else False,
            "validator": self.validator_key.public_key.hex(),
        }
        body.update(self.ops.signing.status())  # signing, missed_blocks (node/signing.py)
        body.update(
            views.consensus_status(
                self.shell.state, self.validator_key.public_key, self.shell.fl_round
            )
        )
        return body

    def healthy(self) -> bool:
        return self.store.height > 0 or (self._sync is not None and self._sync.syncing)

    async def submit_tx(self, tx: bytes) -> bytes:
        if self._gossip is None:
            raise MempoolError("node is starting", "full")
        # Replays of recently committed txs hit the mempool's cache (409 duplicate); older
        # ones fail the app's nonce check, and only then does the tx index say it is a replay
        # (a store lookup for every submission would put SQLite on the hot path).
        try:
            return self._gossip.submit(tx)
        except MempoolError as exc:
            refusal = exc
            if exc.code == "check_tx":
                found = self.store.tx(tx_hash(tx))
                if found is not None:
                    refusal = MempoolError(
                        f"transaction already committed at height {found.height}", "duplicate"
                    )
            self.metrics.mempool_refused(refusal.code, refusal.reason)
            if refusal is exc:
                raise
            raise refusal from None

    def tx_pending(self, tx_hash: bytes) -> bool:
        return tx_hash in self.mempool

    def query(self, path: str, data: bytes) -> QueryResult:
        try:
            return self.app.query(path, data)
        except Exception as exc:  # the app must answer, but a query must never kill the node
            log_event(log, "app_query_failed", logging.ERROR, path=path, error=repr(exc))
            return QueryResult(code=1, reason=f"query failed: {type(exc).__name__}")

    def block_json(self, block: StoredBlock) -> dict[str, Any]:
        return views.block_json(block)

    def validators_json(self) -> dict[str, Any]:
        return views.validators_json(self.shell.state, self.genesis)

    def tx_bytes(self, height: int, index: int) -> bytes | None:
        return views.tx_in_block(self.store.block(height), index)


class _SyncPorts:
    """Block sync's view of the node (node/sync.py SyncPorts)."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def committed_height(self) -> int:
        return self._node.shell.state.chain.height - 1

    async def apply_block(self, block: bytes, commit: bytes) -> bool:
        return await self._node.shell.apply_synced_block(block, commit)

    def announce(self) -> None:
        self._node.broadcast_status()

    def penalize(self, peer: PeerId, reason: str) -> None:
        self._node.penalize(peer, reason, severe=True)

    def set_syncing(self, syncing: bool) -> None:
        self._node.metrics.syncing.set(1 if syncing else 0)

    def damaged_heights(self) -> list[int]:
        return self._node.store.damaged()

    async def repair_body(self, height: int, body: bytes) -> str | None:
        return await repair_stored_body(self._node.store, height, body)


def run_node(home: Home, cfg: NodeConfig, genesis_file: GenesisFile) -> int:
    """Entry point of `fedchain start` after config is loaded; returns the exit status."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep running without it
        runner = asyncio.run
    # The block-writer thread must not hold the event loop up for the default 5 ms GIL slice.
    sys.setswitchinterval(0.0005)
    node = Node(home, cfg, genesis_file)
    try:
        runner(node.run())
    except NodeError as exc:
        log_event(log, "node_failed", logging.CRITICAL, error=str(exc))
        return 1
    except BaseExceptionGroup as group:
        fatal = group.subgroup(lambda e: isinstance(e, NodeError))
        if fatal is None:
            raise
        for failure in fatal.exceptions:
            log_event(log, "node_failed", logging.CRITICAL, error=str(failure))
        return 1
    with contextlib.suppress(Exception):
        logging.shutdown()
    return 0


def _dump_tasks() -> None:
    """Print every pending asyncio task with its stack: where a node that will not stop waits."""
    for task in asyncio.all_tasks():
        print(f"--- task {task.get_name()}: {task.get_coro()!r}", file=sys.stderr)
        task.print_stack(limit=12, file=sys.stderr)
    sys.stderr.flush()
